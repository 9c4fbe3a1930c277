"""Reflow (Liu et al. 2022, "Flow Straight and Fast"): straighten a trained flow by retraining it on its own couplings.

Flow matching pairs every image with *independent* noise, so the straight lines between pairs cross, and
the learned field, which must average the directions through each point, bends its paths. Reflow runs
the trained model's ODE from noise ``x1`` to an image ``x0`` and trains again on those pairs: a point on
the chord ``t·x1 + (1 - t)·x0`` of such a pair is (nearly) crossed by no other chord, so the average is
the chord's own direction and the new paths are straight enough for one or two Euler steps.

The pairs travel through the one training loop (:func:`course_lib.training.train`) as the tensors
``(noise, images, labels)``, shuffled together, so a batch never separates a pair.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import config, flow, guidance

PAIR_STEPS = 8  # the base model's Euler steps per pair: its recommended sampler (chapter 05)
STRAIGHTNESS_STEPS = 32


def make_pairs(model, noise: torch.Tensor, labels: torch.Tensor | None = None, *, num_steps: int = PAIR_STEPS,
               method: str = "euler", guidance_scale: float | None = None, batch_size: int = 250,
               progress: bool = True) -> torch.Tensor:
    """The images the ODE carries ``noise`` (N, C, H, W) to, on the CPU: ``(noise[i], images[i])`` is pair i.

    ``labels`` (N,) are the classes asked for (None: an unconditional model). Sampling runs in batches of
    ``batch_size`` on the noise's device (put the noise where the model is).
    """
    if labels is not None and len(labels) != len(noise):
        raise ValueError(f"labels has {len(labels)} entries for {len(noise)} noise images; give one label per pair")
    images = []
    with tqdm(total=len(noise), desc="reflow pairs", leave=False, disable=config.QUIET or not progress) as bar:
        for start in range(0, len(noise), batch_size):
            x_1 = noise[start:start + batch_size]
            y = None if labels is None else labels[start:start + batch_size]
            images.append(flow.sample_ode(model, x_1, y, num_steps=num_steps, method=method,
                                          guidance_scale=guidance_scale).cpu())
            bar.update(len(x_1))
    return torch.cat(images)


def loss(model, noise: torch.Tensor, images: torch.Tensor, labels, generator: torch.Generator | None = None,
         time_sampling: str = "uniform") -> torch.Tensor:
    """Flow matching's loss on the chords of coupled pairs ``(noise[i], images[i])`` instead of independent noise."""
    return flow.loss(model, images, labels, generator, time_sampling, noise=noise)


def straightness(model, noise: torch.Tensor, labels=None, *, num_steps: int = STRAIGHTNESS_STEPS,
                 guidance_scale: float | None = None) -> float:
    """Liu et al.'s S = ∫ E‖(x1 - x0) - v(x_t, t)‖² dt along the model's own Euler paths, per pixel.

    0 exactly when every path is a straight line walked at constant speed; an Euler step of size h then
    lands where the ODE does, so one step is as good as many. With Euler the chord ``x1 - x0`` is the
    mean of the velocities used, so S is their variance along the path.
    """
    velocity, labels = guidance.for_sampling(model, labels, noise, guidance_scale)
    x, velocities = noise, []
    times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            v = velocity(x, x.new_tensor(t), labels)
            velocities.append(v)
            x = x - (t - t_next) * v
        chord = noise - x
        return torch.stack([(chord - v) ** 2 for v in velocities]).mean().item()


class ToyVelocity(nn.Module):
    """v(x, t) for points of ``dim`` coordinates (the 1-D and 2-D toys): a small MLP of (x, t).

    Called like the DiT, ``model(x_t, t, labels)``, with x_t (B, dim); labels are ignored.
    """

    def __init__(self, dim: int = 2, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, dim))

    def forward(self, x, t, labels=None):
        return self.net(torch.cat([x, flow._per_sample(t, x)], dim=1))  # (B, dim)
