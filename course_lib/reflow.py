"""Reflow (Liu et al. 2022, "Flow Straight and Fast"): straighten a trained flow by retraining it on its own couplings.

Flow matching pairs every image with *independent* noise, so the straight lines between pairs cross, and
the learned field, which must average the directions through each point, bends its paths. Reflow runs
the trained model's ODE from noise ``x1`` to an image ``x0`` and trains again on those pairs: a point on
the chord ``t·x1 + (1 - t)·x0`` of such a pair is (nearly) crossed by no other chord, so the average is
the chord's own direction and the new paths are straight enough for one or two Euler steps.

The pairs travel through the one training loop (:func:`course_lib.training.train`) as "images" with the
noise stacked on the channels (:func:`pack`), so a shuffled batch can never separate a pair.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import config, flow, guidance
from .ddpm import _randn

PAIR_STEPS = 8  # the base model's Euler steps per pair: its recommended sampler (chapter 05)
STRAIGHTNESS_STEPS = 32


def make_pairs(model, num_pairs: int, image_shape, labels: torch.Tensor | None = None, num_steps: int = PAIR_STEPS,
               method: str = "euler", guidance_scale=None, generator: torch.Generator | None = None, device="cpu",
               batch_size: int = 250, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noise, images)``, each (num_pairs, *image_shape) on the CPU: image i is where the ODE carries noise i.

    ``labels`` (num_pairs,) are the classes asked for (None: an unconditional model).
    """
    if labels is not None and len(labels) != num_pairs:
        raise ValueError(f"labels has {len(labels)} entries for {num_pairs} pairs; give one label per pair")
    noises, images = [], []
    with tqdm(total=num_pairs, desc="reflow pairs", leave=False, disable=config.QUIET or not progress) as bar:
        for start in range(0, num_pairs, batch_size):
            count = min(batch_size, num_pairs - start)
            x_1 = _randn((count, *image_shape), generator, device)
            y = None if labels is None else labels[start:start + count].to(device)
            x_0 = flow.sample_ode(model, x_1.shape, num_steps, method, y, guidance_scale, device=device, x_1=x_1)
            noises.append(x_1.cpu())
            images.append(x_0.cpu())
            bar.update(count)
    return torch.cat(noises), torch.cat(images)


def pack(noise: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Stack each pair on the channel axis: (N, C, ...) twice -> (N, 2C, ...), noise first."""
    if noise.shape != images.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, images have {tuple(images.shape)}")
    return torch.cat([noise, images], dim=1)


def unpack(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pack`: ``(noise, images)``."""
    if pairs.shape[1] % 2:
        raise ValueError(f"pairs have {pairs.shape[1]} channels; packed pairs have an even number")
    return pairs.chunk(2, dim=1)


def loss(model, pairs: torch.Tensor, labels, generator: torch.Generator | None = None,
         time_sampling: str = "uniform") -> torch.Tensor:
    """Flow matching's loss on the chords of coupled pairs (:func:`pack`) instead of independent noise."""
    noise, images = unpack(pairs)
    return flow.loss(model, images, labels, generator, time_sampling, noise=noise)


def straightness(model, x_1: torch.Tensor, labels=None, num_steps: int = STRAIGHTNESS_STEPS,
                 guidance_scale=None) -> float:
    """Liu et al.'s S = ∫ E‖(x1 - x0) - v(x_t, t)‖² dt along the model's own Euler paths, per pixel.

    0 exactly when every path is a straight line walked at constant speed; an Euler step of size h then
    lands where the ODE does, so one step is as good as many. With Euler the chord ``x1 - x0`` is the
    mean of the velocities used, so S is their variance along the path.
    """
    velocity = guidance.maybe_guided(model, guidance_scale)
    x, velocities = x_1, []
    times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            v = velocity(x, x.new_tensor(t), labels)
            velocities.append(v)
            x = x - (t - t_next) * v
        chord = x_1 - x
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
