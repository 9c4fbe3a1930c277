"""``train flow --reflow BASE``: retrain a flow on the (noise, image) pairs its base checkpoint's ODE draws.

Checked before any work: the base checkpoint loads as a flow model whose image size is ``--img_size``,
and the model options are left to it (the reflowed model starts from the base's weights, so it has
the base's architecture). The pairs are drawn once per run and kept beside the checkpoint
(``reflow_pairs.pt``), so a resumed run trains on the very same pairs without drawing them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from .. import checkpoint, config, dit, guidance, reflow
from .checks import UsageError, usage

PAIRS_FILE = "reflow_pairs.pt"


class Base(NamedTuple):
    """The checkpoint ``--reflow`` names: its model, config, recommended guidance and preset."""

    model: dit.DiT
    cfg: dit.DiTConfig
    guidance_scale: float
    preset: str | None
    sha256: str  # the checkpoint file's content hash: the pairs it draws are cached under it


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
    return Base(base, model_cfg, scale, payload["metadata"].get("preset"), checkpoint.file_sha256(args.reflow))


def reflow_settings(args, base: Base) -> dict:
    """What the metadata records about the pairs, and a resume must match: the base's content hash among them."""
    return {"reflow": str(args.reflow), "reflow_sha256": base.sha256, "num_pairs": args.num_pairs,
            "pair_steps": args.pair_steps or reflow.PAIR_STEPS, "pair_guidance": base.guidance_scale}


def reflowed_model(base) -> dit.DiT:
    """A fresh DiT holding the base's (EMA) weights: reflow fine-tunes the base, it does not start over."""
    model = dit.DiT(base.cfg)
    model.load_state_dict(base.state_dict())
    return model


def pairs_for_training(base, settings: dict, labels: torch.Tensor, image_shape, seed: int, save_dir: Path, device):
    """``(noise, images, labels)`` of the pairs: read from ``save_dir/reflow_pairs.pt`` when they were drawn for
    these settings (the base's content hash among them), else drawn with the base's ODE (Euler, its recommended
    guidance) and written there atomically. A cache file that does not hold what it must is refused."""
    path = Path(save_dir) / PAIRS_FILE
    key = {**settings, "seed": seed, "image_shape": list(image_shape)}
    if path.is_file():
        saved = load_pairs(path)
        if saved["key"] == key:
            check_pairs(saved, path, settings["num_pairs"], image_shape)
            return saved["noise"], saved["images"], saved["labels"]
        print(f"{path} holds pairs drawn from another base or with other settings; drawing them again")
    pair_labels = labels[torch.arange(settings["num_pairs"]) % len(labels)]
    noise = config.randn((settings["num_pairs"], *image_shape), torch.Generator().manual_seed(seed), device)
    images = reflow.make_pairs(base.to(device), noise, pair_labels, num_steps=settings["pair_steps"],
                               guidance_scale=settings["pair_guidance"])
    noise = noise.cpu()
    checkpoint.save_checkpoint(path, {"key": key, "noise": noise, "images": images, "labels": pair_labels})
    return noise, images, pair_labels


def load_pairs(path: Path) -> dict:
    """The pair cache as a dict with a ``key``, or a UsageError naming the file and what is wrong."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UsageError(f"{path} is not a readable pair cache ({checkpoint.unreadable_reason(error)}); delete it "
                         f"to draw the pairs again") from error
    if not isinstance(saved, dict) or not isinstance(saved.get("key"), dict):
        raise UsageError(f"{path}: field key is missing or not a dict; delete the file to draw the pairs again")
    return saved


def check_pairs(saved: dict, path: Path, num_pairs: int, image_shape) -> None:
    """The cached pairs and labels have the shapes, types and values that the key promises."""
    expected = {"noise": (num_pairs, *image_shape), "images": (num_pairs, *image_shape), "labels": (num_pairs,)}
    for field, shape in expected.items():
        value = saved.get(field)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UsageError(f"{path}: field {field} must be a tensor of shape {shape}, got {found}; delete the "
                             f"file to draw the pairs again")
    for field in ("noise", "images"):
        if not saved[field].is_floating_point() or not torch.isfinite(saved[field]).all():
            raise UsageError(f"{path}: field {field} must hold finite numbers; delete the file to draw the pairs "
                             f"again")
    labels = saved["labels"]
    if labels.is_floating_point() or labels.is_complex() or labels.min() < 0 or labels.max() > 9:
        raise UsageError(f"{path}: field labels must hold digits 0-9; delete the file to draw the pairs again")


def objective(settings: dict):
    """Flow matching's loss on the coupled pairs, labels dropped as in CFG training."""
    def loss_fn(model, batch, generator):
        noise, images, y = batch
        return reflow.loss(model, noise, images, guidance.drop_labels(y, settings["p_uncond"], generator),
                           generator, settings["time_sampling"])
    return loss_fn
