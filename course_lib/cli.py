"""Command line mirroring the original scripts.

    python -m course_lib train ddpm --epochs 12 --save_dir runs
    python -m course_lib infer ddpm --ckpt checkpoints/ddpm_uncond.pt --output samples.jpg

Bad options end in one message and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import config

KINDS = ("ddpm",)
CHECKPOINT_NAMES = {"ddpm": "ddpm_uncond.pt"}


class UsageError(Exception):
    """Raised for bad options; reported as one line with exit status 2."""


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__, formatter_class=fmt)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model", formatter_class=fmt)
    train.add_argument("kind", choices=KINDS)
    train.add_argument("--img_size", type=positive_int, default=32, help="Image size")
    train.add_argument("--channels", type=positive_int, default=1, help="Number of image channels")
    train.add_argument("--patch_size", type=positive_int, default=4, help="Patch size for DiT")
    train.add_argument("--preset", choices=("tiny", "small"), default="small", help="DiT size")
    train.add_argument("--epochs", type=positive_int, default=12, help="Number of training epochs")
    train.add_argument("--batch_size", type=positive_int, default=128, help="Training batch size")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Learning rate")
    train.add_argument("--seed", type=int, default=0, help="Random seed for reproducibility")
    train.add_argument("--save_dir", type=Path, default=Path("runs"), help="Directory to save model checkpoints")
    train.add_argument("--save_freq", type=positive_int, default=1, help="Save model every N epochs")
    train.add_argument("--lr_decay_step", type=int, default=4, help="LR decay step size in epochs (0: never)")
    train.add_argument("--lr_decay_rate", type=positive_float, default=0.5, help="LR decay rate")
    train.add_argument("--prediction", choices=("eps", "v"), default="v",
                       help="what the DDPM network predicts (converted to noise for sampling)")
    train.add_argument("--max_steps", type=positive_int, default=None, help="stop after this many steps")
    train.add_argument("--limit", type=positive_int, default=None, help="train on the first N images only")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")

    infer = commands.add_parser("infer", help="sample images from a checkpoint", formatter_class=fmt)
    infer.add_argument("kind", choices=KINDS)
    infer.add_argument("--ckpt", type=Path, required=True, help="checkpoint to sample from")
    infer.add_argument("--output", type=Path, required=True, help="image file to write (.jpg or .png)")
    infer.add_argument("--num_images", type=positive_int, default=64, help="how many images in the grid")
    infer.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim", help="reverse process")
    infer.add_argument("--steps", type=positive_int, default=50, help="DDIM steps (DDPM always uses all T)")
    infer.add_argument("--seed", type=int, default=0, help="Random seed for reproducibility")
    infer.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    return parser


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return config.default_device()
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r} is not a device ({error})") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for CUDA, which is not available here")
    return device


def run_train(args) -> None:
    from . import data, ddpm, dit, training

    if args.channels != 1:
        raise UsageError(f"--channels {args.channels}: MNIST has 1 channel")
    try:
        model_cfg = dit.preset(args.preset, img_size=args.img_size, channels=args.channels,
                               patch_size=args.patch_size)
        train_cfg = training.TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            save_freq=args.save_freq, lr_decay_step=args.lr_decay_step, lr_decay_rate=args.lr_decay_rate,
            max_steps=args.max_steps)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.resume is not None and not args.resume.is_file():
        raise UsageError(f"--resume {args.resume}: no such checkpoint")
    device = resolve_device(args.device)
    config.configure_threads()
    images, labels = data.load_mnist(train=True, size=args.img_size, limit=args.limit)
    scheduler = ddpm.NoiseScheduler(device=device)
    training.seed_everything(args.seed)  # the initial weights depend on --seed too
    model = dit.DiT(model_cfg)

    def loss_fn(model, x, y, generator):
        return ddpm.loss(model, x, None, scheduler, generator, args.prediction)

    path = args.save_dir / CHECKPOINT_NAMES[args.kind]
    recipe = " ".join(["python -m course_lib"] + sys.argv[1:])
    metadata = {"recipe": recipe, "prediction": args.prediction, "schedule": "linear",
                "num_steps": scheduler.num_steps, "seed": args.seed, "images": len(images)}
    started = time.time()
    result = training.train(model, loss_fn, images, labels, train_cfg, device, kind=args.kind,
                            model_config=model_cfg.to_dict(), checkpoint_path=path, resume=args.resume,
                            metadata=metadata)
    print(f"trained {result.step} steps in {time.time() - started:.1f} s, "
          f"last-100 loss {sum(result.losses[-100:]) / len(result.losses[-100:]):.4f}; wrote {path}")


def run_infer(args) -> None:
    from . import ddpm, plotting, training

    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise UsageError(f"--output {args.output}: use a .jpg or .png file name")
    if not args.output.parent.is_dir():
        raise UsageError(f"--output {args.output}: directory {args.output.parent} does not exist")
    device = resolve_device(args.device)
    try:
        model, payload = load_model(args.ckpt, args.kind, device)
    except training.CheckpointError as error:
        raise UsageError(str(error)) from error
    config.configure_threads()
    scheduler = ddpm.NoiseScheduler(device=device)
    prediction = payload["metadata"].get("prediction", "eps")
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.num_images, model.cfg.channels, model.cfg.img_size, model.cfg.img_size)
    started = time.time()
    if args.sampler == "ddpm":
        images = ddpm.sample(model, scheduler, shape, generator=generator, device=device, prediction=prediction)
    else:
        images = ddpm.sample_ddim(model, scheduler, shape, args.steps, generator=generator, device=device,
                                  prediction=prediction)
    plotting.save_grid(images, args.output)
    print(f"wrote {args.num_images} images to {args.output} in {time.time() - started:.1f} s")


def load_model(path: Path, kind: str, device: torch.device):
    """Build the DiT a checkpoint describes and load its (EMA) weights; returns (model, payload)."""
    from . import dit, training

    payload = training.load_checkpoint(path, kind=kind)
    try:
        cfg = dit.DiTConfig(**payload["model_config"])
    except (TypeError, ValueError) as error:
        raise training.CheckpointError(f"{path} has an invalid model config: {error}") from error
    model = training.load_weights(dit.DiT(cfg), payload["state_dict"], str(path))
    return model.to(device).eval(), payload


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        (run_train if args.command == "train" else run_infer)(args)
    except UsageError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
