"""Checkpoint files: the format, safe loading, atomic writing, and the model and settings they hold.

A checkpoint is a ``torch.save`` of a plain dict (docs/conventions.md, "Checkpoints"): ``format``, ``kind`` ("ddpm",
"cfg", "flow"), ``model_config``, the EMA ``state_dict`` and ``metadata`` (the recipe, the settings
sampling needs, measured quality). Training writes two files: the slim one that ships, and beside
it ``name.resume.pt`` with the optimiser and raw weights as well (:func:`resume_path`). Loading uses
``weights_only=True``, and every mismatch is a :class:`CheckpointError` that names it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from . import config, ddpm, dit, guidance

CHECKPOINT_FORMAT = "simplest-diffusion/1"
CONDITIONAL = ("cfg", "flow")  # the kinds whose DiT reads labels through cross-attention
# what sampling reads from the metadata, per kind; the DDPM scheduler's T is stored as "num_timesteps"
SAMPLING_FIELDS = {"ddpm": ("prediction", "schedule", "num_timesteps"),
                   "cfg": ("prediction", "schedule", "num_timesteps"), "flow": ()}
MAX_TIMESTEPS = 10_000  # a stored T or step count above this is a broken file, not a recipe (the book's T is 1000)


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of the wrong kind, or does not match the model."""


class WriteError(OSError):
    """A file could not be written (a full disk, a folder gone); the file at its name is as it was."""


class DeviceError(ValueError):
    """A device name that is not a device, or one this machine does not have."""


# ---------------------------------------------------------------------------- files
_UMASK = os.umask(0)  # read once: a new file gets 0o666 & ~umask, as open() would give it
os.umask(_UMASK)
PARTIAL = ".partial"  # the temporary files' suffix: ``name.<random>.partial`` beside ``name``


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Every file the tools write goes through here: ``write(temporary)`` fills a uniquely named file
    beside ``path``, which is flushed to disk and renamed over ``path`` (atomic: a crash leaves the old
    file or the new one). On any exception (a full disk, Ctrl-C) the temporary is removed and ``path``
    is left as it was; an OSError becomes a :class:`WriteError` naming ``path``. Only SIGKILL can leave a
    temporary behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=path.name + ".", suffix=PARTIAL, dir=path.parent)
    temporary = Path(name)
    try:
        os.close(handle)
        write(temporary)
        with open(temporary, "rb") as written:  # a full disk may only show here, before the rename
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    return path


def write_bytes_atomically(path: Path | str, data: bytes) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_bytes(data))


def write_text_atomically(path: Path | str, text: str) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path | str, payload: dict) -> Path:
    """``torch.save`` through :func:`write_atomically`: the old checkpoint or the new one, never half of one."""
    return write_atomically(path, lambda temporary: torch.save(payload, temporary))


def file_sha256(path: Path | str) -> str:
    """The content hash of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    check_fields(payload, path)
    return payload


# what every checkpoint holds, and the type of each (the guide, when there is one, holds the first two)
FIELDS = {"model_config": dict, "state_dict": dict, "metadata": dict}


def check_fields(payload: dict, path, prefix: str = "", fields: dict = FIELDS) -> None:
    """Each of ``fields`` present with its type, and ``state_dict`` mapping names to tensors, or a
    CheckpointError naming the file and the field."""
    for field, kind in fields.items():
        if field not in payload:
            if field == "metadata":
                raise CheckpointError(f"{path} has no metadata, so how it was trained is unknown")
            raise CheckpointError(f"{path}: field {prefix}{field} is missing")
        if not isinstance(payload[field], kind):
            raise CheckpointError(f"{path}: field {prefix}{field} must be a {kind.__name__}, "
                                  f"got {type(payload[field]).__name__}")
    check_tensors(payload["state_dict"], path, f"{prefix}state_dict")
    if not prefix and "guide" in payload:
        if not isinstance(payload["guide"], dict):
            raise CheckpointError(f"{path}: field guide must be a dict, got {type(payload['guide']).__name__}")
        check_fields(payload["guide"], path, "guide.", {"model_config": dict, "state_dict": dict})


def check_tensors(tensors: dict, path, field: str, finite: bool = False) -> None:
    """``tensors`` maps names to tensors (and with ``finite``, none holds NaN or Inf), or a CheckpointError."""
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: field {field}[{name!r}] must be a tensor, got {type(value).__name__}")
        if finite and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: field {field}[{name!r}] holds NaN or Inf: the file is broken")


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
    return f"{type(error).__name__}: {text}"


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

    DDPM and CFG need ``prediction``, ``schedule`` and ``num_timesteps`` (the scheduler's T): a missing
    one is an error, never a default, since a wrong guess samples noise. ``guidance_scale`` is the
    recommended scale that ``python -m benchmarks.sweep guidance --choose`` stores; a checkpoint without one
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
    if "schedule" in needed and meta["schedule"] not in ddpm.SCHEDULES:
        raise CheckpointError(f"{path}: field metadata.schedule must be one of {ddpm.SCHEDULES}, "
                              f"got {meta['schedule']!r}")
    if "num_timesteps" in needed and not is_count(meta["num_timesteps"], MAX_TIMESTEPS):
        raise CheckpointError(f"{path}: field metadata.num_timesteps must be an integer in [1, {MAX_TIMESTEPS}], "
                              f"got {meta['num_timesteps']!r}")
    # an unconditional DDPM without a guide has nothing to guide with: its scale is 1, the model alone
    default_scale = guidance.DEFAULT_GUIDANCE_SCALE if payload["kind"] in CONDITIONAL or "guide" in payload else 1.0
    scale = meta.get("guidance_scale", default_scale)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise CheckpointError(f"{path}: field metadata.guidance_scale must be a finite number >= 0, got {scale!r}")
    sampler, steps = meta.get("sampler"), meta.get("steps")
    if sampler is not None and not isinstance(sampler, str):
        raise CheckpointError(f"{path}: field metadata.sampler must be a sampler's name, got {sampler!r}")
    if steps is not None and not is_count(steps, MAX_TIMESTEPS):
        raise CheckpointError(f"{path}: field metadata.steps must be an integer in [1, {MAX_TIMESTEPS}], got {steps!r}")
    return {**{k: meta[k] for k in needed}, "guidance_scale": scale, "sampler": sampler, "steps": steps}


def is_count(value, maximum: int) -> bool:
    """An int (not a bool) in [1, maximum]."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


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
