"""One training loop for DDPM, CFG and flow matching, and the checkpoint format they share.

The objective is a function ``loss_fn(model, images, labels, generator) -> scalar``; the loop adds
AdamW, warm-up then step decay of the learning rate, gradient clipping, an EMA of the weights,
atomic checkpoints, exact resume and a stop on NaN/Inf.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from . import config

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

LR_SCHEDULES = ("step", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; nothing was written after the last good checkpoint."""


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
          checkpoint_path: Path | str | None = None, resume: Path | str | None = None,
          metadata: dict | None = None, on_step: Callable[[int, float], None] | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``model`` on in-memory ``images`` (N, C, H, W) and ``labels`` (N,).

    ``kind`` ("ddpm", "cfg", "flow") and ``model_config`` go into every checkpoint so that
    loading can refuse a mismatched file. Every ``save_freq`` epochs and at the end, the EMA
    weights go to ``checkpoint_path`` (small: what sampling needs) and the whole training state to
    :func:`resume_path` of it. With ``resume`` (either file) the run continues from the last
    completed epoch with the same optimiser, EMA, schedule and data order.
    """
    device = torch.device(device)
    generator = seed_everything(cfg.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(images) // cfg.batch_size)

    total_steps = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps,
                                                                                  cfg.epochs * steps_per_epoch)

    def lr_factor(step: int) -> float:
        return lr_multiplier(cfg, step, steps_per_epoch, total_steps)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ema = make_ema(model, cfg.ema_decay)
    result = TrainResult(model=model, ema=ema.module)
    on_disk = None  # (epoch, step, path) of the last end-of-epoch state known to be on disk

    if resume is not None:
        on_disk_path = Path(resume)
        if resume_path(resume).is_file():
            resume = resume_path(resume)
        state = load_checkpoint(resume, kind=kind)
        if "training" not in state:
            raise CheckpointError(f"{resume} holds weights only; resume needs its .resume.pt companion")
        if state["model_config"] != model_config:
            raise CheckpointError(f"cannot resume: {resume} was trained with {state['model_config']}, "
                                  f"this model is {model_config}")
        training = state["training"]
        if training["step"] != training["epoch"] * steps_per_epoch:
            raise CheckpointError(
                f"cannot resume: {resume} stopped inside epoch {training['epoch'] + 1} (step {training['step']}, "
                f"by max_steps or a different data size), and only a run saved at the end of an epoch "
                f"continues exactly; start a new run or resume from an end-of-epoch checkpoint")
        load_weights(model, training["model"], str(resume))
        optimizer.load_state_dict(training["optimizer"])
        schedule.load_state_dict(training["lr_schedule"])
        ema.load_state_dict(training["ema"])
        generator.set_state(training["generator"])
        result.losses, result.step, result.epoch = list(training["losses"]), training["step"], training["epoch"]
        on_disk = (result.epoch, result.step, on_disk_path)

    def snapshot() -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "kind": kind, "model_config": model_config,
            "state_dict": {k: v.detach().cpu() for k, v in ema.module.state_dict().items()},
            "metadata": {**(metadata or {}), "train_config": asdict(cfg), "step": result.step,
                         "epoch": result.epoch, "final_loss": float(np.mean(result.losses[-100:] or [0]))},
            "training": {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "lr_schedule": schedule.state_dict(), "ema": ema.state_dict(),
                         "generator": generator.get_state(), "losses": result.losses,
                         "step": result.step, "epoch": result.epoch},
        }

    total = total_steps
    bar = tqdm(total=total, initial=min(result.step, total), disable=config.QUIET or not progress,
               desc=f"train {kind}", leave=False)
    model.train()
    saved_at_step = None  # the final write is skipped when the last epoch's checkpoint already holds it
    epoch_end = None  # the last end-of-epoch state while it is not on disk: what Ctrl-C writes
    try:
        while result.epoch < cfg.epochs and result.step < total:
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                x = images[batch].to(device)  # (B, C, H, W)
                y = labels[batch].to(device)  # (B,)
                loss = loss_fn(model, x, y, generator)
                if not torch.isfinite(loss):
                    bar.close()
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at step {result.step} (epoch {result.epoch}); training "
                        f"stopped and no checkpoint was written after the last good one"
                        f"{f' ({checkpoint_path})' if checkpoint_path else ''}. Try a lower --lr.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                schedule.step()
                ema.update_parameters(model)
                result.step += 1
                result.losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(result.losses[-50:]):.4f}")
                if on_step is not None:
                    on_step(result.step, result.losses[-1])
                if result.step >= total:
                    break
            if start + cfg.batch_size < len(images):  # max_steps ended the run inside an epoch
                break
            result.epoch += 1
            if checkpoint_path is not None:
                epoch_end = snapshot()  # live tensors: still the end of this epoch while we write it
                if result.epoch % cfg.save_freq == 0:
                    write_both(checkpoint_path, epoch_end)
                    on_disk = (result.epoch, result.step, Path(checkpoint_path))
                    saved_at_step, epoch_end = result.step, None
                else:  # the next epoch changes the live tensors in place: keep a copy for Ctrl-C
                    epoch_end = copy.deepcopy(epoch_end)
        bar.close()
        if checkpoint_path is not None and saved_at_step != result.step:
            write_both(checkpoint_path, snapshot())
    except KeyboardInterrupt:
        bar.close()
        raise interrupted(result.step, checkpoint_path, epoch_end, on_disk) from None
    model.eval()
    result.ema.eval()
    return result


def interrupted(step: int, checkpoint_path, epoch_end: dict | None, on_disk) -> TrainingInterrupted:
    """After Ctrl-C: write the last completed epoch if it is not on disk yet; say where it is.

    Only an end-of-epoch state resumes exactly (same data order, schedule and optimiser), so the
    steps of the unfinished epoch are not saved: ``--resume`` redoes them, with the same result.
    """
    if epoch_end is not None:
        epoch, epoch_step = epoch_end["training"]["epoch"], epoch_end["training"]["step"]
        try:
            write_both(checkpoint_path, epoch_end)
        except OSError as error:
            kept = f"; {on_disk[2]} still holds epoch {on_disk[0]}" if on_disk else ""
            return TrainingInterrupted(f"interrupted at step {step}; could not save epoch {epoch} to "
                                       f"{checkpoint_path} ({error.strerror or error}){kept}")
        on_disk = (epoch, epoch_step, Path(checkpoint_path))
        verb = "saved"
    else:
        verb = "kept"
    if on_disk is None:
        return TrainingInterrupted(f"interrupted at step {step}, before the first epoch ended: nothing was saved")
    epoch, epoch_step, path = on_disk
    redo = f" (it redoes the {step - epoch_step} step(s) of the unfinished epoch)" if step > epoch_step else ""
    return TrainingInterrupted(f"interrupted at step {step}; {verb} the end of epoch {epoch} (step {epoch_step}) "
                               f"in {path}: --resume {path} continues from there{redo}",
                               path=path, epoch=epoch, step=epoch_step)
