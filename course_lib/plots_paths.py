"""Sampler paths: 1-D paths against t (notebook 06) and paths projected on a plane (notebook 05)."""

from __future__ import annotations

import torch

from .plots_images import figure


def paths_1d(times, paths: dict, mean: float | None = None, std: float | None = None):
    """1-D sampler paths against t, one panel per named (len(times), K) tensor; t runs from 1 down to 0.

    With ``mean`` and ``std`` a grey band marks mean ± 2 std of the target at t = 0.
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    fig = figure(3.2 * len(paths), 2.6)
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


def trajectories_2d(paths: dict, xlabel: str = "along the chord", ylabel: str = "across the chord"):
    """Paths projected on a plane, one panel per named (K, T, 2) tensor: K paths of T points each.

    Each path is drawn from its start (circle) to its end (cross), with its chord dashed.
    """
    fig = figure(3.4 * len(paths), 3.0)
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
