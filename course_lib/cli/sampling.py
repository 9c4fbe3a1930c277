"""Sampler selection for the command line and the benchmarks: which sampler, how many steps, which guidance.

``infer``, ``benchmarks.sweep`` and ``benchmarks.quality`` all sample a checkpoint through
:func:`make_sampler`, so all of them take the schedule, T and prediction type the checkpoint was
trained with (:func:`course_lib.checkpoint.sampling_settings`) and the same defaults::

    model, payload = checkpoint.load_model("checkpoints/flow_cfg.pt", "flow")
    sample = sampling.make_sampler(model, payload, "heun", 4)
    images = sample((10, 1, 32, 32), torch.arange(10), torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import config, ddpm, flow, guidance
from ..checkpoint import CONDITIONAL, load_guide, sampling_settings

DDPM_SAMPLERS = ("ddpm", "ddim")
SAMPLERS = {"ddpm": DDPM_SAMPLERS, "cfg": DDPM_SAMPLERS, "flow": (*flow.ODE_METHODS, "sde")}
# flow: Euler with 8 steps, not Heun with 4 (same 8 NFE): on the shipped model Heun's 4 steps leave a noise
# speckle, Fréchet 359 against Euler's 132 (notebook 06, N = 200; RESULTS.md, "Quality sweep: nfe")
DEFAULT_SAMPLER = {"ddpm": "ddim", "cfg": "ddim", "flow": "euler"}
# the ODE methods share Euler's budget of network evaluations: Heun and midpoint take half the steps
DEFAULT_STEPS = {"ddim": ddpm.DDIM_STEPS, "sde": flow.SDE_STEPS,
                 **{m: flow.ODE_STEPS // flow.EVALS_PER_STEP[m] for m in flow.ODE_METHODS}}


@dataclass(frozen=True)
class Sampler:
    """A sampler chosen for one model: ``sampler(shape, labels, generator) -> images`` (B, C, H, W)."""

    name: str
    steps: int | None  # None for "ddpm", which walks all T steps of the scheduler
    nfe: int  # network evaluations per image (a guided one, a batched pass of two, counts once)
    guidance_scale: float | None  # CFG's scale, or autoguidance's for a ddpm model; None: the model alone
    gamma: float | None  # the SDE's noise level; None for the other samplers
    conditional: bool  # True: it wants labels, digits 0-9
    draw: Callable = field(repr=False)

    def __call__(self, shape, labels: torch.Tensor | None = None, generator: torch.Generator | None = None):
        return self.draw(shape, labels, generator)

    def describe(self) -> str:
        """e.g. ``euler, 8 steps, guidance 3``."""
        steps = "" if self.steps is None else f", {self.steps} steps"
        which = "guidance" if self.conditional else "autoguidance"
        return f"{self.name}{steps}{'' if self.guidance_scale is None else f', {which} {self.guidance_scale:g}'}"


def check_choice(kind: str, sampler: str | None = None, steps: int | None = None,
                 gamma: float | None = None) -> tuple[str, int | None, float | None]:
    """``(sampler, steps, gamma)`` with the defaults filled in, or a ValueError naming the options that do not fit.

    The values themselves were checked by the command line's argparse types (or by the benchmark's).
    """
    name = sampler or DEFAULT_SAMPLER[kind]
    if name not in SAMPLERS[kind]:
        raise ValueError(f"--sampler {name}: {kind} models sample with {', '.join(SAMPLERS[kind])}")
    if gamma is not None and name != "sde":
        raise ValueError("--gamma sets the noise of --sampler sde only")
    if name == "ddpm" and steps is not None:
        raise ValueError("--steps does not apply to --sampler ddpm, which always takes all the scheduler's T steps; "
                         "use ddim")
    steps = DEFAULT_STEPS.get(name) if steps is None else steps
    gamma = (flow.SDE_GAMMA if gamma is None else gamma) if name == "sde" else None
    return name, steps, gamma


def make_sampler(model, payload: dict, sampler: str | None = None, steps: int | None = None, *,
                 guidance_scale: float | None = None, gamma: float | None = None,
                 device: torch.device | str = "cpu", path="the checkpoint") -> Sampler:
    """The sampler for ``model`` loaded from the checkpoint ``payload``; a ValueError if the choice does not fit.

    ``sampler`` and ``steps`` default to the checkpoint's recommended ones, else :data:`DEFAULT_SAMPLER`
    of the kind and :data:`DEFAULT_STEPS`; ``guidance_scale`` to the checkpoint's recommended one (for an
    unconditional DDPM: autoguidance by the guide it carries, 1 without one); ``gamma`` (sde only)
    to ``flow.SDE_GAMMA``. DDPM and CFG sample with the checkpoint's schedule, T and prediction.
    """
    kind = payload["kind"]
    settings = sampling_settings(payload, path)
    if sampler is None and settings["sampler"] is not None:  # the checkpoint's recommended sampler and steps
        sampler, steps = settings["sampler"], settings["steps"] if steps is None else steps
    name, steps, gamma = check_choice(kind, sampler, steps, gamma)
    conditional = kind in CONDITIONAL
    scale = guidance_scale if guidance_scale is not None else settings["guidance_scale"]
    if not conditional:  # an unconditional DDPM: autoguided by the weaker model it carries, if any
        guide = load_guide(payload, path, device)
        if guide is None and scale != 1:
            raise ValueError(f"--guidance_scale {scale:g}: {path} carries no guide for autoguidance, so 1 "
                             "(the model alone) is its only scale")
        model, scale = (model, None) if scale == 1 else (guidance.autoguided(model, guide, scale), scale)
    cfg_scale = scale if conditional else None  # what the sampler mixes itself: classifier-free guidance
    if kind == "flow":
        draw, nfe = _flow_draw(model, name, steps, gamma, scale, device), flow.nfe(name, steps)
    else:
        scheduler = ddpm.NoiseScheduler(num_timesteps=settings["num_timesteps"], schedule=settings["schedule"],
                                        device=device)
        if name == "ddim" and steps > scheduler.num_timesteps:
            raise ValueError(f"--steps {steps}: DDIM takes at most the checkpoint's {scheduler.num_timesteps} steps")
        steps = steps if name == "ddim" else None
        draw = _ddpm_draw(model, scheduler, name, steps, cfg_scale, settings["prediction"], device)
        nfe = scheduler.num_timesteps if name == "ddpm" else steps
    return Sampler(name, steps, nfe, scale, gamma, conditional, draw)


def _ddpm_draw(model, scheduler, name, steps, scale, prediction, device):
    def draw(shape, labels, generator):
        noise = config.randn(shape, generator, device)  # (B, C, H, W): x_T
        if name == "ddpm":
            return ddpm.sample(model, scheduler, noise, labels, prediction=prediction, guidance_scale=scale,
                               generator=generator)
        return ddpm.sample_ddim(model, scheduler, noise, labels, num_steps=steps, prediction=prediction,
                                guidance_scale=scale)

    return draw


def _flow_draw(model, name, steps, gamma, scale, device):
    def draw(shape, labels, generator):
        noise = config.randn(shape, generator, device)  # (B, C, H, W): x_1
        if name == "sde":
            return flow.sample_sde(model, noise, labels, num_steps=steps, gamma=gamma, guidance_scale=scale,
                                   generator=generator)
        return flow.sample_ode(model, noise, labels, num_steps=steps, method=name, guidance_scale=scale)

    return draw
