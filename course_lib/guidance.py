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

import torch

from . import config
from .data import NULL_LABEL, NUM_CLASSES

P_UNCOND = 0.1
# what a checkpoint without a recommended scale samples with (sweep.py guidance --choose records one)
DEFAULT_GUIDANCE_SCALE = 2.0


def drop_labels(labels: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``NULL_LABEL`` with probability ``p_uncond`` in [0, 1] (a new tensor)."""
    p_uncond = config.check_number("p_uncond", p_uncond, 0.0, 1.0)
    drop = torch.rand(labels.shape, generator=generator) < p_uncond  # drawn on the CPU, like all noise
    return torch.where(drop.to(labels.device), torch.full_like(labels, NULL_LABEL), labels)


def check_labels(labels, batch_size: int | None = None, allow_null: bool = False) -> torch.Tensor:
    """Labels as a long tensor: digits 0-9 (and ``NULL_LABEL`` if ``allow_null``), one per image if
    ``batch_size`` is given."""
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as error:  # "four", ["4"], None: torch's own message says less
        raise TypeError(f"labels must be integers 0-{NUM_CLASSES - 1}, got {labels!r}") from error
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers 0-{NUM_CLASSES - 1}, got dtype {labels.dtype}")
    top = NULL_LABEL if allow_null else NUM_CLASSES - 1
    if labels.numel() and (labels.min() < 0 or labels.max() > top):
        raise ValueError(f"labels must be digits 0-{NUM_CLASSES - 1}{' or NULL_LABEL' * allow_null}, got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    if batch_size is not None and labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},), one per image, got {tuple(labels.shape)}")
    return labels.long()


def for_sampling(model, labels, noise: torch.Tensor, guidance_scale: float | None):
    """What a sampler does on entry: ``(model to call, labels)``, each checked once.

    Guided, the labels must be digits 0-9 (the sampler adds the null label itself) and the model is wrapped by
    :func:`guided`; unguided, ``NULL_LABEL`` asks a conditional model for its unconditional prediction. The
    labels are moved to the noise's device; None stays None (an unconditional model).
    """
    if labels is not None:
        labels = check_labels(labels, len(noise), allow_null=guidance_scale is None).to(noise.device)
    return maybe_guided(model, guidance_scale, labels), labels


def check_guidance_scale(guidance_scale) -> float:
    """A finite number >= 0: 0 unconditional (or the guide alone), 1 the model alone, above 1 guided."""
    return config.check_number("guidance_scale", guidance_scale)


def guided_prediction(model, x_t: torch.Tensor, t, labels: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """The notes' CFG formula, with the conditional and unconditional passes in one batch of 2B.

    Called at every step, so it checks nothing: :func:`guided` and the samplers check on entry.
    """
    b = x_t.shape[0]
    t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).expand(b)  # (B,)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                 torch.cat([labels, torch.full_like(labels, NULL_LABEL)]))  # (2B, C, H, W)
    pred_cond, pred_uncond = both[:b], both[b:]
    return pred_uncond + guidance_scale * (pred_cond - pred_uncond)


def guided(model, guidance_scale: float):
    """``model`` wrapped as ``f(x_t, t, labels)`` that returns :func:`guided_prediction`.

    Samplers take any such callable, so guidance plugs into DDPM, DDIM and the flow samplers alike.
    The scale is checked here, once; the samplers check the labels once, on entry.
    """
    guidance_scale = check_guidance_scale(guidance_scale)

    def guided_model(x_t, t, labels):
        return guided_prediction(model, x_t, t, labels, guidance_scale)

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


def maybe_guided(model, guidance_scale: float | None, labels: torch.Tensor | None):
    """What a sampler calls on entry: ``model`` itself without a scale, else :func:`guided` ``model``."""
    if guidance_scale is None:
        return model
    if labels is None:
        raise ValueError("guided sampling needs labels (digits 0-9), one per image")
    return guided(model, guidance_scale)
