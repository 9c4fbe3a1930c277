"""ipywidgets explorers: sliders that redraw a figure from :mod:`course_lib.plotting`.

Every explorer is an :class:`Explorer`: a row of controls above an output area. Moving a control
calls a ``draw(**values) -> Figure`` function with the current values of all controls; the
explorer displays the figure and keeps it in ``explorer.figure`` (so tests and readers can
inspect what is on screen). A new explorer is a function that builds its controls and its
``draw`` and returns ``Explorer(controls, draw)``; see :func:`timestep_explorer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from . import ddpm, plotting


class Explorer(widgets.VBox):
    """Controls (name -> widget) above an output area redrawn by ``draw(**values)``."""

    def __init__(self, controls: dict[str, widgets.ValueWidget], draw: Callable[..., plt.Figure]):
        super().__init__()
        self.controls = controls
        self.draw = draw
        self.figure: plt.Figure | None = None
        # interactive_output calls _redraw once now, then again whenever a control changes
        output = widgets.interactive_output(self._redraw, controls)
        self.children = (widgets.HBox(list(controls.values())), output)

    def _redraw(self, **values) -> None:
        figure = self.draw(**values)
        self.figure = figure
        display(figure)
        plt.close(figure)  # shown once, in the output area, not again at the end of the cell


def timestep_explorer(image: torch.Tensor, scheduler, step: int = 0, seed: int = 0,
                      noise: torch.Tensor | None = None) -> Explorer:
    """A slider over the DDPM step showing x_t of one digit, with ᾱ_t and SNR_t in the title.

    ``image`` is one digit, (1, H, W) or (1, 1, H, W) in [-1, 1]; ``scheduler`` a
    ``ddpm.NoiseScheduler``. The noise is drawn once (from ``seed``, unless ``noise`` is given), so
    moving the slider only changes how much of it is mixed in: x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε.
    """
    image = image.reshape(1, 1, *image.shape[-2:]).to(scheduler.device)  # (1, 1, H, W)
    if noise is None:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(image.shape, generator=generator).to(image.device)  # (1, 1, H, W)
    slider = widgets.IntSlider(value=step, min=0, max=scheduler.num_steps - 1, description="step",
                               continuous_update=True, layout=widgets.Layout(width="420px"))

    def draw(step: int) -> plt.Figure:
        x_t, _ = scheduler.noise_image(image, step, noise=noise)
        return plotting.timestep_figure(x_t[0], scheduler, step)

    explorer = Explorer({"step": slider}, draw)
    explorer.noise = noise
    return explorer


def sampling_steps_explorer(model, scheduler, prediction: str = "eps", num_images: int = 16,
                            steps: int = 10, max_steps: int = 100, seed: int = 0,
                            noise: torch.Tensor | None = None, device: torch.device | str | None = None
                            ) -> Explorer:
    """A slider over the number of DDIM steps, redrawing a grid of samples from fixed x_T.

    ``model`` is any ``model(x_t, t, labels)`` trained for ``prediction`` ("eps" or "v") on the
    ``ddpm.NoiseScheduler`` ``scheduler``. The starting noise is drawn once (from ``seed``, unless
    ``noise`` (N, C, H, W) is given) and kept in ``explorer.noise``: DDIM (η = 0) is deterministic, so
    the slider shows only what the number of steps changes. The title reads
    ``DDIM {steps} steps (NFE {steps}): {seconds} s``. The slider redraws on release (each redraw
    runs the network ``steps`` times).
    """
    device = torch.device(device) if device is not None else scheduler.device
    if noise is None:
        size = getattr(getattr(model, "cfg", None), "img_size", 32)
        channels = getattr(getattr(model, "cfg", None), "channels", 1)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(num_images, channels, size, size, generator=generator)  # (N, C, H, W)
    noise = noise.to(device)
    slider = widgets.IntSlider(value=steps, min=1, max=min(max_steps, scheduler.num_steps),
                               description="DDIM steps", continuous_update=False,
                               style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))

    def draw(steps: int) -> plt.Figure:
        started = time.perf_counter()
        images = ddpm.sample_ddim(model, scheduler, noise.shape, steps, device=device, prediction=prediction,
                                  x_T=noise)
        seconds = time.perf_counter() - started
        return plotting.compare_grids({f"DDIM {steps} steps (NFE {steps}): {seconds:.2f} s": images}, size=3.5)

    explorer = Explorer({"steps": slider}, draw)
    explorer.noise = noise
    return explorer
