"""Every figure of the book: each function returns a matplotlib Figure (or writes an image file).

Images follow the book's convention, (B, 1, H, W) in [-1, 1]. Figures are made by :func:`figure`,
which closes them in pyplot at once: ``display(fig)`` then shows each exactly once, and nothing
piles up in scripts and tests. The file reads top to bottom, one banner per kind of figure:

- images: grids, rows and tables of images, saved grids (every chapter)
- animation: the reverse-chain GIF (notebook 02)
- schedule: the DDPM noise schedule and forward process (notebooks 01-02)
- model: the DiT's patches, heat maps and cross-attention maps (notebooks 02-03)
- curves: losses, quality against a setting, errors against steps (notebooks 02-07)
- paths: sampler paths in 1-D and projected on a plane (notebooks 05-07)

Every figure with more than one series has a legend. Series that can coincide (two samplers with the
same accuracy) differ in colour, marker and line style, and are nudged sideways by a few points.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision.utils as vutils

from .data import to_unit_range

FIGURE_DPI = 90
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")


def figure(width: float, height: float) -> plt.Figure:
    fig = plt.figure(figsize=(width, height), dpi=FIGURE_DPI)  # pyplot picks the backend (inline in Jupyter)
    plt.close(fig)  # pyplot forgets it; the caller displays or saves it
    return fig


def wrap(title: str, width: float, fontsize: float = 9) -> str:
    """``title`` broken into lines that fit ``width`` inches at ``fontsize`` points (about 0.55 em a character)."""
    per_line = max(12, int(width * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(title, per_line)) if title else ""


# ---------------------------------------------------------------------------- images
def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] -> (H', W') in [0, 1]: a tiled grid for imshow."""
    return _tiles(images, nrow, padding)[0]


def _tiles(images: torch.Tensor, nrow: int | None, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (3, H', W') in [0, 1], ``nrow`` images a row (default: a square)."""
    nrow = nrow or max(1, int(round(len(images) ** 0.5)))
    return vutils.make_grid(to_unit_range(images.detach().cpu()), nrow=nrow, padding=padding, pad_value=1.0)


GRID_TAG = "SimplestDiffusion save_grid"  # in every grid's PNG text or JPEG comment: `infer` may replace such a file


def save_grid(images: torch.Tensor, path: Path | str, nrow: int | None = None) -> None:
    """The grid as a PNG or JPEG (by the suffix), tagged :data:`GRID_TAG`, written atomically."""
    from PIL import Image, PngImagePlugin

    from .checkpoint import write_bytes_atomically

    tiled = _tiles(images, nrow)
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


def show_image(ax, image: torch.Tensor, title: str = "") -> None:
    """Draw one (1, H, W) or (H, W) image in [-1, 1] on ``ax`` as gray, [-1, 1] -> black..white."""
    pixels = to_unit_range(image.detach().float().cpu()).reshape(image.shape[-2:])  # (H, W)
    ax.imshow(pixels.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def show_grid_on(ax, images: torch.Tensor, nrow: int | None = None, title: str = "", fontsize: float = 9) -> None:
    """Draw the (N, 1, H, W) ``images`` tiled into one grid on ``ax``, titled, without axes."""
    ax.imshow(grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def show_grid(images: torch.Tensor, title: str = "", nrow: int | None = None, size: float = 4.0):
    fig = figure(size, size)
    show_grid_on(fig.add_subplot(), images, nrow, title, fontsize=10)
    fig.tight_layout()
    return fig


def compare_grids(grids: dict, nrow: int | None = None, size: float = 3.0):
    """Image grids side by side, one per named (N, 1, H, W) batch; the name is the panel title."""
    fig = figure(size * len(grids), size + 0.4)
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for ax, (name, images) in zip(axes, grids.items(), strict=True):
        show_grid_on(ax, images, nrow, wrap(name, size))
    fig.tight_layout()
    return fig


def wide_grid(images: torch.Tensor, title: str = "", nrow: int = 10, cell: float = 0.55):
    """A grid of ``nrow`` images per row whose figure keeps the grid's aspect (e.g. 10 digits × a few rows)."""
    rows = -(-len(images) // nrow)
    width = cell * min(nrow, len(images)) + 0.2
    title = wrap(title, width)
    fig = figure(width, cell * rows + 0.3 + 0.18 * (title.count("\n") + 1))
    show_grid_on(fig.add_subplot(), images, nrow, title)
    fig.tight_layout(pad=0.2)
    return fig


def image_table(rows: list[list[torch.Tensor]], column_titles: list[str] | None = None, cell: float = 1.0,
                row_names: list[str] | None = None, title: str = ""):
    """A table of images: ``rows[r][c]`` is one (1, H, W) image; a shorter row leaves its last cells blank.

    ``column_titles`` go above the first row, ``row_names`` left of each row, ``title`` above it all.
    Every margin is fixed in inches (not a share of the figure), so the title stays clear of the first
    row of images however many rows there are.
    """
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    gap, right, bottom = 0.04 * cell, 0.05, 0.05  # inches
    left = 0.05 + (0.056 * max(len(name) for name in row_names) + 0.1 if row_names else 0.0)
    width = left + n_cols * cell + (n_cols - 1) * gap + right
    title = wrap(title, width)
    top = 0.05 + (0.24 if column_titles else 0.0) + (0.17 * (title.count("\n") + 1) + 0.05 if title else 0.0)
    height = top + n_rows * cell + (n_rows - 1) * gap + bottom
    fig = figure(width, height)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
        "wspace": gap / cell, "hspace": gap / cell})
    for r, row in enumerate(rows):
        for c in range(n_cols):
            if c < len(row):
                show_image(axes[r, c], row[c], column_titles[c] if column_titles and r == 0 else "")
            else:
                axes[r, c].axis("off")
        if row_names:
            axes[r, 0].set_ylabel(row_names[r], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.04 / height, va="top")
    return fig


def image_row(images: torch.Tensor, titles: list[str], cell: float = 1.0):
    """The (B, 1, H, W) ``images`` side by side, each with its title (e.g. its label or step)."""
    return image_table([list(images)], titles, cell)


def reverse_chain(frames: list[torch.Tensor], steps: list):
    """Rows = samples, columns = the (B, 1, H, W) ``frames`` of a reverse chain, titled by ``steps``."""
    rows = [[frame[b] for frame in frames] for b in range(frames[0].shape[0])]
    return image_table(rows, [str(step) if isinstance(step, str) else f"step {step}" for step in steps])


def same_noise_grid(rows: dict, title: str = "", cell: float = 0.8):
    """One row per named (K, 1, H, W) batch, e.g. K samples grown from one noise; the name labels the row."""
    return image_table([list(batch) for batch in rows.values()], None, cell, row_names=list(rows), title=title)


def guidance_grid(images_by_scale: dict, digits=None, cell: float = 0.7):
    """Rows = guidance scales, columns = digits; ``images_by_scale[w]`` is a (D, 1, H, W) batch, one per digit.

    Draw every row from the same starting noise, so that along a column only the guidance changes.
    """
    scales = list(images_by_scale)
    digits = list(range(len(images_by_scale[scales[0]]))) if digits is None else list(digits)
    return image_table([list(images_by_scale[scale]) for scale in scales], [f"digit {d}" for d in digits], cell,
                       row_names=[f"guidance {scale:g}" for scale in scales])


# ---------------------------------------------------------------------------- animation
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
    if not frames:
        raise ValueError("reverse_animation_gif needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"reverse_animation_gif got {len(labels)} labels for {len(frames)} frames")
    pictures = [_gif_frame(frame, nrow, scale, levels) for frame in frames]
    if labels is not None:
        pictures = [_with_label(picture, label, font_size) for picture, label in zip(pictures, labels, strict=True)]
    durations = [frame_ms] * (len(pictures) - 1) + [hold_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, optimize=False)
    if path is not None:
        from .checkpoint import write_bytes_atomically

        write_bytes_atomically(path, buffer.getvalue())
    return buffer.getvalue()


def _gif_frame(frame: torch.Tensor, nrow: int | None, scale: int, levels: int):
    """One frame of the GIF: the tiled grid rounded to ``levels`` grey levels, enlarged ``scale`` times."""
    from PIL import Image

    unit = (grid(frame.clamp(-1, 1), nrow) * (levels - 1)).round() / (levels - 1)  # (H', W') in [0, 1]
    picture = Image.fromarray((unit * 255).round().to(torch.uint8).numpy())  # uint8 (H', W'): mode "L"
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def _with_label(picture, label: str, font_size: int):
    """``picture`` under a white band holding ``label`` in black, ``font_size`` pixels high."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=font_size)  # Pillow >= 10.1 with FreeType
    except TypeError:  # older Pillow: a fixed small bitmap font
        font = ImageFont.load_default()
    band = font_size + font_size // 2
    canvas = Image.new("L", (picture.width, picture.height + band), 255)
    canvas.paste(picture, (0, band))
    ImageDraw.Draw(canvas).text((picture.width // 2, band // 2), label, fill=0, font=font, anchor="mm")
    return canvas


# ---------------------------------------------------------------------------- schedule
# A ``scheduler`` argument is a ``ddpm.NoiseScheduler``.
def schedule_curves(schedulers: dict):
    """β_t, ᾱ_t and log SNR_t against the step, one line per named scheduler."""
    fig = figure(10, 2.8)
    axes = fig.subplots(1, 3)
    for name, scheduler in schedulers.items():
        steps = torch.arange(scheduler.num_timesteps)
        axes[0].plot(steps, scheduler.betas.cpu(), label=name)
        axes[1].plot(steps, scheduler.alpha_bars.cpu(), label=name)
        axes[2].plot(steps, scheduler.snr().cpu().double().log(), label=name)
    axes[2].axhline(0.0, color="gray", lw=0.8, ls="--")  # SNR = 1: as much signal as noise
    titles = ("β (noise added per step)", "ᾱ (signal variance left)", "log SNR = log ᾱ/(1-ᾱ)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def noising_grid(images: torch.Tensor, scheduler, steps, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None):
    """Rows = the (B, 1, H, W) ``images``, columns = x_t at increasing ``steps`` (same noise per row)."""
    if noise is None:
        noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    columns = [scheduler.noise_image(images, step, noise=noise)[0] for step in steps]  # each (B, 1, H, W)
    rows = [[column[b] for column in columns] for b in range(images.shape[0])]
    return image_table(rows, [f"step {step}" for step in steps])


def timestep_figure(x_t: torch.Tensor, scheduler, step: int):
    """x_t at ``step`` beside ᾱ and 1 - ᾱ over all steps, with the chosen step marked.

    The image axis title reads ``step {step}: ᾱ=…, SNR=…`` (the explorer's tests read it). The axes
    sit at fixed places with fixed limits and a fixed legend corner, so moving a slider that redraws
    this figure changes only the picture, the marks and the title text, never the layout.
    """
    alpha_bar = scheduler.alpha_bars[step].item()
    snr = scheduler.snr()[step].item()
    fig = figure(8.0, 3.3)
    left = fig.add_axes((0.02, 0.06, 0.30, 0.74))  # fixed rectangles: no tight_layout, no jumping
    right = fig.add_axes((0.42, 0.17, 0.55, 0.66))
    show_image(left, x_t, f"step {step}: ᾱ={alpha_bar:.3g}, SNR={snr:.3g}")
    left.title.set_fontsize(11)
    steps = torch.arange(scheduler.num_timesteps)
    right.plot(steps, scheduler.alpha_bars.cpu(), label="ᾱ (signal variance)")
    right.plot(steps, (1.0 - scheduler.alpha_bars).cpu(), label="1 - ᾱ (noise variance)")
    right.axvline(step, color="red", lw=1.2)
    right.plot([step, step], [alpha_bar, 1.0 - alpha_bar], "o", color="red", ms=5)
    right.set_xlim(0, scheduler.num_timesteps - 1)
    right.set_ylim(-0.03, 1.03)
    right.set_xlabel("step", fontsize=11)
    right.set_title("signal vs noise variance", fontsize=11)
    right.tick_params(labelsize=10)
    right.legend(fontsize=10, loc="center right")  # the curves never pass there (they end at 0 and 1)
    right.grid(alpha=0.3)
    return fig


def sample_histograms(samples: dict, mean: float, std: float, title: str = "", bins: int = 60):
    """One panel per named set of 1-D ``samples``: its histogram against the density of N(mean, std²).

    Small multiples on shared axes rather than overlaid histograms: sets that all match the target
    would hide one another. Each panel's title gives its set's mean and standard deviation.
    """
    grid_x = torch.linspace(mean - 4 * std, mean + 4 * std, 200)
    density = torch.exp(-0.5 * ((grid_x - mean) / std) ** 2) / (std * (2 * torch.pi) ** 0.5)
    fig = figure(0.4 + 2.6 * len(samples), 2.9 if title else 2.6)
    axes = fig.subplots(1, len(samples), squeeze=False, sharex=True, sharey=True)[0]
    for k, (ax, (name, values)) in enumerate(zip(axes, samples.items(), strict=True)):
        values = values.detach().flatten().double().cpu()
        ax.hist(values.numpy(), bins=bins, range=(grid_x[0].item(), grid_x[-1].item()), density=True,
                color=f"C{k}", alpha=0.6, label="samples")
        ax.plot(grid_x, density, color="black", lw=1.2, label=f"N({mean:.2f}, {std:.2f}²)")
        ax.set_title(f"{name}\nmean {values.mean():.3f}, std {values.std():.3f}", fontsize=8)
        ax.set_xlabel("value")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.75 * density.max().item())  # room for the legend above the curve
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def prediction_error_scales(scheduler):
    """How much a unit error of the network moves x̂0, for ε- and v-prediction, against the step.

    With a = sqrt(ᾱ), b = sqrt(1-ᾱ): x̂0 = (x_t - b ε̂) / a, so an error in ε̂ is multiplied by b/a;
    x̂0 = a x_t - b v̂, so an error in v̂ is multiplied by b <= 1.
    """
    a, b = scheduler.alpha_bars.cpu().sqrt(), (1.0 - scheduler.alpha_bars.cpu()).sqrt()
    steps = torch.arange(scheduler.num_timesteps)
    fig = figure(5.5, 2.8)
    ax = fig.subplots()
    ax.plot(steps, b / a, label="ε-prediction: sqrt(1-ᾱ)/sqrt(ᾱ)")
    ax.plot(steps, b, label="v-prediction: sqrt(1-ᾱ)", ls="--")
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("factor on the error")
    ax.set_title("error in x̂0 per unit error of the network output", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def step_histogram(draws: dict, scheduler):
    """Histograms of drawn training steps, one per named law (``ddpm.sample_steps``), with √ᾱ for reference."""
    fig = figure(5.5, 2.8)
    ax = fig.subplots()
    bins = torch.linspace(0, scheduler.num_timesteps, 41)
    for k, (name, steps) in enumerate(draws.items()):
        ax.hist(steps.cpu().numpy(), bins=bins.numpy(), density=True, histtype="step", lw=1.5,
                ls=LINESTYLES[k % len(LINESTYLES)], label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("share of draws per step")
    right = ax.twinx()
    right.plot(torch.arange(scheduler.num_timesteps), scheduler.alpha_bars.cpu().sqrt(), color="gray", lw=0.8,
               ls="--", label="sqrt(ᾱ): digit left in x_t")
    right.set_ylabel("sqrt(ᾱ)")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_title("where training steps fall", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- model
def patchify_figure(image: torch.Tensor, patch_size: int):
    """One image, the same image cut into patches (numbered in token order), and the token sequence.

    The third panel is the (p*p*C, N) matrix of tokens: column ``n`` holds the pixels of patch ``n``,
    the sequence the transformer reads. ``image`` is (1, H, W) or (1, 1, H, W) in [-1, 1].
    """
    from .dit import patchify  # local import: plotting stays importable without the model code

    image = image.detach().float().cpu().reshape(1, -1, *image.shape[-2:])  # (1, C, H, W)
    p, (h, w) = patch_size, image.shape[-2:]
    tokens = patchify(image, p)[0]  # (N, p*p*C)
    fig = figure(10.0, 3.4)
    left, middle, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.25, 2.1]})
    show_image(left, image[0], f"image {h}×{w}")
    show_image(middle, image[0], f"{tokens.shape[0]} patches of {p}×{p}, in token order")
    for k in range(1, h // p):
        middle.axhline(k * p - 0.5, color="tab:orange", lw=0.6)
    for k in range(1, w // p):
        middle.axvline(k * p - 0.5, color="tab:orange", lw=0.6)
    for n in range(tokens.shape[0]):  # token index at the centre of its patch (row-major order)
        row, col = divmod(n, w // p)
        middle.text(col * p + (p - 1) / 2, row * p + (p - 1) / 2, str(n), color="tab:orange",
                    fontsize=max(4.0, 9.0 - 0.07 * tokens.shape[0]), ha="center", va="center")
    right.imshow(to_unit_range(tokens.T).numpy(), cmap="gray", vmin=0.0, vmax=1.0,
                 interpolation="nearest", aspect="auto")
    right.set_title(f"token sequence: {tokens.shape[0]} tokens of {tokens.shape[1]} values", fontsize=8)
    right.set_xlabel("token index n")
    right.set_ylabel("value (pixel in the patch)", fontsize=8)
    right.set_yticks(range(0, tokens.shape[1], max(1, tokens.shape[1] // 4)))
    fig.tight_layout()
    return fig


def heatmaps(panels: dict, xlabel: str = "", ylabel: str = "", cmap: str = "RdBu_r"):
    """One heat map per named (rows, cols) tensor, side by side, on a shared colour range [-1, 1]."""
    fig = figure(4.2 * len(panels), 2.8)
    fig.set_layout_engine("constrained")  # room for the shared colour bar
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, matrix) in zip(axes, panels.items(), strict=True):
        shown = ax.imshow(matrix.detach().float().cpu().numpy(), cmap=cmap, vmin=-1, vmax=1,
                          aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(shown, ax=list(axes), shrink=0.8)
    return fig


def attention_maps(rows: dict, image: torch.Tensor | None = None, cell: float = 1.2):
    """Cross-attention weights drawn on the image grid: one row per name, one column per condition token.

    ``rows[name]`` is an (N, M) tensor: the weight each of the N image patches (row-major, N = side²)
    gives each of the M condition tokens; every row of it sums to 1. ``image`` (1, H, W) in [-1, 1],
    if given, is drawn in the first column and outlined on every map, to show which strokes read which
    token. All maps share one colour range, [0, the largest weight]; a blank map means equal weights.
    """
    names = list(rows)
    n_tokens = rows[names[0]].shape[1]
    side = int(round(rows[names[0]].shape[0] ** 0.5))
    first = 1 if image is not None else 0
    fig = figure(cell * (n_tokens + first) + 0.8, cell * len(names) + 0.4)
    fig.set_layout_engine("constrained")  # room for the colour bar
    axes = fig.subplots(len(names), n_tokens + first, squeeze=False)
    vmax = max(rows[name].max().item() for name in names)
    if image is not None:
        pixels = to_unit_range(image.detach().float().cpu()).reshape(image.shape[-2:])  # (H, W)
        extent = (-0.5, pixels.shape[1] - 0.5, pixels.shape[0] - 0.5, -0.5)
    for r, name in enumerate(names):
        weights = rows[name].detach().float().cpu()  # (N, M)
        if image is not None:
            show_image(axes[r, 0], image, "sample" if r == 0 else "")
        for j in range(n_tokens):
            ax = axes[r, first + j]
            shown = ax.imshow(weights[:, j].reshape(side, side).numpy(), cmap="magma", vmin=0.0, vmax=vmax,
                              interpolation="nearest", extent=extent if image is not None else None)
            if image is not None:
                ax.contour(pixels.numpy(), levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(f"token {j}" if r == 0 else "", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    return fig


# ---------------------------------------------------------------------------- curves
def loss_curve(losses, smooth: int = 50, title: str = "training loss"):
    """Per-step losses (faint) and their running mean over ``smooth`` steps, on a log scale."""
    values = torch.as_tensor(list(losses), dtype=torch.float64)
    fig = figure(5.5, 2.8)
    ax = fig.subplots()
    steps = torch.arange(1, len(values) + 1)
    ax.plot(steps, values, color="tab:blue", alpha=0.3, lw=0.8, label="per step")
    window = max(1, min(smooth, len(values)))
    if len(values) >= window > 1:
        kernel = torch.full((1, 1, window), 1.0 / window, dtype=torch.float64)
        running = torch.nn.functional.conv1d(values.view(1, 1, -1), kernel)[0, 0]  # (len - window + 1,)
        ax.plot(steps[window - 1:], running, color="tab:blue", lw=1.6, label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("MSE")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def loss_by_time(times, curves: dict, floors: dict | None = None, title: str = "loss per time bin"):
    """Loss against the path time t, one line per named list of values at ``times``.

    ``floors`` maps a name to ``(t, value)``: a marker for a known lower bound of the loss at t
    (e.g. the unpredictable part of the target at the ends of the path).
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    fig = figure(5.5, 2.8)
    ax = fig.subplots()
    for k, (name, values) in enumerate(curves.items()):
        ax.plot(times.numpy(), torch.as_tensor(values, dtype=torch.float64).numpy(), ms=3, label=name,
                **series_style(k))
    for name, (t, value) in (floors or {}).items():
        ax.plot([t], [value], marker="*", ms=11, ls="none", label=name)
    ax.set_xlabel("t   (0 = image, 1 = noise)")
    ax.set_ylabel("MSE per pixel")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def class_histogram_bars(shares, confidence: float | None = None, title: str = "digits in the samples"):
    """Share of samples per digit (10 values summing to 1) as bars, with the uniform 10 % line."""
    shares = torch.as_tensor(shares, dtype=torch.float64).cpu()
    fig = figure(5.0, 2.6)
    ax = fig.subplots()
    ax.bar(range(len(shares)), shares.numpy(), color="tab:blue")
    ax.axhline(1.0 / len(shares), color="tab:red", lw=1.0, ls="--", label=f"uniform {1 / len(shares):.0%}")
    ax.set_xticks(range(len(shares)))
    ax.set_xlabel("digit read by the judge")
    ax.set_ylabel("share of samples")
    if confidence is not None:
        title = f"{title} (mean confidence {confidence:.2f})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def series_style(k: int) -> dict:
    """Line style of the ``k``-th series: its own colour, marker and line style."""
    return {"color": f"C{k}", "marker": MARKERS[k % len(MARKERS)], "ls": LINESTYLES[k % len(LINESTYLES)]}


def nudge(artists, ax, k: int, count: int, points: float = 4.0) -> None:
    """Draw ``artists`` (series ``k`` of ``count`` on ``ax``) moved sideways by ``points`` per series, centred:
    series with equal values stay visible side by side. The data, and the axis limits, are unchanged."""
    from matplotlib.transforms import ScaledTranslation

    shift = (k - (count - 1) / 2) * points / 72  # inches
    for artist in artists:
        artist.set_transform(ax.transData + ScaledTranslation(shift, 0, ax.figure.dpi_scale_trans))


def quality_against(series: dict, xlabel: str, floor: float | None = None, log_x: bool = False,
                    n: int | None = None):
    """Judge class accuracy and Fréchet distance against ``xlabel`` (e.g. γ or NFE).

    ``series`` maps a sampler's name to a list of ``(x, class_accuracy, frechet)``; ``floor`` is the
    Fréchet distance of real images at the same N, drawn as a dashed line. ``log_x`` spaces x by
    powers of 2 (for NFE) and labels the measured values. With ``n``, the number of images behind
    each accuracy, its error bars are the one-standard-error Wilson interval
    (:func:`course_lib.evaluation.wilson_interval`), which keeps a width at 0 % and 100 %. Each series
    has its own marker and line style and is nudged a few points sideways, so equal values stay visible.
    """
    fig = figure(8.0, 2.8)
    left, right = fig.subplots(1, 2)
    for k, (name, points) in enumerate(series.items()):
        xs, accuracies, distances = zip(*points, strict=True)
        style = series_style(k) | {"mfc": "none" if k % 2 else None, "alpha": 0.85, "label": name}
        bars = left.errorbar(xs, [100 * a for a in accuracies], yerr=_wilson_errors(accuracies, n), capsize=3,
                             **style)
        nudge(bars.get_children(), left, k, len(series))
        nudge(right.plot(xs, distances, **style), right, k, len(series))
    if floor is not None:
        right.axhline(floor, color="gray", ls="--", lw=1.0, label=f"real-data floor {floor:.1f}")
    left.set_ylabel("class accuracy (%)")
    if n:
        left.set_title(f"bars: 1-standard-error Wilson interval at N = {n}", fontsize=8)
    right.set_ylabel("Fréchet distance")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        if log_x:
            _log2_ticks(ax, sorted({p[0] for points in series.values() for p in points}))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _wilson_errors(accuracies, n: int | None):
    """Error bars (below, above) in percent: the one-standard-error Wilson interval at ``n``; None without."""
    if not n:
        return None
    from .evaluation import wilson_interval  # local import: plotting stays importable without the judge

    bounds = [wilson_interval(a, n) for a in accuracies]
    return [[100 * (a - low) for a, (low, _) in zip(accuracies, bounds, strict=True)],
            [100 * (high - a) for a, (_, high) in zip(accuracies, bounds, strict=True)]]


def _log2_ticks(ax, values) -> None:
    """A base-2 log x axis with a labelled tick at each measured value and no minor labels."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(values)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def guidance_tradeoff(scales, accuracy, diversity, real_diversity: float | None = None,
                      frechet=None, floor: float | None = None):
    """Judge class accuracy, within-class diversity (and Fréchet distance) against the guidance scale.

    ``accuracy`` in [0, 1] and ``diversity`` (mean pairwise judge-feature distance within a digit) are
    lists matching ``scales``; ``real_diversity`` and ``floor`` (real MNIST at the same N) are drawn
    as dashed lines.
    """
    panels = 2 if frechet is None else 3
    fig = figure(3.3 * panels, 2.7)
    axes = fig.subplots(1, panels)
    axes[0].plot(scales, [100 * a for a in accuracy], marker="o")
    axes[0].set_ylabel("class accuracy (%)")
    axes[1].plot(scales, diversity, marker="o", label="samples")
    axes[1].set_ylabel("diversity within a digit")
    if real_diversity is not None:
        axes[1].axhline(real_diversity, color="gray", ls="--", lw=1.0, label=f"real digits {real_diversity:.1f}")
        axes[1].legend(fontsize=7)
    if frechet is not None:
        axes[2].plot(scales, frechet, marker="o", label="samples")
        axes[2].set_ylabel("Fréchet distance")
        axes[2].set_yscale("log")
        if floor is not None:
            axes[2].axhline(floor, color="gray", ls="--", lw=1.0, label=f"real-data floor {floor:.1f}")
            axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("guidance scale")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def error_against_steps(steps, errors: dict, ylabel: str = "|error|", title: str = ""):
    """Log-log |error| against the number of steps, one line per named method, with 1/n and 1/n² guides."""
    steps = torch.as_tensor(steps, dtype=torch.float64)
    fig = figure(4.6, 3.0)
    ax = fig.subplots()
    for k, (name, values) in enumerate(errors.items()):
        ax.plot(steps.numpy(), torch.as_tensor(values, dtype=torch.float64).abs().numpy(), label=name,
                **series_style(k))
    first = max(torch.as_tensor(v, dtype=torch.float64).abs()[0].item() for v in errors.values())
    for power, style in ((1, ":"), (2, "--")):
        guide = first * (steps[0] / steps) ** power
        label = "slope 1/n²" if power == 2 else "slope 1/n"
        ax.plot(steps.numpy(), guide.numpy(), color="gray", ls=style, lw=1.0, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("steps n")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- paths
def paths_1d(times, paths: dict, mean: float | None = None, std: float | None = None,
             labels: list[str] | None = None, ylabel: str = "x_t"):
    """1-D sampler paths against t, one panel per named (len(times), K) tensor; t runs from 1 down to 0.

    With ``mean`` and ``std`` a grey band marks mean ± 2 std of the target at t = 0. ``labels`` names
    the K paths (e.g. which pixel each one is) in a legend, and draws them thicker.
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    fig = figure(3.2 * len(paths) + 0.3, 2.6)
    axes = fig.subplots(1, len(paths), squeeze=False, sharey=True)[0]
    for ax, (name, values) in zip(axes, paths.items(), strict=True):
        lines = ax.plot(times.numpy(), values.detach().double().cpu().numpy(), lw=0.8 if labels is None else 1.4,
                        alpha=0.8)
        for line, label in zip(lines, labels or [], strict=False):
            line.set_label(label)
        if mean is not None and std is not None:  # at t = 0, the right edge
            ax.axhspan(mean - 2 * std, mean + 2 * std, xmin=0.96, xmax=1.0, color="gray", alpha=0.5,
                       label="data at t = 0: mean ± 2 std")
        ax.set_xlim(1.0, 0.0)  # time flows from the noise (left) to the data (right)
        ax.set_xlabel("t")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def trajectories_2d(paths: dict, xlabel: str = "along the chord", ylabel: str = "across the chord",
                    labels: dict | None = None):
    """Paths projected on a plane, one panel per named (K, T, 2) tensor: K paths of T points each.

    Each path is drawn from its start (circle) to its end (cross), with its chord dashed. ``labels`` maps a
    panel's name to K names, one per path (e.g. the digit it draws), shown in that panel's legend.
    """
    from matplotlib.lines import Line2D

    fig = figure(3.4 * len(paths), 3.0)
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    markers = [Line2D([], [], color="0.3", marker="o", ls="none", label="noise (t = 1)"),
               Line2D([], [], color="0.3", marker="x", ls="none", label="image (t = 0)")]
    for ax, (name, points) in zip(axes, paths.items(), strict=True):
        points = torch.as_tensor(points, dtype=torch.float64).cpu()  # (K, T, 2)
        names = (labels or {}).get(name) or [None] * len(points)
        for path, path_name in zip(points, names, strict=True):
            line, = ax.plot(path[:, 0].numpy(), path[:, 1].numpy(), lw=1.2, label=path_name)
            color = line.get_color()
            ax.plot([path[0, 0], path[-1, 0]], [path[0, 1], path[-1, 1]], ls="--", lw=0.8, color=color)
            ax.plot(path[0, 0], path[0, 1], marker="o", color=color)
            ax.plot(path[-1, 0], path[-1, 1], marker="x", color=color)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        named = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        ax.legend(handles=named + markers, fontsize=7)
    fig.tight_layout()
    return fig
