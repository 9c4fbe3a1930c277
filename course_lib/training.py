"""One training loop for DDPM, CFG, flow matching, reflow and the toys.

The data is a tuple of equally long tensors, ``(images, labels)`` or reflow's ``(noise, images, labels)``,
shuffled together each epoch; the objective is ``loss_fn(model, batch, generator) -> scalar`` with ``batch``
the tuple's rows of one batch, on the device. The loop adds AdamW, warm-up then step decay (or cosine) of
the learning rate, gradient clipping, an EMA of the weights and a stop on NaN/Inf. Given
:class:`Checkpoints`, it also writes atomic checkpoints (:mod:`.checkpoint`) and resumes exactly (the
"resume" section below). :func:`train` reads top to bottom: build the run, restore it, then one epoch and
its checkpoint at a time.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from . import config, distributed, dit
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    check_tensors,
    load_checkpoint,
    load_weights,
    resume_path,
    write_both,
)

LR_SCHEDULES = ("step", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; nothing was written after the last good checkpoint."""


class ProcessLost(RuntimeError):
    """Another process of a distributed run stopped (killed, out of memory); the message says what is saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`. The message says where the last completed epoch is saved.

    Resume continues exactly only from the end of an epoch, so the state written (or kept) is the
    one at the end of the last completed epoch, never the half-done epoch's.
    """

    def __init__(self, message: str, path: Path | None = None, epoch: int = 0, step: int = 0):
        super().__init__(message)
        self.path, self.epoch, self.step = path, epoch, step


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    save_freq: int = 1  # epochs between checkpoints; one is always written at the end
    lr_decay_step: int = 0  # epochs between learning-rate decays; 0 keeps it constant
    lr_decay_rate: float = 0.5
    lr_schedule: str = "step"  # "step": ×lr_decay_rate every lr_decay_step epochs; "cosine": to 0 at the last step
    warmup_steps: int = 200  # linear warm-up; transformers trained with Adam diverge less with it
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    weight_decay: float = 0.0
    max_steps: int | None = None  # stop after this many optimiser steps (fast mode, tests)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "save_freq"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.lr_decay_rate <= 1 or self.lr_decay_step < 0:
            raise ValueError("need lr > 0, 0 < lr_decay_rate <= 1 and lr_decay_step >= 0")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")


@dataclass
class TrainResult:
    model: nn.Module  # the raw weights after the last step
    ema: nn.Module  # the averaged weights: sample with these
    losses: list[float] = field(default_factory=list)  # one per optimiser step, whole run
    step: int = 0
    epoch: int = 0


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order and noise."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    def ema_update(averaged, current, num_averaged):
        # the decay ramps up, so a few hundred steps already give a useful average
        d = min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))
        return averaged * d + current * (1.0 - d)

    return AveragedModel(model, avg_fn=ema_update, use_buffers=True)


# ---------------------------------------------------------------------------- the loop
def lr_multiplier(cfg: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The factor on ``cfg.lr`` for optimiser step ``step`` (0-based): linear warm-up, then the schedule.

    Cosine (Loshchilov & Hutter 2017) falls from 1 after warm-up to 0 at ``total_steps``, so the last
    weights are taken at a small learning rate without choosing decay epochs.
    """
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_schedule == "cosine":
        progress = (step + 1 - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    decays = (step // steps_per_epoch) // cfg.lr_decay_step if cfg.lr_decay_step else 0
    return warm * cfg.lr_decay_rate**decays


LossFn = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Checkpoints:
    """Where and what :func:`train` saves: ``kind`` ("ddpm", "cfg", "flow") and ``model_config`` go into every
    checkpoint so that loading can refuse a mismatched file; ``metadata`` is the recipe to store beside them."""

    path: Path | str
    kind: str
    model_config: dict
    metadata: dict = field(default_factory=dict)


def train(model: nn.Module, loss_fn: LossFn, data: tuple[torch.Tensor, ...], cfg: TrainConfig,
          device: torch.device | str = "cpu", *, checkpoints: Checkpoints | None = None,
          resume: Path | str | ResumePoint | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``model`` on the in-memory tensors ``data`` (each of length N), by ``loss_fn(model, batch, generator)``.

    Without ``checkpoints`` nothing is written. With them, every ``save_freq`` epochs and at the end the EMA
    weights go to ``checkpoints.path`` (small: what sampling needs) and the whole training state to
    :func:`resume_path` of it. With ``resume`` (either file, or what :func:`check_resume` returned) the run
    continues from the last completed epoch with the same optimiser, EMA, schedule and data order; a resume
    that would change the run (:func:`check_resume`) is refused before any step.

    When a process group is up (``torchrun``, :mod:`.distributed`), the model trains with DDP: each process
    takes its share of every ``cfg.batch_size`` rows, and process 0 alone writes the checkpoints.
    """
    device = torch.device(device)
    world = distributed.current()
    num_rows = len(data[0])
    if any(len(tensor) != num_rows for tensor in data):
        raise ValueError(f"data: every tensor must have the same length, got {[len(t) for t in data]}")
    if resume is not None:  # before any work: the whole saved run must match this one
        if checkpoints is None:
            raise ValueError("resume needs checkpoints: the kind, model config and recipe it must match")
        resume = check_resume(resume, checkpoints.kind, checkpoints.model_config, cfg, num_rows,
                              checkpoints.metadata)
    run = _Run.build(model, cfg, device, num_rows, checkpoints, world)
    path = checkpoints.path if checkpoints is not None and world.main else None  # the other processes never write
    saves = _Saves(path, cfg.save_freq)
    if resume is not None:
        run.restore(resume)
        saves.on_disk = (run.result.epoch, run.result.step, resume.path)
    model.train()
    try:
        with tqdm(total=run.total_steps, initial=min(run.result.step, run.total_steps), leave=False,
                  disable=config.QUIET or not progress or not world.main, desc="train") as bar:
            while run.result.epoch < cfg.epochs and run.result.step < run.total_steps:
                if not run.one_epoch(loss_fn, data, bar, on_step, path):
                    break  # max_steps ended the run inside an epoch
                run.result.epoch += 1
                saves.end_of_epoch(run)
        saves.final(run)
    except KeyboardInterrupt:
        raise saves.interrupted(run.result.step) from None
    except RuntimeError as error:  # a collective that lost its peer: gloo and NCCL raise RuntimeErrors
        if not world.several or isinstance(error, TrainingDiverged):
            raise
        reason = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(error).split())).split(". ")[0][:200]  # no source line
        raise ProcessLost(f"another process of the run stopped ({reason}); {saves.interrupted(run.result.step)}") \
            from None
    model.eval()
    run.result.ema.eval()
    return run.result


@dataclass
class _Run:
    """Everything one call of :func:`train` updates: the model, its optimiser, schedule, EMA and RNG."""

    cfg: TrainConfig
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    ema: AveragedModel
    generator: torch.Generator
    result: TrainResult
    total_steps: int
    header: dict  # format, kind, model config: the same in every checkpoint of the run
    metadata: dict
    world: distributed.World
    net: nn.Module  # what the loss calls: the model, or its DDP wrapper that averages the gradients

    @classmethod
    def build(cls, model, cfg: TrainConfig, device, num_images: int, checkpoints: Checkpoints | None,
              world: distributed.World | None = None) -> _Run:
        world = world or distributed.World()
        distributed.per_process_batch(cfg.batch_size, world)
        generator = seed_everything(cfg.seed)
        model.to(device)
        net = model  # one process: the plain model, bit for bit the loop without DDP
        if world.several:  # copies process 0's weights to the others, then averages gradients in backward()
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = -(-num_images // cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        total_steps = total_steps if cfg.max_steps is None else min(cfg.max_steps, total_steps)

        def lr_factor(step: int) -> float:
            return lr_multiplier(cfg, step, steps_per_epoch, total_steps)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        ema = make_ema(model, cfg.ema_decay)
        header, metadata = {}, {}
        if checkpoints is not None:
            header = {"format": CHECKPOINT_FORMAT, "kind": checkpoints.kind, "model_config": checkpoints.model_config}
            metadata = checkpoints.metadata
        return cls(cfg, device, model, optimizer, schedule, ema, generator, TrainResult(model=model, ema=ema.module),
                   total_steps, header, metadata, world, net)

    def restore(self, point: ResumePoint) -> None:
        """Continue from a checked end-of-epoch state: weights, optimiser, schedule, EMA, RNG and losses."""
        saved = point.state["training"]
        load_weights(self.model, saved["model"], str(point.path))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["lr_schedule"])
        self.ema.load_state_dict(saved["ema"])
        self.generator.set_state(saved["generator"])
        self.result.losses, self.result.step, self.result.epoch = list(saved["losses"]), saved["step"], saved["epoch"]

    def one_epoch(self, loss_fn: LossFn, data, bar, on_step, checkpoint_path) -> bool:
        """One pass over the data in a fresh random order; False if ``max_steps`` ended it early."""
        order, batch_size = self.epoch_order(len(data[0]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = tuple(tensor[rows].to(self.device) for tensor in data)  # e.g. images (B, C, H, W), labels (B,)
            loss = self.step(loss_fn, batch, checkpoint_path)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(self.result.losses[-50:]):.4f}")
            if on_step is not None:
                on_step(self.result.step, loss)
            if self.result.step >= self.total_steps:
                break
        return start + batch_size >= len(order)

    def epoch_order(self, num_images: int) -> tuple[torch.Tensor, int]:
        """The indices this process takes this epoch, in order, and its batch size.

        One process: a permutation from the run's generator. Several: this process's shard of a permutation
        seeded by seed + epoch, and its noise generator reseeded by (seed, epoch, rank), so that a resumed
        run draws what the uninterrupted one drew without saving each process's generator.
        """
        if not self.world.several:
            return torch.randperm(num_images, generator=self.generator), self.cfg.batch_size
        epoch, rank = self.result.epoch, self.world.rank
        self.generator.manual_seed(distributed.noise_seed(self.cfg.seed, epoch, rank))
        order = distributed.shard(num_images, self.cfg.seed, epoch, self.world)
        return order, distributed.per_process_batch(self.cfg.batch_size, self.world)

    def step(self, loss_fn: LossFn, batch, checkpoint_path) -> float:
        """One optimiser step (clipped gradient, schedule, EMA); a NaN or Inf loss stops the run first."""
        loss = loss_fn(self.net, batch, self.generator)
        value = distributed.mean_over_processes(loss, self.world)  # every process sees it, so all stop together
        if not torch.isfinite(value):
            raise TrainingDiverged(
                f"loss became {value.item()} at step {self.result.step} (epoch {self.result.epoch}); training "
                f"stopped and no checkpoint was written after the last good one"
                f"{f' ({checkpoint_path})' if checkpoint_path else ''}. Try a lower --lr.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.ema.update_parameters(self.model)
        self.result.step += 1
        self.result.losses.append(value.item())
        return self.result.losses[-1]

    def snapshot(self) -> dict:
        """The checkpoint of this moment; its tensors are the live ones (copy it to keep it)."""
        result = self.result
        return {
            **self.header,
            "state_dict": {k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()},
            "metadata": {**self.metadata, "train_config": asdict(self.cfg), "step": result.step,
                         "epoch": result.epoch, "final_loss": float(np.mean(result.losses[-100:] or [0]))},
            "training": {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "lr_schedule": self.schedule.state_dict(), "ema": self.ema.state_dict(),
                         "generator": self.generator.get_state(), "losses": result.losses,
                         "step": result.step, "epoch": result.epoch},
        }


class _Saves:
    """The run's checkpoints: every ``save_freq`` epochs, at the end, and the last epoch on Ctrl-C.

    Only an end-of-epoch state resumes exactly, so between writes the last one is kept in memory.
    """

    def __init__(self, path: Path | str | None, save_freq: int):
        self.path = None if path is None else Path(path)
        self.save_freq = save_freq
        self.on_disk = None  # (epoch, step, path) of the last end-of-epoch state known to be on disk
        self.saved_at_step = None  # the final write is skipped when the last epoch's checkpoint already holds it
        self.epoch_end = None  # the last end-of-epoch state while it is not on disk: what Ctrl-C writes

    def end_of_epoch(self, run: _Run) -> None:
        if self.path is None:
            return
        self.epoch_end = run.snapshot()  # live tensors: still the end of this epoch while we write it
        if run.result.epoch % self.save_freq == 0:
            write_both(self.path, self.epoch_end)
            self.on_disk = (run.result.epoch, run.result.step, self.path)
            self.saved_at_step, self.epoch_end = run.result.step, None
        else:  # the next epoch changes the live tensors in place: keep a copy for Ctrl-C
            self.epoch_end = copy.deepcopy(self.epoch_end)

    def final(self, run: _Run) -> None:
        if self.path is not None and self.saved_at_step != run.result.step:
            write_both(self.path, run.snapshot())

    def interrupted(self, step: int) -> TrainingInterrupted:
        """After Ctrl-C: write the last completed epoch if it is not on disk yet; say where it is.

        Only an end-of-epoch state resumes exactly (same data order, schedule and optimiser), so the
        steps of the unfinished epoch are not saved: ``--resume`` redoes them, with the same result.
        """
        on_disk, verb = self.on_disk, "kept"
        if self.epoch_end is not None:
            epoch, epoch_step = self.epoch_end["training"]["epoch"], self.epoch_end["training"]["step"]
            try:
                write_both(self.path, self.epoch_end)
            except OSError as error:
                kept = f"; {on_disk[2]} still holds epoch {on_disk[0]}" if on_disk else ""
                return TrainingInterrupted(f"interrupted at step {step}; could not save epoch {epoch} to "
                                           f"{self.path} ({error.strerror or error}){kept}")
            on_disk, verb = (epoch, epoch_step, self.path), "saved"
        if on_disk is None:
            return TrainingInterrupted(f"interrupted at step {step}, before the first epoch ended: nothing was saved "
                                       f"(a checkpoint already at {self.path} is as it was); run again to start over")
        epoch, epoch_step, path = on_disk
        redo = f" (it redoes the {step - epoch_step} step(s) of the unfinished epoch)" if step > epoch_step else ""
        return TrainingInterrupted(f"interrupted at step {step}; {verb} the end of epoch {epoch} (step {epoch_step}) "
                                   f"in {path}: --resume {path} continues from there{redo}",
                                   path=path, epoch=epoch, step=epoch_step)


# ---------------------------------------------------------------------------- resume
# A resumed run must be the run it continues: the same model, data, objective and optimiser, so that stopping
# and resuming gives bit for bit what an uninterrupted run gives. check_resume loads the saved state once and
# compares it with what the caller is about to run; the command line calls it before loading any data, and
# train calls it again on the state already in memory (no second load).
# what a resume must agree on, besides the model config: the run's data order, objective and optimiser
RESUME_TRAIN_FIELDS = ("batch_size", "lr", "seed", "lr_decay_step", "lr_decay_rate", "lr_schedule",
                       "warmup_steps", "grad_clip", "ema_decay", "weight_decay")
# the settings outside TrainConfig that the command line stores in the metadata (None where a kind has none)
RESUME_META_FIELDS = ("prediction", "schedule", "num_timesteps", "limit", "p_uncond", "time_sampling", "loss_weighting",
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
    for name, kind in TRAINING_FIELDS.items():
        if name not in training:
            raise CheckpointError(f"{source}: field training.{name} is missing")
        if not isinstance(training[name], kind) or isinstance(training[name], bool):
            raise CheckpointError(f"{source}: field training.{name} must be a {kind.__name__}, "
                                  f"got {type(training[name]).__name__}")
    if training["step"] < 0 or training["epoch"] < 0:
        raise CheckpointError(f"{source}: fields training.step and training.epoch must be >= 0")
    if training["generator"].dtype != torch.uint8:
        raise CheckpointError(f"{source}: field training.generator must be a uint8 tensor (a generator's state)")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in training["losses"]):
        raise CheckpointError(f"{source}: field training.losses must hold finite numbers")
    shapes = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    for part, names in (("model", shapes), ("ema", {**{f"module.{k}": v for k, v in shapes.items()},
                                                      "n_averaged": None})):
        check_tensors(training[part], source, f"training.{part}", finite=True)
        found = {k: tuple(v.shape) for k, v in training[part].items()}
        if found.keys() != names.keys() or any(names[k] not in (None, found[k]) for k in names):
            raise CheckpointError(f"{source}: part training.{part} does not fit the model's weights "
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
