"""``train flow --reflow BASE``: retrain a flow on the (noise, image) pairs its base checkpoint's ODE draws.

Checked before any work: the base checkpoint loads as a flow model whose image size is ``--img_size``,
and the model options are left to it (the reflowed model starts from the base's weights, so it has
the base's architecture). The pairs are drawn once per run and kept beside the checkpoint
(``reflow_pairs.pt``), so a resumed run trains on the very same pairs without drawing them again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from . import checkpoint, dit, guidance, reflow
from .cli_checks import UsageError, usage

PAIRS_FILE = "reflow_pairs.pt"


class Base(NamedTuple):
    """The checkpoint ``--reflow`` names: its model, config, recommended guidance and preset."""

    model: dit.DiT
    cfg: dit.DiTConfig
    guidance_scale: float
    preset: str | None


def check_reflow_options(args) -> Base | None:
    """The base checkpoint of ``--reflow``, checked, or None without the option."""
    if args.reflow is None:
        for option in ("num_pairs", "pair_steps"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option} applies only with --reflow BASE_CHECKPOINT")
        return None
    if args.kind != "flow":
        raise UsageError(f"--reflow applies to flow models, not {args.kind}")
    for option in ("preset", "patch_size"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option}: with --reflow the model is the base checkpoint's; leave --{option} out")
    with usage(prefix="--reflow: "):
        base, payload = checkpoint.load_model(args.reflow, "flow")
        scale = checkpoint.sampling_settings(payload, args.reflow)["guidance_scale"]
    model_cfg = dit.DiTConfig(**payload["model_config"])
    if model_cfg.img_size != args.img_size:
        raise UsageError(f"--img_size {args.img_size}: the base checkpoint {args.reflow} draws "
                         f"{model_cfg.img_size}-pixel images")
    return Base(base, model_cfg, scale, payload["metadata"].get("preset"))


def reflow_settings(args, base_guidance: float) -> dict:
    """What the metadata records about the pairs, and a resume must match."""
    return {"reflow": str(args.reflow), "num_pairs": args.num_pairs, "pair_steps": args.pair_steps or reflow.PAIR_STEPS,
            "pair_guidance": base_guidance}


def reflowed_model(base) -> dit.DiT:
    """A fresh DiT holding the base's (EMA) weights: reflow fine-tunes the base, it does not start over."""
    model = dit.DiT(base.cfg)
    model.load_state_dict(base.state_dict())
    return model


def pairs_for_training(base, settings: dict, labels: torch.Tensor, image_shape, seed: int, save_dir: Path, device):
    """``(packed pairs, their labels)``: read from ``save_dir/reflow_pairs.pt`` when it was drawn for these
    settings, else drawn with the base's ODE (Euler, its recommended guidance) and written there atomically."""
    path = Path(save_dir) / PAIRS_FILE
    key = {**settings, "seed": seed, "image_shape": list(image_shape)}
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a torn or foreign file: draw again rather than train on it
            print(f"{path} is unreadable ({type(error).__name__}); drawing the pairs again")
        else:
            if saved.get("key") == key:
                return saved["pairs"], saved["labels"]
    pair_labels = labels[torch.arange(settings["num_pairs"]) % len(labels)]
    noise, images = reflow.make_pairs(base.to(device), settings["num_pairs"], image_shape, pair_labels,
                                      settings["pair_steps"], guidance_scale=settings["pair_guidance"],
                                      generator=torch.Generator().manual_seed(seed), device=device)
    pairs = reflow.pack(noise, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"key": key, "pairs": pairs, "labels": pair_labels}, partial)
    os.replace(partial, path)
    return pairs, pair_labels


def objective(settings: dict):
    """Flow matching's loss on the coupled pairs, labels dropped as in CFG training."""
    def loss_fn(model, pairs, y, generator):
        return reflow.loss(model, pairs, guidance.drop_labels(y, settings["p_uncond"], generator), generator,
                           settings["time_sampling"])
    return loss_fn
