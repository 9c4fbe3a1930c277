"""Figures of the DDPM noise schedule and forward process (notebooks 01 and 02).

A ``scheduler`` argument is a ``ddpm.NoiseScheduler``; images are (B, 1, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch

from .plots_images import figure, image_table, show_image


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
    """Histograms of 1-D ``samples`` (name -> tensor) against the density of N(mean, std²)."""
    fig = figure(4.5, 2.6)
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
    ax.plot(steps, b, label="v-prediction: sqrt(1-ᾱ)")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("step")
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
    for name, steps in draws.items():
        ax.hist(steps.cpu().numpy(), bins=bins.numpy(), density=True, histtype="step", lw=1.5, label=name)
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
