"""One training loop for DDPM, CFG and flow matching.

The objective is a function ``loss_fn(model, images, labels, generator) -> scalar``; the loop adds
AdamW, warm-up then step decay (or cosine) of the learning rate, gradient clipping, an EMA of the
weights, atomic checkpoints (:mod:`.checkpoint`), exact resume (:mod:`.resume`) and a stop on NaN/Inf.
:func:`train` reads top to bottom: build the run, restore it, then one epoch and its checkpoint at a time.
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

from . import config, distributed

# the checkpoint format and its I/O live in checkpoint.py; these names stay importable from here
from .checkpoint import (  # noqa: F401
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_weights,
    resume_path,
    save_checkpoint,
    slim,
    unreadable_reason,
    write_both,
)
from .resume import RESUME_META_FIELDS, RESUME_TRAIN_FIELDS, ResumePoint, check_resume  # noqa: F401

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


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def train(model: nn.Module, loss_fn: LossFn, images: torch.Tensor, labels: torch.Tensor,
          cfg: TrainConfig, device: torch.device | str, *, kind: str, model_config: dict,
          checkpoint_path: Path | str | None = None, resume: Path | str | ResumePoint | None = None,
          metadata: dict | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``model`` on in-memory ``images`` (N, C, H, W) and ``labels`` (N,).

    ``kind`` ("ddpm", "cfg", "flow") and ``model_config`` go into every checkpoint so that
    loading can refuse a mismatched file. Every ``save_freq`` epochs and at the end, the EMA
    weights go to ``checkpoint_path`` (small: what sampling needs) and the whole training state to
    :func:`resume_path` of it. With ``resume`` (either file, or what :func:`check_resume` returned)
    the run continues from the last completed epoch with the same optimiser, EMA, schedule and data
    order; a resume that would change the run (:func:`check_resume`) is refused before any step.

    When a process group is up (``torchrun``, :mod:`.distributed`), the model trains with DDP: each process
    takes its share of every ``cfg.batch_size`` images, and process 0 alone writes ``checkpoint_path``.
    """
    device = torch.device(device)
    world = distributed.current()
    if resume is not None:  # before any work: the whole saved run must match this one
        resume = check_resume(resume, kind, model_config, cfg, len(images), metadata)
    run = _Run.build(model, cfg, device, len(images), kind, model_config, metadata, world)
    saves = _Saves(checkpoint_path if world.main else None, cfg.save_freq)  # the other processes never write
    if resume is not None:
        run.restore(resume)
        saves.on_disk = (run.result.epoch, run.result.step, resume.path)
    model.train()
    try:
        with tqdm(total=run.total_steps, initial=min(run.result.step, run.total_steps), leave=False,
                  disable=config.QUIET or not progress or not world.main, desc=f"train {kind}") as bar:
            while run.result.epoch < cfg.epochs and run.result.step < run.total_steps:
                if not run.one_epoch(loss_fn, images, labels, bar, on_step, checkpoint_path):
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
    def build(cls, model, cfg: TrainConfig, device, num_images: int, kind: str, model_config: dict,
              metadata: dict | None, world: distributed.World | None = None) -> _Run:
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
        header = {"format": CHECKPOINT_FORMAT, "kind": kind, "model_config": model_config}
        return cls(cfg, device, model, optimizer, schedule, ema, generator, TrainResult(model=model, ema=ema.module),
                   total_steps, header, metadata or {}, world, net)

    def restore(self, point: ResumePoint) -> None:
        """Continue from a checked end-of-epoch state: weights, optimiser, schedule, EMA, RNG and losses."""
        saved = point.state["training"]
        load_weights(self.model, saved["model"], str(point.path))
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["lr_schedule"])
        self.ema.load_state_dict(saved["ema"])
        self.generator.set_state(saved["generator"])
        self.result.losses, self.result.step, self.result.epoch = list(saved["losses"]), saved["step"], saved["epoch"]

    def one_epoch(self, loss_fn: LossFn, images, labels, bar, on_step, checkpoint_path) -> bool:
        """One pass over the data in a fresh random order; False if ``max_steps`` ended it early."""
        order, batch_size = self.epoch_order(len(images))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            x = images[batch].to(self.device)  # (B, C, H, W)
            y = labels[batch].to(self.device)  # (B,)
            loss = self.step(loss_fn, x, y, checkpoint_path)
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

    def step(self, loss_fn: LossFn, x, y, checkpoint_path) -> float:
        """One optimiser step (clipped gradient, schedule, EMA); a NaN or Inf loss stops the run first."""
        loss = loss_fn(self.net, x, y, self.generator)
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
