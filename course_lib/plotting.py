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
    return _image_table(rows, [f"step {step}" for step in steps])


def timestep_figure(x_t: torch.Tensor, scheduler, step: int):
    """x_t at ``step`` beside ᾱ and 1 - ᾱ over all steps, with the chosen step marked.

    The image axis title reads ``step {step}: ᾱ=…, SNR=…`` (the explorer's tests read it). The axes
    sit at fixed places with fixed limits and a fixed legend corner, so moving a slider that redraws
    this figure changes only the picture, the marks and the title text, never the layout.
    """
    alpha_bar = scheduler.alpha_bars[step].item()
    snr = scheduler.snr()[step].item()
    fig = _figure(8.0, 3.3)
    left = fig.add_axes((0.02, 0.06, 0.30, 0.74))  # fixed rectangles: no tight_layout, no jumping
    right = fig.add_axes((0.42, 0.17, 0.55, 0.66))
    _show_image(left, x_t, f"step {step}: ᾱ={alpha_bar:.3g}, SNR={snr:.3g}")
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
    steps = torch.arange(scheduler.num_timesteps)
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
                          levels: int = 32, frame_ms: int = 120, hold_ms: int = 1500,
                          labels: list[str] | None = None, font_size: int = 18) -> bytes:
    """An animated GIF (as bytes) of a reverse chain: each (N, 1, H, W) frame tiled into one grid.

    Pixels are enlarged ``scale`` times (nearest neighbour) and rounded to ``levels`` grey levels;
    the last frame is held ``hold_ms``. With ``labels`` (one string per frame, e.g. "step 300"),
    each frame gets a white band above the grid with its label in black, ``font_size`` pixels high.
    Show it with ``IPython.display.Image(data=gif, format="gif")``. Noise compresses badly, so keep it
    small: a 4 × 4 grid of 32 × 32 images and ~20 frames stay well under 1 MB at ``scale`` 3. Frames
    identical after rounding are merged into one by PIL.
    """
    import io

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
    return buffer.getvalue()


# ---------------------------------------------------------------------------- SDE sampling
# Figures of notebook 06. Same rules: each returns a Figure made by ``_figure``.
def paths_1d(times, paths: dict, mean: float | None = None, std: float | None = None):
    """1-D sampler paths against t, one panel per named (len(times), K) tensor; t runs from 1 down to 0.

    With ``mean`` and ``std`` a grey band marks mean ± 2 std of the target at t = 0.
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    fig = _figure(3.2 * len(paths), 2.6)
    axes = fig.subplots(1, len(paths), squeeze=False, sharey=True)[0]
    for ax, (name, values) in zip(axes, paths.items(), strict=True):
        ax.plot(times.numpy(), values.detach().double().cpu().numpy(), lw=0.8, alpha=0.8)
        if mean is not None and std is not None:
            ax.axhspan(mean - 2 * std, mean + 2 * std, xmin=0.96, xmax=1.0, color="gray", alpha=0.5)  # at t = 0
        ax.set_xlim(1.0, 0.0)  # time flows from the noise (left) to the data (right)
        ax.set_xlabel("t")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def same_noise_grid(rows: dict, title: str = "", cell: float = 0.8):
    """One row per named (K, 1, H, W) batch, e.g. K samples grown from one noise; the name labels the row."""
    names = list(rows)
    n_cols = max(len(batch) for batch in rows.values())
    fig = _figure(cell * n_cols + 0.6, cell * len(names) + 0.4)
    axes = fig.subplots(len(names), n_cols, squeeze=False)
    for r, name in enumerate(names):
        for c in range(n_cols):
            ax = axes[r, c]
            if c < len(rows[name]):
                _show_image(ax, rows[name][c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def quality_against(series: dict, xlabel: str, floor: float | None = None, log_x: bool = False,
                    n: int | None = None):
    """Judge class accuracy and Fréchet distance against ``xlabel`` (e.g. γ or NFE).

    ``series`` maps a sampler's name to a list of ``(x, class_accuracy, frechet)``; ``floor`` is the
    Fréchet distance of real images at the same N, drawn as a dashed line. ``log_x`` spaces x by
    powers of 2 (for NFE) and labels the measured values. With ``n``, the number of images behind
    each accuracy, its error bars are the one-standard-error Wilson interval
    (:func:`course_lib.evaluation.wilson_interval`), which keeps a width at 0 % and 100 %.
    """
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = _figure(8.0, 2.8)
    left, right = fig.subplots(1, 2)
    for name, points in series.items():
        xs, accuracies, distances = zip(*points, strict=True)
        errors = None
        if n:
            from .evaluation import wilson_interval  # local import: plotting stays importable without the judge

            bounds = [wilson_interval(a, n) for a in accuracies]
            errors = [[100 * (a - low) for a, (low, _) in zip(accuracies, bounds, strict=True)],
                      [100 * (high - a) for a, (_, high) in zip(accuracies, bounds, strict=True)]]
        left.errorbar(xs, [100 * a for a in accuracies], yerr=errors, marker="o", capsize=3, label=name)
        right.plot(xs, distances, marker="o", label=name)
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
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({p[0] for points in series.values() for p in points}))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- guidance and cross-attention
# Figures of notebook 03. Same rules: each returns a Figure made by ``_figure``; images in [-1, 1].
def guidance_grid(images_by_scale: dict, digits=None, cell: float = 0.7):
    """Rows = guidance scales, columns = digits; ``images_by_scale[w]`` is a (D, 1, H, W) batch, one per digit.

    Draw every row from the same starting noise, so that along a column only the guidance changes.
    """
    scales = list(images_by_scale)
    n_cols = len(images_by_scale[scales[0]])
    digits = list(range(n_cols)) if digits is None else list(digits)
    fig = _figure(cell * n_cols + 0.5, cell * len(scales) + 0.3)
    axes = fig.subplots(len(scales), n_cols, squeeze=False)
    for r, scale in enumerate(scales):
        for c in range(n_cols):
            _show_image(axes[r, c], images_by_scale[scale][c], f"digit {digits[c]}" if r == 0 else "")
        axes[r, 0].set_ylabel(f"guidance {scale:g}", fontsize=8)
    fig.tight_layout(pad=0.2)
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
    fig = _figure(cell * (n_tokens + first) + 0.8, cell * len(names) + 0.4)
    fig.set_layout_engine("constrained")  # room for the colour bar
    axes = fig.subplots(len(names), n_tokens + first, squeeze=False)
    vmax = max(rows[name].max().item() for name in names)
    if image is not None:
        pixels = to_unit_range(image.detach().float().cpu()).reshape(image.shape[-2:])  # (H, W)
        extent = (-0.5, pixels.shape[1] - 0.5, pixels.shape[0] - 0.5, -0.5)
    for r, name in enumerate(names):
        weights = rows[name].detach().float().cpu()  # (N, M)
        if image is not None:
            _show_image(axes[r, 0], image, "sample" if r == 0 else "")
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


def guidance_tradeoff(scales, accuracy, diversity, real_diversity: float | None = None,
                      frechet=None, floor: float | None = None):
    """Judge class accuracy, within-class diversity (and Fréchet distance) against the guidance scale.

    ``accuracy`` in [0, 1] and ``diversity`` (mean pairwise judge-feature distance within a digit) are
    lists matching ``scales``; ``real_diversity`` and ``floor`` (real MNIST at the same N) are drawn
    as dashed lines.
    """
    panels = 2 if frechet is None else 3
    fig = _figure(3.3 * panels, 2.7)
    axes = fig.subplots(1, panels)
    axes[0].plot(scales, [100 * a for a in accuracy], marker="o")
    axes[0].set_ylabel("class accuracy (%)")
    axes[1].plot(scales, diversity, marker="o")
    axes[1].set_ylabel("diversity within a digit")
    if real_diversity is not None:
        axes[1].axhline(real_diversity, color="gray", ls="--", lw=1.0, label=f"real digits {real_diversity:.1f}")
        axes[1].legend(fontsize=7)
    if frechet is not None:
        axes[2].plot(scales, frechet, marker="o")
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


# ---------------------------------------------------------------------------- flow matching
# Figures of notebooks 04 and 05. Same rules: each returns a Figure made by ``_figure``.
def loss_by_time(times, curves: dict, floors: dict | None = None, title: str = "loss per time bin"):
    """Loss against the path time t, one line per named list of values at ``times``.

    ``floors`` maps a name to ``(t, value)``: a marker for a known lower bound of the loss at t
    (e.g. the unpredictable part of the target at the ends of the path).
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    fig = _figure(5.5, 2.8)
    ax = fig.subplots()
    for name, values in curves.items():
        ax.plot(times.numpy(), torch.as_tensor(values, dtype=torch.float64).numpy(), marker="o", ms=3, label=name)
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


def error_against_steps(steps, errors: dict, ylabel: str = "|error|", title: str = ""):
    """Log-log |error| against the number of steps, one line per named method, with 1/n and 1/n² guides."""
    steps = torch.as_tensor(steps, dtype=torch.float64)
    fig = _figure(4.6, 3.0)
    ax = fig.subplots()
    for name, values in errors.items():
        ax.plot(steps.numpy(), torch.as_tensor(values, dtype=torch.float64).abs().numpy(), marker="o", label=name)
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


def trajectories_2d(paths: dict, xlabel: str = "along the chord", ylabel: str = "across the chord"):
    """Paths projected on a plane, one panel per named (K, T, 2) tensor: K paths of T points each.

    Each path is drawn from its start (circle) to its end (cross), with its chord dashed.
    """
    fig = _figure(3.4 * len(paths), 3.0)
    axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for ax, (name, points) in zip(axes, paths.items(), strict=True):
        points = torch.as_tensor(points, dtype=torch.float64).cpu()  # (K, T, 2)
        for k, path in enumerate(points):
            line, = ax.plot(path[:, 0].numpy(), path[:, 1].numpy(), lw=1.2)
            color = line.get_color()
            ax.plot([path[0, 0], path[-1, 0]], [path[0, 1], path[-1, 1]], ls="--", lw=0.8, color=color)
            ax.plot(path[0, 0], path[0, 1], marker="o", color=color, label="noise (t = 1)" if k == 0 else None)
            ax.plot(path[-1, 0], path[-1, 1], marker="x", color=color, label="image (t = 0)" if k == 0 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def wide_grid(images: torch.Tensor, title: str = "", nrow: int = 10, cell: float = 0.55):
    """A grid of ``nrow`` images per row whose figure keeps the grid's aspect (e.g. 10 digits × a few rows)."""
    rows = -(-len(images) // nrow)
    fig = _figure(cell * min(nrow, len(images)) + 0.2, cell * rows + 0.45)
    ax = fig.add_subplot()
    ax.imshow(grid(images, nrow).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig
