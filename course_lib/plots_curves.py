"""Curves and bars: training losses, the judge's quality against a setting, sampler errors against steps."""

from __future__ import annotations

import torch

from .plots_images import figure


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

    fig = figure(8.0, 2.8)
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


def error_against_steps(steps, errors: dict, ylabel: str = "|error|", title: str = ""):
    """Log-log |error| against the number of steps, one line per named method, with 1/n and 1/n² guides."""
    steps = torch.as_tensor(steps, dtype=torch.float64)
    fig = figure(4.6, 3.0)
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
