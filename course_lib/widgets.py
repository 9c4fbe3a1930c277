"""ipywidgets explorers: sliders that redraw a figure from :mod:`course_lib.plotting`.

Every explorer is an :class:`Explorer`: a row of controls above an output area. Moving a control
calls a ``draw(**values) -> Figure`` function with the current values of all controls; the
explorer displays the figure and keeps it in ``explorer.figure`` (so tests and readers can
inspect what is on screen). A new explorer is a function that builds its controls and its
``draw`` and returns ``Explorer(controls, draw, noise=noise)``; see :func:`timestep_explorer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from . import ddpm, flow, plotting


def fixed_noise(model, count: int, seed: int) -> torch.Tensor:
    """An explorer's starting noise, (count, C, H, W) on the CPU, shaped like the model's images (a DiT's
    ``cfg``; 1 × 32 × 32 for a model without one), drawn once from ``seed``."""
    cfg = getattr(model, "cfg", None)
    size, channels = getattr(cfg, "img_size", 32), getattr(cfg, "channels", 1)
    return torch.randn(count, channels, size, size, generator=torch.Generator().manual_seed(seed))


class Explorer(widgets.VBox):
    """Controls (name -> widget) above an output area redrawn by ``draw(**values)``.

    ``draw`` returns the figure, or ``(figure, images)`` to keep the samples on screen in
    ``explorer.images``. Keyword arguments (``noise=...``) become attributes before the first draw, so
    ``draw`` may read them and the caller gets them back. Display the explorer once: it is the only
    figure of its cell.
    """

    def __init__(self, controls: dict[str, widgets.ValueWidget], draw: Callable[..., plt.Figure], **kept):
        super().__init__()
        self.controls = controls
        self.draw = draw
        self.figure: plt.Figure | None = None
        self.images = None
        self.start: dict | None = None  # the values of the first draw: the starting state
        for name, value in kept.items():
            setattr(self, name, value)
        # interactive_output calls _redraw once now, then again whenever a control changes
        output = widgets.interactive_output(self._redraw, controls)
        self.children = (widgets.HBox(list(controls.values())), output)

    def _redraw(self, **values) -> None:
        drawn = self.draw(**values)
        self.figure, self.images = drawn if isinstance(drawn, tuple) else (drawn, self.images)
        self.start = values if self.start is None else self.start
        display(self.figure)  # in the output area, the live picture; figures are closed in pyplot already

    # What a saved notebook shows. A live Jupyter shows the widget itself (one figure, the live one);
    # a renderer without a kernel or without widget support (GitHub, nbconvert, the website) falls back
    # to another entry of this bundle: the picture of the state it was displayed in, captioned as such;
    # never the raw ``Explorer(children=(HBox(...`` repr.
    PLACEHOLDER = "[interactive explorer: run this cell in Jupyter to move its controls]"

    def __repr__(self) -> str:
        return self.PLACEHOLDER

    def caption(self) -> str:
        """The picture's caption: the controls' values, e.g. "starting state: step = 250"."""
        values = {name: control.value for name, control in self.controls.items()}
        state = ", ".join(f"{self.controls[name].description or name} = {value:g}" if isinstance(value, float)
                          else f"{self.controls[name].description or name} = {value}" for name, value in values.items())
        when = "starting state" if values == self.start else "state when displayed"
        return f"Interactive explorer, {when}: {state}. Its controls move in Jupyter, with a running kernel."

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.caption()
        if self.figure is not None:
            bundle["image/png"] = self.picture()
        return bundle

    def picture(self) -> str:
        """The figure on screen as a base64 PNG, with :meth:`caption` written under it."""
        import base64
        import io

        width = self.figure.get_figwidth()
        self.figure.draw_without_rendering()  # lays out the axes (an image's axes shrink to its aspect)
        to_figure = self.figure.transFigure.inverted()
        bottom = min((ax.get_tightbbox().transformed(to_figure).y0 for ax in self.figure.axes
                      if ax.get_visible()), default=0.0)  # right under the lowest drawing, not the figure's edge
        text = self.figure.text(0.5, bottom - 0.01, plotting.wrap(self.caption(), width, 8), ha="center",
                                va="top", fontsize=8, style="italic")
        buffer = io.BytesIO()
        try:
            self.figure.savefig(buffer, format="png", dpi=plotting.FIGURE_DPI, bbox_inches="tight")
        finally:
            text.remove()  # the figure itself stays as drawn
        return base64.b64encode(buffer.getvalue()).decode("ascii")


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
    slider = widgets.IntSlider(value=step, min=0, max=scheduler.num_timesteps - 1, description="step",
                               continuous_update=True, layout=widgets.Layout(width="420px"))

    def draw(step: int) -> plt.Figure:
        x_t, _ = scheduler.noise_image(image, step, noise=noise)
        return plotting.timestep_figure(x_t[0], scheduler, step)

    return Explorer({"step": slider}, draw, noise=noise)


def sampling_steps_explorer(model, scheduler, prediction: str = "eps", num_images: int = 16,
                            steps: int = 10, max_steps: int = 100, seed: int = 0,
                            noise: torch.Tensor | None = None, device: torch.device | str | None = None
                            ) -> Explorer:
    """A slider over the number of DDIM steps, redrawing a grid of samples from fixed x_T.

    ``model`` is any ``model(x_t, t, labels)`` trained for ``prediction`` ("eps" or "v") on the
    ``ddpm.NoiseScheduler`` ``scheduler``. The starting noise is drawn once (from ``seed``, unless
    ``noise`` (N, C, H, W) is given) and kept in ``explorer.noise``: DDIM (η = 0) is deterministic, so
    the slider shows only what the number of steps changes. The title reads
    ``DDIM {steps} steps (NFE {steps}): {seconds} s`` ("1 step" for one). The slider redraws on release (each redraw
    runs the network ``steps`` times).
    """
    device = torch.device(device) if device is not None else scheduler.device
    if noise is None:
        noise = fixed_noise(model, num_images, seed)
    noise = noise.to(device)
    slider = widgets.IntSlider(value=steps, min=1, max=min(max_steps, scheduler.num_timesteps),
                               description="DDIM steps", continuous_update=False,
                               style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))

    def draw(steps: int) -> plt.Figure:
        started = time.perf_counter()
        images = ddpm.sample_ddim(model, scheduler, noise, num_steps=steps, prediction=prediction)
        seconds = time.perf_counter() - started
        title = f"DDIM {steps} step{'' if steps == 1 else 's'} (NFE {steps}): {seconds:.2f} s"
        return plotting.compare_grids({title: images}, size=3.5)

    return Explorer({"steps": slider}, draw, noise=noise)


def noise_level_explorer(model, labels, guidance_scale=None, num_samples: int = 8, num_steps: int = 16,
                         gamma: float = 1.0, max_gamma: float = 3.0, seed: int = 0,
                         noise: torch.Tensor | None = None, device: torch.device | str = "cpu") -> Explorer:
    """A slider over the SDE noise level γ, redrawing ``num_samples`` samples grown from ONE noise per digit.

    ``model`` is a flow velocity ``model(x_t, t, labels)``; ``labels`` the digits, one row each. The
    starting noise, one (C, H, W) image per row (from ``seed`` unless ``noise`` (len(labels), C, H, W) is
    given), is copied ``num_samples`` times, so all variety within a row comes from the SDE's own noise,
    which is drawn from ``seed + 1`` on every redraw (the same γ always shows the same picture). At
    γ = 0 the sampler is the Euler ODE and each row holds one image repeated. ``explorer.images`` keeps
    the samples on screen, (len(labels) · num_samples, C, H, W).
    """
    labels = torch.as_tensor(labels).long().flatten()  # (L,)
    if noise is None:
        noise = fixed_noise(model, len(labels), seed)
    if len(noise) != len(labels):
        raise ValueError(f"noise holds {len(noise)} images for {len(labels)} labels; give one per label")
    x_1 = noise.to(device).repeat_interleave(num_samples, dim=0)  # (L*K, C, H, W), K copies of each
    repeated = labels.to(device).repeat_interleave(num_samples)  # (L*K,)
    slider = widgets.FloatSlider(value=gamma, min=0.0, max=max_gamma, step=0.25, description="γ (noise level)",
                                 continuous_update=False, style={"description_width": "initial"},
                                 layout=widgets.Layout(width="420px"))

    def draw(gamma: float) -> tuple[plt.Figure, torch.Tensor]:
        started = time.perf_counter()
        images = flow.sample_sde(model, x_1, repeated, num_steps=num_steps, gamma=float(gamma),
                                 guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed + 1))
        seconds = time.perf_counter() - started
        rows = {f"digit {label}": images[i * num_samples:(i + 1) * num_samples]
                for i, label in enumerate(labels.tolist())}
        kind = "Euler ODE" if gamma == 0 else "SDE"
        title = (f"{kind}, γ = {gamma:g}, {num_steps} steps: {num_samples} samples from one noise per row "
                 f"({seconds:.1f} s)")
        return plotting.same_noise_grid(rows, title), images

    return Explorer({"gamma": slider}, draw, noise=noise)


def guidance_explorer(model, scheduler, prediction: str = "v", digit: int = 4, guidance_scale: float = 1.0,
                      num_images: int = 8, steps: int = 20, max_guidance: float = 8.0, seed: int = 0,
                      noise: torch.Tensor | None = None, device: torch.device | str | None = None) -> Explorer:
    """A digit selector and a guidance slider, redrawing a grid of guided DDIM samples from fixed x_T.

    ``model`` is a class-conditional ``model(x_t, t, labels)`` (NULL_LABEL = no label) trained for
    ``prediction`` on ``scheduler``. The starting noise (from ``seed`` unless ``noise`` (N, C, H, W) is
    given) is drawn once and kept in ``explorer.noise``; DDIM (η = 0) is deterministic, so the picture
    changes only with the digit and the guidance. ``explorer.images`` holds the samples on screen. Each
    redraw costs ``steps`` batched passes over 2 × N images (conditional and unconditional).
    """
    device = torch.device(device) if device is not None else scheduler.device
    if noise is None:
        noise = fixed_noise(model, num_images, seed)
    noise = noise.to(device)
    digits = widgets.Dropdown(options=list(range(10)), value=digit, description="digit",
                              layout=widgets.Layout(width="160px"))
    # steps of 0.05 put every recommended scale (1.85 for the shipped CFG DDPM) on the slider's grid
    slider = widgets.FloatSlider(value=guidance_scale, min=0.0, max=max_guidance, step=0.05, description="guidance",
                                 continuous_update=False, layout=widgets.Layout(width="380px"))

    def draw(digit: int, guidance_scale: float) -> tuple[plt.Figure, torch.Tensor]:
        started = time.perf_counter()
        labels = torch.full((len(noise),), digit, device=device)
        images = ddpm.sample_ddim(model, scheduler, noise, labels, num_steps=steps, prediction=prediction,
                                  guidance_scale=float(guidance_scale))
        seconds = time.perf_counter() - started
        title = f"digit {digit}, guidance {guidance_scale:g}: DDIM {steps} steps ({seconds:.1f} s)"
        return plotting.compare_grids({title: images}, nrow=min(4, len(images)), size=3.5), images

    return Explorer({"digit": digits, "guidance_scale": slider}, draw, noise=noise)


def flow_steps_explorer(model, labels, guidance_scale=None, steps: int = 4, method: str = "heun",
                        max_steps: int = 50, methods=("euler", "heun", "heun_euler_last", "midpoint"), seed: int = 0,
                        noise: torch.Tensor | None = None, device: torch.device | str = "cpu") -> Explorer:
    """A slider over the ODE steps (1 to ``max_steps``) and a method toggle, redrawing flow samples from fixed noise.

    ``model`` is a flow velocity ``model(x_t, t, labels)``; ``labels`` the digits to draw, one image each
    (None for an unconditional model). The starting noise x_1 (from ``seed`` unless ``noise``
    (len(labels), C, H, W) is given) is drawn once and kept in ``explorer.noise``; the ODE is
    deterministic, so the picture changes only with the steps and the method. ``explorer.images`` holds
    the samples on screen. The title gives the NFE (network evaluations per image, ``flow.nfe``; with
    guidance each is one batched pass of 2 × N images) and the time the redraw took.
    """
    if method not in methods:
        raise ValueError(f"method {method!r} is not among the toggle's {methods}")
    labels = None if labels is None else torch.as_tensor(labels).long().flatten().to(device)  # (N,)
    if noise is None:
        if labels is None:
            raise ValueError("give labels or the noise, so the explorer knows how many images to draw")
        noise = fixed_noise(model, len(labels), seed)
    noise = noise.to(device)
    slider = widgets.IntSlider(value=steps, min=1, max=max_steps, description="ODE steps",
                               continuous_update=False, style={"description_width": "initial"},
                               layout=widgets.Layout(width="380px"))
    toggle = widgets.ToggleButtons(options=list(methods), value=method, style={"button_width": "auto"})

    def draw(steps: int, method: str) -> tuple[plt.Figure, torch.Tensor]:
        started = time.perf_counter()
        images = flow.sample_ode(model, noise, labels, num_steps=steps, method=method, guidance_scale=guidance_scale)
        seconds = time.perf_counter() - started
        title = f"{method}, {steps} step{'s' if steps > 1 else ''} = {flow.nfe(method, steps)} NFE ({seconds:.2f} s)"
        return plotting.wide_grid(images, title, nrow=min(10, len(images))), images

    return Explorer({"steps": slider, "method": toggle}, draw, noise=noise)


def reflow_explorer(models: dict, labels, guidance_scales: dict | None = None, steps: int = 1, max_steps: int = 16,
                    seed: int = 0, noise: torch.Tensor | None = None, device: torch.device | str = "cpu") -> Explorer:
    """One Euler-steps slider for several flows side by side (chapter 07: the base model and its reflow).

    ``models`` maps a row name to a velocity ``model(x_t, t, labels)``; every row starts from the same
    noise (drawn once from ``seed`` unless given, kept in ``explorer.noise``) and draws ``labels``, one
    image each, with its own guidance scale from ``guidance_scales`` (None: unguided). ``explorer.images``
    maps each name to the samples on screen.
    """
    labels = torch.as_tensor(labels).long().flatten().to(device)  # (N,)
    scales = {name: None for name in models} | dict(guidance_scales or {})
    if noise is None:
        noise = fixed_noise(next(iter(models.values())), len(labels), seed)
    noise = noise.to(device)
    slider = widgets.IntSlider(value=steps, min=1, max=max_steps, description="Euler steps (NFE)",
                               continuous_update=False, style={"description_width": "initial"},
                               layout=widgets.Layout(width="380px"))

    def draw(steps: int) -> tuple[plt.Figure, dict]:
        started = time.perf_counter()
        rows = {name: flow.sample_ode(model, noise, labels, num_steps=steps, method="euler",
                                      guidance_scale=scales[name]) for name, model in models.items()}
        seconds = time.perf_counter() - started
        title = (f"Euler, {steps} step{'s' if steps > 1 else ''} = {steps} NFE, same noise in every row "
                 f"({seconds:.2f} s)")
        return plotting.same_noise_grid(rows, title), rows

    return Explorer({"steps": slider}, draw, noise=noise)
