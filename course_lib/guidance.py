"""Classifier-free guidance (Ho & Salimans 2022), as in the original notes, and autoguidance.

Training: drop each label to ``NULL_LABEL`` with probability ``p_uncond``, so one network learns
both the conditional and the unconditional prediction. Sampling: ask for both in one batched
forward pass and push the unconditional one towards, and past, the conditional one::

    pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)

``guidance_scale = 0`` is unconditional sampling, ``1`` plain conditional sampling, above 1 guided.
The formula is linear, so it applies to whatever the network predicts (ε, v or a flow velocity).

Autoguidance (Karras et al. 2024, arXiv:2406.02507) is the same formula with another pair of
predictions: a model without labels is pushed away from a *weaker version of itself* (smaller, or
trained for less time), whose errors point where the strong model is still wrong::

    pred = pred_weak + guidance_scale * (pred_strong - pred_weak)

It needs no labels, so it guides the unconditional DDPM of notebook 02 (:func:`autoguided`).
"""

from __future__ import annotations

import math

import torch

from .data import NULL_LABEL, NUM_CLASSES
from .inputs import check_number

P_UNCOND = 0.1
# what a checkpoint without a recommended scale samples with (sweep.py guidance --choose records one)
DEFAULT_GUIDANCE_SCALE = 2.0


def check_p_uncond(p_uncond, for_training: bool = False) -> float:
    """The share of labels dropped: in [0, 1], and below 1 to train a model (1 would never show it a label)."""
    if for_training:
        return check_number("p_uncond", p_uncond, 0.0, 1.0, high_included=False)
    return check_number("p_uncond", p_uncond, 0.0, 1.0)


def drop_labels(labels: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``NULL_LABEL`` with probability ``p_uncond`` (a new tensor)."""
    p_uncond = check_p_uncond(p_uncond)
    drop = torch.rand(labels.shape, generator=generator) < p_uncond  # drawn on the CPU, like all noise
    return torch.where(drop.to(labels.device), torch.full_like(labels, NULL_LABEL), labels)


def check_labels(labels: torch.Tensor) -> torch.Tensor:
    """Labels for sampling must be digits 0-9 (the null label is the sampler's business)."""
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as error:  # "four", ["4"], None: torch's own message says less
        raise TypeError(f"labels must be integers 0-{NUM_CLASSES - 1}, got {labels!r}") from error
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers 0-{NUM_CLASSES - 1}, got dtype {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must be digits 0-{NUM_CLASSES - 1}, got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    return labels.long()


def check_guidance_scale(guidance_scale, maximum: float = math.inf) -> float:
    """A finite number >= 0 (0 unconditional, 1 conditional, above 1 guided), at most ``maximum`` if given.

    The library takes any scale (notebooks explore past 20); the command line caps it.
    """
    hint = "0 unconditional, 1 conditional, 2-5 typical" if math.isfinite(maximum) else ""
    return check_number("guidance_scale", guidance_scale, 0.0, maximum, hint=hint)


def guided_prediction(model, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                      guidance_scale: float) -> torch.Tensor:
    """The notes' CFG formula, with the conditional and unconditional passes in one batch."""
    return _combine(model, x_t, t, check_labels(labels).to(x_t.device), check_guidance_scale(guidance_scale))


def _combine(model, x_t: torch.Tensor, t, labels: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    b = x_t.shape[0]
    t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).expand(b)  # (B,)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                 torch.cat([labels, torch.full_like(labels, NULL_LABEL)]))  # (2B, C, H, W)
    pred_cond, pred_uncond = both[:b], both[b:]
    return pred_uncond + guidance_scale * (pred_cond - pred_uncond)


def guided(model, guidance_scale: float):
    """``model`` wrapped as ``f(x_t, t, labels)`` that returns the guided prediction.

    Samplers take any such callable, so guidance plugs into DDPM, DDIM and the flow samplers alike.
    The scale is checked here, once; the labels when the wrapper first sees them, not at every step.
    """
    guidance_scale = check_guidance_scale(guidance_scale)
    checked = (None, None)  # (labels as given, as checked): a sampler passes the same tensor at every step

    def guided_model(x_t, t, labels):
        nonlocal checked
        if labels is None:
            raise ValueError("guided sampling needs labels (digits 0-9)")
        if labels is not checked[0]:
            checked = (labels, check_labels(labels).to(x_t.device))
        return _combine(model, x_t, t, checked[1], guidance_scale)

    return guided_model


def autoguided(model, guide, guidance_scale: float):
    """``model`` pushed away from its weaker version ``guide``, as ``f(x_t, t, labels)`` for any sampler.

    ``guidance_scale = 1`` is ``model`` alone, 0 the guide alone, above 1 guided. Both networks predict
    the same quantity (ε, v or a velocity) for the same input, so their outputs mix like CFG's.
    """
    guidance_scale = check_guidance_scale(guidance_scale)

    def autoguided_model(x_t, t, labels=None):
        pred_weak = guide(x_t, t, labels)  # (B, C, H, W)
        pred_strong = model(x_t, t, labels)  # (B, C, H, W)
        return pred_weak + guidance_scale * (pred_strong - pred_weak)

    return autoguided_model


def maybe_guided(model, guidance_scale: float | None):
    """What a sampler calls: ``model`` itself without a scale, else :func:`guided` ``model``."""
    return model if guidance_scale is None else guided(model, guidance_scale)
