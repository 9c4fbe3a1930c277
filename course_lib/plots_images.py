"""Image grids and animations, for every chapter: each function returns a matplotlib Figure (or bytes, or a file).

Images follow the book's convention, (B, 1, H, W) in [-1, 1]. Figures are made by :func:`figure`,
which closes them in pyplot at once: ``display(fig)`` then shows each exactly once, and nothing
piles up in scripts and tests. The other plots_*.py modules build on the helpers here.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision.utils as vutils

from .data import to_unit_range

FIGURE_DPI = 90


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] -> (H', W') in [0, 1]: a tiled grid for imshow."""
    n = images.shape[0]
    nrow = nrow or max(1, int(round(n**0.5)))
    tiled = vutils.make_grid(to_unit_range(images.detach().cpu()), nrow=nrow, padding=padding, pad_value=1.0)
    return tiled[0]  # (H', W')


GRID_TAG = "SimplestDiffusion save_grid"  # in every grid's PNG text or JPEG comment: `infer` may replace such a file


def save_grid(images: torch.Tensor, path: Path | str, nrow: int | None = None) -> None:
    """The grid as a PNG or JPEG (by the suffix), tagged :data:`GRID_TAG`, written atomically."""
    from PIL import Image, PngImagePlugin

    from .checkpoint import write_bytes_atomically

    nrow = nrow or max(1, int(round(len(images) ** 0.5)))
    tiled = vutils.make_grid(to_unit_range(images.detach().cpu()), nrow=nrow, padding=2, pad_value=1.0)
    pixels = tiled.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()  # as save_image
    path = Path(path)
    buffer = io.BytesIO()
    if path.suffix.lower() == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", GRID_TAG)
        Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    else:
        Image.fromarray(pixels).save(buffer, format="JPEG", comment=GRID_TAG)
    write_bytes_atomically(path, buffer.getvalue())


def grid_file_kind(path: Path | str) -> str:
    """What an existing file is: "grid" (written by :func:`save_grid`), "image" (another PNG or JPEG) or "other"."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:  # reads the header only
            if picture.format not in ("PNG", "JPEG"):
                return "other"
            tag = picture.info.get("Software") or picture.info.get("comment") or b""
    except (OSError, UnidentifiedImageError, ValueError):
        return "other"
    tag = tag.decode("utf-8", "replace") if isinstance(tag, bytes) else str(tag)
    return "grid" if tag == GRID_TAG else "image"


def show_grid(images: torch.Tensor, title: str = "", nrow: int | None = None, size: float = 4.0):
    fig = figure(size, size)
    ax = fig.add_subplot()
    ax.imshow(grid(images, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def figure(width: float, height: float) -> plt.Figure:
    fig = plt.figure(figsize=(width, height), dpi=FIGURE_DPI)  # pyplot picks the backend (inline in Jupyter)
    plt.close(fig)  # pyplot forgets it; the caller displays or saves it
    return fig


def show_image(ax, image: torch.Tensor, title: str = "") -> None:
    """Draw one (1, H, W) or (H, W) image in [-1, 1] on ``ax`` as gray, [-1, 1] -> black..white."""
    pixels = to_unit_range(image.detach().float().cpu()).reshape(image.shape[-2:])  # (H, W)
    ax.imshow(pixels.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def image_table(rows: list[list[torch.Tensor]], column_titles: list[str], cell: float = 1.0):
    """A table of images: ``rows[r][c]`` is one (1, H, W) image, titles above the first row."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig = figure(cell * n_cols, cell * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            show_image(axes[r, c], image, column_titles[c] if r == 0 else "")
    fig.tight_layout(pad=0.3)
    return fig


def image_row(images: torch.Tensor, titles: list[str], cell: float = 1.0):
    """The (B, 1, H, W) ``images`` side by side, each with its title (e.g. its label or step)."""
    return image_table([list(images)], titles, cell)


def reverse_chain(frames: list[torch.Tensor], steps: list):
    """Rows = samples, columns = the (B, 1, H, W) ``frames`` of a reverse chain, titled by ``steps``."""
    rows = [[frame[b] for frame in frames] for b in range(frames[0].shape[0])]
    return image_table(rows, [str(step) if isinstance(step, str) else f"step {step}" for step in steps])


def compare_grids(grids: dict, nrow: int | None = None, size: float = 3.0):
    """Image grids side by side, one per named (N, 1, H, W) batch; the name is the panel title."""
    fig = figure(size * len(grids), size + 0.4)
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for ax, (name, images) in zip(axes, grids.items(), strict=True):
        ax.imshow(grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def wide_grid(images: torch.Tensor, title: str = "", nrow: int = 10, cell: float = 0.55):
    """A grid of ``nrow`` images per row whose figure keeps the grid's aspect (e.g. 10 digits × a few rows)."""
    rows = -(-len(images) // nrow)
    fig = figure(cell * min(nrow, len(images)) + 0.2, cell * rows + 0.45)
    ax = fig.add_subplot()
    ax.imshow(grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig


def same_noise_grid(rows: dict, title: str = "", cell: float = 0.8):
    """One row per named (K, 1, H, W) batch, e.g. K samples grown from one noise; the name labels the row."""
    names = list(rows)
    n_cols = max(len(batch) for batch in rows.values())
    fig = figure(cell * n_cols + 0.6, cell * len(names) + 0.4)
    axes = fig.subplots(len(names), n_cols, squeeze=False)
    for r, name in enumerate(names):
        for c in range(n_cols):
            ax = axes[r, c]
            if c < len(rows[name]):
                show_image(ax, rows[name][c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def guidance_grid(images_by_scale: dict, digits=None, cell: float = 0.7):
    """Rows = guidance scales, columns = digits; ``images_by_scale[w]`` is a (D, 1, H, W) batch, one per digit.

    Draw every row from the same starting noise, so that along a column only the guidance changes.
    """
    scales = list(images_by_scale)
    n_cols = len(images_by_scale[scales[0]])
    digits = list(range(n_cols)) if digits is None else list(digits)
    fig = figure(cell * n_cols + 0.5, cell * len(scales) + 0.3)
    axes = fig.subplots(len(scales), n_cols, squeeze=False)
    for r, scale in enumerate(scales):
        for c in range(n_cols):
            show_image(axes[r, c], images_by_scale[scale][c], f"digit {digits[c]}" if r == 0 else "")
        axes[r, 0].set_ylabel(f"guidance {scale:g}", fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def reverse_animation_gif(frames: list[torch.Tensor], nrow: int | None = None, scale: int = 2,
                          levels: int = 32, frame_ms: int = 120, hold_ms: int = 1500,
                          labels: list[str] | None = None, font_size: int = 18,
                          path: Path | str | None = None) -> bytes:
    """An animated GIF (as bytes) of a reverse chain: each (N, 1, H, W) frame tiled into one grid.

    Pixels are enlarged ``scale`` times (nearest neighbour) and rounded to ``levels`` grey levels;
    the last frame is held ``hold_ms``. With ``labels`` (one string per frame, e.g. "step 300"),
    each frame gets a white band above the grid with its label in black, ``font_size`` pixels high.
    Show it with ``IPython.display.Image(data=gif, format="gif")``. Noise compresses badly, so keep it
    small: a 4 × 4 grid of 32 × 32 images and ~20 frames stay well under 1 MB at ``scale`` 3. Frames
    identical after rounding are merged into one by PIL. With ``path`` the GIF is also written there,
    atomically (:func:`course_lib.checkpoint.write_bytes_atomically`).
    """

    from PIL import Image, ImageDraw, ImageFont

    if not frames:
        raise ValueError("reverse_animation_gif needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"reverse_animation_gif got {len(labels)} labels for {len(frames)} frames")
    band = 0
    if labels is not None:
        try:
            font = ImageFont.load_default(size=font_size)  # Pillow >= 10.1 with FreeType
        except TypeError:  # older Pillow: a fixed small bitmap font
            font = ImageFont.load_default()
        band = font_size + font_size // 2
    pictures = []
    for index, frame in enumerate(frames):
        unit = (grid(frame.clamp(-1, 1), nrow) * (levels - 1)).round() / (levels - 1)  # (H', W') in [0, 1]
        pixels = (unit * 255).round().to(torch.uint8).numpy()
        picture = Image.fromarray(pixels)  # uint8 (H', W'): mode "L"
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
        if labels is not None:
            canvas = Image.new("L", (picture.width, picture.height + band), 255)
            canvas.paste(picture, (0, band))
            ImageDraw.Draw(canvas).text((picture.width // 2, band // 2), labels[index], fill=0, font=font,
                                        anchor="mm")
            picture = canvas
        pictures.append(picture)
    durations = [frame_ms] * (len(pictures) - 1) + [hold_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, optimize=False)
    if path is not None:
        from .checkpoint import write_bytes_atomically

        write_bytes_atomically(path, buffer.getvalue())
    return buffer.getvalue()
