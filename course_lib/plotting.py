"""Pure plotting functions: each returns a matplotlib Figure (or writes an image file)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision.utils as vutils

from .data import to_unit_range


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, 1, H, W) in [-1, 1] -> (H', W') in [0, 1]: a tiled grid for imshow."""
    n = images.shape[0]
    nrow = nrow or max(1, int(round(n**0.5)))
    tiled = vutils.make_grid(to_unit_range(images.detach().cpu()), nrow=nrow, padding=padding, pad_value=1.0)
    return tiled[0]  # (H', W')


def save_grid(images: torch.Tensor, path: Path | str, nrow: int | None = None) -> None:
    nrow = nrow or max(1, int(round(len(images) ** 0.5)))
    vutils.save_image(to_unit_range(images.detach().cpu()), str(path), nrow=nrow, padding=2, pad_value=1.0)


def show_grid(images: torch.Tensor, title: str = "", nrow: int | None = None, size: float = 4.0):
    fig = _figure(size, size)
    ax = fig.add_subplot()
    ax.imshow(grid(images, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the noise scheduler
# Figures of notebook 01. A ``scheduler`` argument is a ``ddpm.NoiseScheduler``; images follow the
# book's convention, (B, 1, H, W) in [-1, 1]. Their figures are closed in pyplot as soon as they are
# made: ``display(fig)`` then shows each exactly once, and nothing piles up in scripts and tests.
FIGURE_DPI = 90


def _figure(width: float, height: float) -> plt.Figure:
    fig = plt.figure(figsize=(width, height), dpi=FIGURE_DPI)  # pyplot picks the backend (inline in Jupyter)
    plt.close(fig)  # pyplot forgets it; the caller displays or saves it
    return fig


def _show_image(ax, image: torch.Tensor, title: str = "") -> None:
    """Draw one (1, H, W) or (H, W) image in [-1, 1] on ``ax`` as gray, [-1, 1] -> black..white."""
    pixels = to_unit_range(image.detach().float().cpu()).reshape(image.shape[-2:])  # (H, W)
    ax.imshow(pixels.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _image_table(rows: list[list[torch.Tensor]], column_titles: list[str], cell: float = 1.0):
    """A table of images: ``rows[r][c]`` is one (1, H, W) image, titles above the first row."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig = _figure(cell * n_cols, cell * n_rows + 0.3)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            _show_image(axes[r, c], image, column_titles[c] if r == 0 else "")
    fig.tight_layout(pad=0.3)
    return fig


def schedule_curves(schedulers: dict):
    """β_t, ᾱ_t and log SNR_t against the step, one line per named scheduler."""
    fig = _figure(10, 2.8)
    axes = fig.subplots(1, 3)
    for name, scheduler in schedulers.items():
        steps = torch.arange(scheduler.num_steps)
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
    return _image_table(rows, [f"step {step}" for step in steps])


def timestep_figure(x_t: torch.Tensor, scheduler, step: int):
    """x_t at ``step`` beside ᾱ and SNR over all steps, with the chosen step marked.

    The image axis title reads ``step {step}: ᾱ=…, SNR=…`` (the explorer's tests read it).
    """
    alpha_bar = scheduler.alpha_bars[step].item()
    snr = scheduler.snr()[step].item()
    fig = _figure(6.0, 2.6)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    _show_image(left, x_t, f"step {step}: ᾱ={alpha_bar:.3g}, SNR={snr:.3g}")
    steps = torch.arange(scheduler.num_steps)
    right.plot(steps, scheduler.alpha_bars.cpu(), label="ᾱ")
    right.plot(steps, (1.0 - scheduler.alpha_bars).cpu(), label="1 - ᾱ")
    right.axvline(step, color="red", lw=1.0)
    right.set_xlabel("step")
    right.set_title("signal vs noise variance", fontsize=8)
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_row(images: torch.Tensor, titles: list[str], cell: float = 1.0):
    """The (B, 1, H, W) ``images`` side by side, each with its title (e.g. its label or step)."""
    return _image_table([list(images)], titles, cell)


def reverse_chain(frames: list[torch.Tensor], steps: list):
    """Rows = samples, columns = the (B, 1, H, W) ``frames`` of a reverse chain, titled by ``steps``."""
    rows = [[frame[b] for frame in frames] for b in range(frames[0].shape[0])]
    return _image_table(rows, [str(step) if isinstance(step, str) else f"step {step}" for step in steps])


def sample_histograms(samples: dict, mean: float, std: float, title: str = "", bins: int = 60):
    """Histograms of 1-D ``samples`` (name -> tensor) against the density of N(mean, std²)."""
    fig = _figure(4.5, 2.6)
    ax = fig.subplots()
    for name, values in samples.items():
        ax.hist(values.detach().flatten().cpu().numpy(), bins=bins, density=True, alpha=0.45, label=name)
    grid_x = torch.linspace(mean - 4 * std, mean + 4 * std, 200)
    density = torch.exp(-0.5 * ((grid_x - mean) / std) ** 2) / (std * (2 * torch.pi) ** 0.5)
    ax.plot(grid_x, density, color="black", lw=1.2, label=f"N({mean:.2f}, {std:.2f}²)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- the DiT and its training
# Figures of notebook 02. Same rules as above: each returns a Figure made by ``_figure`` (shown once
# by ``display``), images are (B, 1, H, W) in [-1, 1].
def patchify_figure(image: torch.Tensor, patch_size: int):
    """One image, the same image cut into patches (numbered in token order), and the token sequence.

    The third panel is the (p*p*C, N) matrix of tokens: column ``n`` holds the pixels of patch ``n``,
    the sequence the transformer reads. ``image`` is (1, H, W) or (1, 1, H, W) in [-1, 1].
    """
    from .dit import patchify  # local import: plotting stays importable without the model code

    image = image.detach().float().cpu().reshape(1, -1, *image.shape[-2:])  # (1, C, H, W)
    p, (h, w) = patch_size, image.shape[-2:]
    tokens = patchify(image, p)[0]  # (N, p*p*C)
    fig = _figure(10.0, 3.4)
    left, middle, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.25, 2.1]})
    _show_image(left, image[0], f"image {h}×{w}")
    _show_image(middle, image[0], f"{tokens.shape[0]} patches of {p}×{p}, in token order")
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
    fig = _figure(4.2 * len(panels), 2.8)
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


def prediction_error_scales(scheduler):
    """How much a unit error of the network moves x̂0, for ε- and v-prediction, against the step.

    With a = sqrt(ᾱ), b = sqrt(1-ᾱ): x̂0 = (x_t - b ε̂) / a, so an error in ε̂ is multiplied by b/a;
    x̂0 = a x_t - b v̂, so an error in v̂ is multiplied by b <= 1.
    """
    a, b = scheduler.alpha_bars.cpu().sqrt(), (1.0 - scheduler.alpha_bars.cpu()).sqrt()
    steps = torch.arange(scheduler.num_steps)
    fig = _figure(5.5, 2.8)
    ax = fig.subplots()
    ax.plot(steps, b / a, label="ε-prediction: sqrt(1-ᾱ)/sqrt(ᾱ)")
    ax.plot(steps, b, label="v-prediction: sqrt(1-ᾱ)")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("error in x̂0 per unit error of the network output", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def loss_curve(losses, smooth: int = 50, title: str = "training loss"):
    """Per-step losses (faint) and their running mean over ``smooth`` steps, on a log scale."""
    values = torch.as_tensor(list(losses), dtype=torch.float64)
    fig = _figure(5.5, 2.8)
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


def compare_grids(grids: dict, nrow: int | None = None, size: float = 3.0):
    """Image grids side by side, one per named (N, 1, H, W) batch; the name is the panel title."""
    fig = _figure(size * len(grids), size + 0.4)
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for ax, (name, images) in zip(axes, grids.items(), strict=True):
        ax.imshow(grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def class_histogram_bars(shares, confidence: float | None = None, title: str = "digits in the samples"):
    """Share of samples per digit (10 values summing to 1) as bars, with the uniform 10 % line."""
    shares = torch.as_tensor(shares, dtype=torch.float64).cpu()
    fig = _figure(5.0, 2.6)
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


def reverse_animation_gif(frames: list[torch.Tensor], nrow: int | None = None, scale: int = 2,
                          levels: int = 32, frame_ms: int = 120, hold_ms: int = 1500) -> bytes:
    """An animated GIF (as bytes) of a reverse chain: each (N, 1, H, W) frame tiled into one grid.

    Pixels are enlarged ``scale`` times (nearest neighbour) and rounded to ``levels`` grey levels;
    the last frame is held ``hold_ms``. Show it with ``IPython.display.Image(data=gif, format="gif")``.
    Noise compresses badly, so keep it small: a 4 × 4 grid of 32 × 32 images and ~20 frames stay
    well under 1 MB. Frames identical after rounding are merged into one by PIL.
    """
    import io

    from PIL import Image

    if not frames:
        raise ValueError("reverse_animation_gif needs at least one frame")
    pictures = []
    for frame in frames:
        unit = (grid(frame.clamp(-1, 1), nrow) * (levels - 1)).round() / (levels - 1)  # (H', W') in [0, 1]
        pixels = (unit * 255).round().to(torch.uint8).numpy()
        picture = Image.fromarray(pixels)  # uint8 (H', W'): mode "L"
        pictures.append(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST))
    durations = [frame_ms] * (len(pictures) - 1) + [hold_ms]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, optimize=False)
    return buffer.getvalue()
