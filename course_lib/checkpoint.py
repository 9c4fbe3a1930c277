"""Checkpoint files: the format, safe loading, atomic writing, and the model and settings they hold.

A checkpoint is a ``torch.save`` of a plain dict (docs/conventions.md, "Checkpoints"): ``format``, ``kind`` ("ddpm",
"cfg", "flow"), ``model_config``, the EMA ``state_dict`` and ``metadata`` (the recipe, the settings
sampling needs, measured quality). Training writes two files: the slim one that ships, and beside
it ``name.resume.pt`` with the optimiser and raw weights as well (:func:`resume_path`). Loading uses
``weights_only=True``, and every mismatch is a :class:`CheckpointError` that names it.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from . import config, ddpm, dit, guidance

CHECKPOINT_FORMAT = "simplest-diffusion/1"
CONDITIONAL = ("cfg", "flow")  # the kinds whose DiT reads labels through cross-attention
# what sampling reads from the metadata, per kind; the DDPM scheduler's T is stored as "num_steps"
SAMPLING_FIELDS = {"ddpm": ("prediction", "schedule", "num_steps"), "cfg": ("prediction", "schedule", "num_steps"),
                   "flow": ()}


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of the wrong kind, or does not match the model."""


class DeviceError(ValueError):
    """A device name that is not a device, or one this machine does not have."""


# ---------------------------------------------------------------------------- files
def save_checkpoint(path: Path | str, payload: dict) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, partial)
    except BaseException:  # a full disk or Ctrl-C: the half-written file is of no use
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)  # atomic: a crash leaves the old checkpoint or the new one
    return path


def load_checkpoint(path: Path | str, kind: str | None = None) -> dict:
    """Load a checkpoint safely (``weights_only=True``) and check its format and kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({unreadable_reason(error)})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a SimplestDiffusion checkpoint (format "
                              f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {payload.get('kind')!r} model, expected {kind!r}")
    return payload


def unreadable_reason(error: Exception) -> str:
    """torch.load's error as one short line (its own text spans lines and may advise weights_only=False)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"loading it would call {refused.group(1)}, which weights_only=True refuses: unpickling such a "
                f"file can run any code, and a checkpoint needs only tensors and plain data")
    detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if detail:
        return f"not a torch.save file: {detail.group(1).strip() or 'unpickling failed'}"
    return f"{type(error).__name__}: {text[:200]}"


def slim(payload: dict) -> dict:
    """A copy without the optimiser and raw weights: what ships and what sampling needs."""
    return {k: v for k, v in payload.items() if k != "training"}


def resume_path(checkpoint_path: Path | str) -> Path:
    """Where the full training state lives beside a (slim) checkpoint: ``name.resume.pt``."""
    path = Path(checkpoint_path)
    return path.with_name(path.stem + ".resume" + path.suffix)


def write_both(checkpoint_path: Path | str, payload: dict) -> None:
    save_checkpoint(resume_path(checkpoint_path), payload)
    save_checkpoint(checkpoint_path, slim(payload))


# ---------------------------------------------------------------------------- weights and the model
def load_weights(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> nn.Module:
    """``load_state_dict`` with an error that names the mismatching tensors."""
    own = model.state_dict()
    if "pos_embed" in own and "pos_embed" not in state_dict:  # checkpoints from before it was saved
        state_dict = {**state_dict, "pos_embed": own["pos_embed"]}
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{source} holds NaN or Inf in {bad[:5]}: the weights are broken")
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"wrong shapes {wrong[:5]}" if wrong else ""]
        hint = ""
        if any(w.startswith("pos_embed") for w in wrong):
            hint = " (pos_embed: its img_size or patch_size disagrees with the weights)"
        elif any(w.startswith("patch_embed") for w in wrong):
            hint = " (patch_embed: its patch_size or channels disagree with the weights)"
        raise CheckpointError(f"{source} does not match the model{hint}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state_dict)
    return model


def load_model(path: Path | str, kind: str, device: torch.device | str = "cpu"):
    """Build the DiT a checkpoint describes and load its (EMA) weights; returns (model, payload)."""
    payload = load_checkpoint(path, kind=kind)
    try:
        cfg = dit.DiTConfig(**payload["model_config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from error
    if (kind in CONDITIONAL) != cfg.cross_attention:
        must = "must" if kind in CONDITIONAL else "must not"
        raise CheckpointError(f"{path}: a {kind} model {must} use cross-attention, but its config "
                              f"says cross_attention={cfg.cross_attention}")
    differ = config_disagreements(cfg, payload["state_dict"])
    if differ:
        raise CheckpointError(f"{path}: its model config disagrees with its weights: " + ", ".join(differ))
    model = load_weights(dit.DiT(cfg), payload["state_dict"], str(path))
    return model.to(device).eval(), payload


def with_guide(payload: dict, guide_payload: dict, guidance_scale: float, sampler: str | None = None,
               steps: int | None = None) -> dict:
    """A copy of an unconditional DDPM checkpoint that carries ``guide_payload``'s weights for autoguidance.

    The recommended ``guidance_scale`` (and ``sampler``, ``steps``) go into the metadata, where
    ``infer`` and :func:`course_lib.sampling.make_sampler` read them; the guide's recipe goes too.
    """
    if payload["kind"] != "ddpm" or guide_payload["kind"] != "ddpm":
        raise ValueError("autoguidance pairs two unconditional ddpm checkpoints")
    guide = {"model_config": guide_payload["model_config"], "state_dict": guide_payload["state_dict"]}
    meta = {**payload["metadata"], "guidance_scale": float(guidance.check_guidance_scale(guidance_scale)),
            "sampler": sampler, "steps": steps, "guide": {k: guide_payload["metadata"].get(k)
                                                           for k in ("recipe", "step", "train_seconds")}}
    return {**payload, "guide": guide, "metadata": meta}


def load_guide(payload: dict, path: Path | str = "the checkpoint", device: torch.device | str = "cpu"):
    """The weaker model an unconditional checkpoint may carry for autoguidance, or None.

    It is stored inside the checkpoint as ``payload["guide"] = {"model_config", "state_dict"}``
    (:func:`guidance.autoguided`), so the pair always travels together.
    """
    guide = payload.get("guide")
    if guide is None:
        return None
    try:
        cfg = dit.DiTConfig(**guide["model_config"])
        state_dict = guide["state_dict"]
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} has an invalid guide: {error}") from error
    return load_weights(dit.DiT(cfg), state_dict, f"{path} (its guide)").to(device).eval()


def config_disagreements(cfg, state_dict: dict) -> list[str]:
    """Config fields that the weights' shapes contradict, as 'field config vs weights' strings.

    Read off the weights: dim (patch embedding rows), patch_size (its columns are p*p*channels),
    img_size (sqrt of the positions times p), depth (blocks), long skips, conv head, cross-attention.
    The number of heads leaves no trace in the shapes and cannot be checked here.
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    found = {}
    if "patch_embed.weight" in shapes:
        dim, patch_values = shapes["patch_embed.weight"]
        found["dim"] = dim
        patch = math.isqrt(patch_values // cfg.channels)
        if patch * patch * cfg.channels == patch_values:
            found["patch_size"] = patch
            if "pos_embed" in shapes and math.isqrt(shapes["pos_embed"][0]) ** 2 == shapes["pos_embed"][0]:
                found["img_size"] = math.isqrt(shapes["pos_embed"][0]) * patch
    blocks = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")}
    if blocks:
        found["depth"] = max(blocks) + 1
    found["skip"] = any(".skip_merge." in k for k in shapes)
    found["conv_head"] = "head.weight" in shapes
    found["cross_attention"] = "label_tokens" in shapes
    return [f"{k} {getattr(cfg, k)!r} in the config but {v!r} in the weights" for k, v in found.items()
            if getattr(cfg, k) != v]


def sampling_settings(payload: dict, path: Path | str = "the checkpoint") -> dict:
    """What sampling needs from the checkpoint's metadata.

    DDPM and CFG need ``prediction``, ``schedule`` and ``num_steps`` (the scheduler's T): a missing
    one is an error, never a default, since a wrong guess samples noise. ``guidance_scale`` is the
    recommended scale that ``benchmarks/sweep.py guidance --choose`` stores; a checkpoint without one
    (every fresh ``train`` run) samples at :data:`guidance.DEFAULT_GUIDANCE_SCALE`, as documented, or at 1
    (no guidance) if it is an unconditional DDPM without a guide. ``sampler`` and ``steps`` are the
    recommended sampler and step count, None where the checkpoint recommends none.
    """
    meta = payload.get("metadata")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has no metadata, so how it was trained is unknown")
    needed = SAMPLING_FIELDS[payload["kind"]]
    missing = [k for k in needed if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: its metadata lacks {', '.join(missing)}, needed to sample")
    if "prediction" in needed and meta["prediction"] not in ddpm.PREDICTIONS:
        raise CheckpointError(f"{path}: unknown prediction type {meta['prediction']!r} "
                              f"(expected one of {ddpm.PREDICTIONS})")
    # an unconditional DDPM without a guide has nothing to guide with: its scale is 1, the model alone
    default_scale = guidance.DEFAULT_GUIDANCE_SCALE if payload["kind"] in CONDITIONAL or "guide" in payload else 1.0
    return {**{k: meta[k] for k in needed}, "guidance_scale": meta.get("guidance_scale", default_scale),
            "sampler": meta.get("sampler"), "steps": meta.get("steps")}


# ---------------------------------------------------------------------------- devices
def resolve_device(name: str | None) -> torch.device:
    """``None`` -> the default device; otherwise the named one, if this machine has it (else DeviceError).

    Its messages start with "device", so the command line shows them as ``--device ...`` as they are.
    """
    if name is None:
        return config.default_device()
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceError(f"device {name!r} is not a device ({error})") from error
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {name}: the book runs on cpu or cuda, not {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name} asked for CUDA, which is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device
