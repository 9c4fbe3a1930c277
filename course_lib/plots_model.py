"""Figures of the DiT's insides: patches and tokens, embeddings as heat maps, cross-attention maps."""

from __future__ import annotations

import torch

from .data import to_unit_range
from .plots_images import figure, show_image


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
