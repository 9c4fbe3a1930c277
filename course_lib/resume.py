"""Resume: continue a run from its last end-of-epoch checkpoint, or refuse, naming what would change.

A resumed run must be the run it continues: the same model, data, objective and optimiser, so
that stopping and resuming gives bit for bit what an uninterrupted run gives. :func:`check_resume`
loads the saved state once and compares it with what the caller is about to run; the command line
calls it before loading any data, and :func:`course_lib.training.train` calls it again on the state
already in memory (no second load).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import dit
from .checkpoint import CheckpointError, check_tensors, load_checkpoint, resume_path

# what a resume must agree on, besides the model config: the run's data order, objective and optimiser
RESUME_TRAIN_FIELDS = ("batch_size", "lr", "seed", "lr_decay_step", "lr_decay_rate", "lr_schedule",
                       "warmup_steps", "grad_clip", "ema_decay", "weight_decay")
# the settings outside TrainConfig that the command line stores in the metadata (None where a kind has none)
RESUME_META_FIELDS = ("prediction", "schedule", "num_steps", "limit", "p_uncond", "time_sampling", "loss_weighting",
                      "reflow", "reflow_sha256", "num_pairs", "pair_steps", "pair_guidance", "processes")
# what a field missing from an older checkpoint's metadata meant when that checkpoint was written
META_DEFAULTS = {"loss_weighting": "uniform", "processes": 1}


@dataclass(frozen=True)
class ResumePoint:
    """A loaded end-of-epoch training state: ``path`` as the caller named it, ``state`` the payload read."""

    path: Path
    state: dict

    @property
    def epoch(self) -> int:
        return self.state["training"]["epoch"]

    @property
    def step(self) -> int:
        return self.state["training"]["step"]


def load_resume(path: Path | str, kind: str) -> ResumePoint:
    """Read the full training state: ``name.resume.pt`` when it exists beside ``path``, else ``path``."""
    path = Path(path)
    source = resume_path(path) if resume_path(path).is_file() else path
    state = load_checkpoint(source, kind=kind)
    if "training" not in state:
        raise CheckpointError(f"{source} holds weights only; resume needs its .resume.pt companion")
    check_training_state(state, source)
    return ResumePoint(path, state)


# what ``state["training"]`` holds (training._Run.snapshot), and the type of each
TRAINING_FIELDS = {"model": dict, "optimizer": dict, "lr_schedule": dict, "ema": dict, "generator": torch.Tensor,
                   "losses": list, "step": int, "epoch": int}


def check_training_state(state: dict, source: Path) -> None:
    """Every field a resume restores is there, of its type and shape, and finite; else a CheckpointError
    naming ``source`` and the field. The optimiser's moments must fit the model the file describes."""
    training = state["training"]
    if not isinstance(training, dict):
        raise CheckpointError(f"{source}: field training must be a dict, got {type(training).__name__}")
    for field, kind in TRAINING_FIELDS.items():
        if field not in training:
            raise CheckpointError(f"{source}: field training.{field} is missing")
        if not isinstance(training[field], kind) or isinstance(training[field], bool):
            raise CheckpointError(f"{source}: field training.{field} must be a {kind.__name__}, "
                                  f"got {type(training[field]).__name__}")
    if training["step"] < 0 or training["epoch"] < 0:
        raise CheckpointError(f"{source}: fields training.step and training.epoch must be >= 0")
    if training["generator"].dtype != torch.uint8:
        raise CheckpointError(f"{source}: field training.generator must be a uint8 tensor (a generator's state)")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in training["losses"]):
        raise CheckpointError(f"{source}: field training.losses must hold finite numbers")
    shapes = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    for field, names in (("model", shapes), ("ema", {**{f"module.{k}": v for k, v in shapes.items()},
                                                      "n_averaged": None})):
        check_tensors(training[field], source, f"training.{field}", finite=True)
        found = {k: tuple(v.shape) for k, v in training[field].items()}
        if found.keys() != names.keys() or any(names[k] not in (None, found[k]) for k in names):
            raise CheckpointError(f"{source}: field training.{field} does not fit the model's weights "
                                  f"(other names or shapes than state_dict)")
    check_optimizer(training["optimizer"], state, source)


def check_optimizer(optimizer: dict, state: dict, source: Path) -> None:
    """AdamW's state over the model's parameters, in their order: one entry per parameter, moments of its shape."""
    try:
        with torch.device("meta"):  # the parameters' shapes without allocating them
            params = [tuple(p.shape) for p in dit.DiT(dit.DiTConfig(**state["model_config"])).parameters()]
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: field model_config is invalid ({error})") from error
    groups, moments = optimizer.get("param_groups"), optimizer.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups) or not isinstance(moments, dict):
        raise CheckpointError(f"{source}: field training.optimizer must hold param_groups (with params) and state")
    count = sum(len(g["params"]) for g in groups)
    if count != len(params):
        raise CheckpointError(f"{source}: field training.optimizer is for {count} parameters, the model has "
                              f"{len(params)}: it belongs to another model")
    for index, entry in moments.items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise CheckpointError(f"{source}: field training.optimizer.state has an entry {index!r} for no parameter")
        check_tensors(entry, source, f"training.optimizer.state[{index}]", finite=True)
        for name in ("exp_avg", "exp_avg_sq"):
            if name in entry and tuple(entry[name].shape) != params[index]:
                raise CheckpointError(f"{source}: field training.optimizer.state[{index}].{name} has shape "
                                      f"{tuple(entry[name].shape)}, its parameter {params[index]}: it belongs to "
                                      f"another model")


def check_resume(resume: Path | str | ResumePoint, kind: str, model_config: dict, cfg, num_images: int,
                 metadata: dict | None = None) -> ResumePoint:
    """The saved run that ``resume`` names, if this run (``cfg``, a TrainConfig) continues it exactly.

    Refused with a CheckpointError: another kind or model config, other settings (the
    :data:`RESUME_TRAIN_FIELDS`, the epochs of a cosine schedule, and with ``metadata`` the
    :data:`RESUME_META_FIELDS`), a run stopped inside an epoch, or one that already has
    ``cfg.epochs`` epochs. ``resume`` may be a ResumePoint already loaded: then nothing is read.
    """
    point = resume if isinstance(resume, ResumePoint) else load_resume(resume, kind)
    if point.state.get("kind") != kind:
        raise CheckpointError(f"{point.path} holds a {point.state.get('kind')!r} model, expected {kind!r}")
    differ = differences(point.state, model_config, asdict(cfg), metadata)
    if differ:
        raise CheckpointError(f"cannot resume from {point.path}: this run would differ from the saved one in "
                              + ", ".join(differ) + "; give the same settings or start a new run")
    steps_per_epoch = -(-num_images // cfg.batch_size)
    if point.step != point.epoch * steps_per_epoch:
        raise CheckpointError(
            f"cannot resume from {point.path}: the run stopped inside epoch {point.epoch + 1} (step {point.step}, "
            f"by max_steps or a different data size), and only a run saved at the end of an epoch continues "
            f"exactly; start a new run or resume from an end-of-epoch checkpoint")
    if point.epoch >= cfg.epochs:
        raise CheckpointError(f"cannot resume from {point.path}: the run already finished {point.epoch} epoch"
                              f"{'' if point.epoch == 1 else 's'}; ask for more with --epochs (TrainConfig.epochs)")
    return point


def differences(state: dict, model_config: dict, train_config: dict, metadata: dict | None) -> list[str]:
    """Each setting the saved run and this one disagree on, as ``name saved -> new``, model config first."""
    saved_model = state["model_config"]
    differ = [f"{k} {saved_model.get(k)!r} -> {model_config.get(k)!r}" for k in {**model_config, **saved_model}
              if saved_model.get(k) != model_config.get(k)]
    saved = {"lr_schedule": "step", **state["metadata"].get("train_config", {})}  # older runs were all "step"
    if saved["lr_schedule"] == "cosine" and saved.get("epochs") != train_config["epochs"]:
        differ.append(f"epochs {saved.get('epochs')!r} -> {train_config['epochs']!r} (a cosine schedule ends at "
                      f"the run's last step)")
    differ += [f"{k} {saved.get(k)!r} -> {train_config[k]!r}" for k in RESUME_TRAIN_FIELDS
               if saved.get(k) != train_config[k]]
    if metadata is not None:
        older = {k: v for k, v in META_DEFAULTS.items() if k in metadata}  # fields added since
        saved_meta = {**older, **state["metadata"]}
        differ += [f"{k} {saved_meta.get(k)!r} -> {metadata.get(k)!r}" for k in RESUME_META_FIELDS
                   if saved_meta.get(k) != metadata.get(k)]
    return differ
