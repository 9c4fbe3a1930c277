"""Command line mirroring the original scripts, for the three model kinds of the book.

    python -m course_lib train ddpm --epochs 12 --save_dir runs          # unconditional DDPM
    python -m course_lib train cfg  --epochs 12 --save_dir runs          # class-conditional DDPM with CFG
    python -m course_lib train flow --epochs 12 --save_dir runs          # class-conditional rectified flow
    python -m course_lib infer cfg  --ckpt checkpoints/ddpm_cfg.pt --output four.jpg --label 4

Every failure is one line on stderr and exit status 2, found before any training, sampling or
writing starts: options, paths, devices, checkpoints and resume compatibility are checked first.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import checkpoint, config
from .checkpoint import config_disagreements, load_model, sampling_settings  # noqa: F401  (moved; still cli.*)

KINDS = ("ddpm", "cfg", "flow")
CHECKPOINT_NAMES = {"ddpm": "ddpm_uncond.pt", "cfg": "ddpm_cfg.pt", "flow": "flow_cfg.pt"}
CONDITIONAL = ("cfg", "flow")
SAMPLERS = {"ddpm": ("ddpm", "ddim"), "cfg": ("ddpm", "ddim"),
            "flow": ("euler", "heun", "midpoint", "heun_euler_last", "sde")}
DEFAULT_STEPS = {"ddim": 50, "euler": 8, "heun": 4, "midpoint": 4, "heun_euler_last": 4, "sde": 32}
MAX_GUIDANCE = 20.0  # far past any useful scale: beyond it samples saturate to blobs
MAX_GAMMA = 10.0
SEED_LIMIT = 2**32  # torch.Generator.manual_seed and numpy accept seeds in [0, 2**32)


class UsageError(Exception):
    """Raised for bad options; reported as one line with exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; the book's promise is one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**32), got {value}")
    return value


def digit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a digit 0-9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be a digit 0-9, got {value}")
    return value


def build_parser(prog: str = "python -m course_lib") -> argparse.ArgumentParser:
    from . import dit

    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = OneLineParser(prog=prog, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train a model", formatter_class=fmt)
    train.add_argument("kind", choices=KINDS)
    train.add_argument("--img_size", type=positive_int, default=32, help="Image size")
    train.add_argument("--channels", type=positive_int, default=1, help="Number of image channels")
    train.add_argument("--patch_size", type=positive_int, default=None,
                       help="Patch size for DiT (default: the preset's)")
    train.add_argument("--preset", choices=sorted(dit.PRESETS), default="small",
                       help="DiT size (tiny: tests; book: long skips and a conv head)")
    train.add_argument("--epochs", type=positive_int, default=12, help="Number of training epochs")
    train.add_argument("--batch_size", type=positive_int, default=128, help="Training batch size")
    train.add_argument("--lr", type=positive_float, default=1e-3, help="Learning rate")
    train.add_argument("--seed", type=seed_value, default=0, help="Random seed for reproducibility")
    train.add_argument("--save_dir", type=Path, default=Path("runs"), help="Directory to save model checkpoints")
    train.add_argument("--save_freq", type=positive_int, default=1, help="Save model every N epochs")
    train.add_argument("--lr_decay_step", type=int, default=4, help="LR decay step size in epochs (0: never)")
    train.add_argument("--lr_decay_rate", type=positive_float, default=0.5, help="LR decay rate")
    train.add_argument("--lr_schedule", choices=("step", "cosine"), default="step",
                       help="step: x lr_decay_rate every lr_decay_step epochs; cosine: to 0 at the last step")
    train.add_argument("--warmup_steps", type=int, default=200, help="linear learning-rate warm-up steps")
    train.add_argument("--ema_decay", type=positive_float, default=0.999, help="EMA decay of the sampled weights")
    train.add_argument("--prediction", choices=("eps", "v"), default=None,
                       help="ddpm/cfg: what the network predicts (converted to noise for sampling) [v]")
    train.add_argument("--schedule", choices=("linear", "cosine"), default=None, help="ddpm/cfg: β schedule [linear]")
    train.add_argument("--p_uncond", type=finite_float, default=None,
                       help="cfg/flow: probability of dropping the label in training [0.1]")
    train.add_argument("--time_sampling", choices=("uniform", "logit_normal"), default=None,
                       help="flow: how training times are drawn [uniform]")
    train.add_argument("--max_steps", type=positive_int, default=None, help="stop after this many steps")
    train.add_argument("--limit", type=positive_int, default=None, help="train on the first N images only")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")

    infer = commands.add_parser("infer", help="sample images from a checkpoint", formatter_class=fmt)
    infer.add_argument("kind", choices=KINDS)
    infer.add_argument("--ckpt", type=Path, required=True, help="checkpoint to sample from")
    infer.add_argument("--output", type=Path, required=True, help="image file to write (.jpg or .png)")
    infer.add_argument("--label", type=digit, default=None,
                       help="cfg/flow: the digit to draw (default: the grid cycles through 0-9)")
    infer.add_argument("--guidance_scale", type=finite_float, default=None,
                       help="cfg/flow: 0 unconditional, 1 conditional, >1 guided (default: the checkpoint's)")
    infer.add_argument("--num_images", type=positive_int, default=64, help="how many images in the grid")
    infer.add_argument("--sampler", default=None,
                       help="ddpm/cfg: ddpm or ddim [ddim]; "
                            "flow: euler, heun, midpoint, heun_euler_last or sde [euler]")
    infer.add_argument("--steps", type=positive_int, default=None,
                       help="sampler steps (ddim 50, euler 8, heun and midpoint 4, heun_euler_last 4, sde 32); "
                            "ddpm always uses all T")
    infer.add_argument("--gamma", type=finite_float, default=None, help="flow sde: noise level γ in σ(t)² = γ·t [1]")
    infer.add_argument("--seed", type=seed_value, default=0, help="Random seed for reproducibility")
    infer.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    return parser


# ---------------------------------------------------------------------------- checks shared by both commands
def resolve_device(name: str | None) -> torch.device:
    try:
        return checkpoint.resolve_device(name)
    except checkpoint.DeviceError as error:
        raise UsageError(f"--{error}") from error


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable_dir(path: Path, option: str) -> None:
    """``path`` must be a directory we can create or write into; nothing is created here."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, so the directory cannot be made")
    check_can_write_into(existing, f"{option} {path}")


def check_can_write_into(folder: Path, what: str) -> None:
    """Refuse a folder where no file can be created (``os.access`` says yes to root everywhere)."""
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        with tempfile.TemporaryFile(dir=folder):  # a real file, deleted at once, settles it
            pass
    except OSError as error:
        raise UsageError(f"{what}: cannot create files in {folder} ({error.strerror})") from error


def forbid(args, kind_ok: tuple[str, ...], *names: str) -> None:
    for name in names:
        if getattr(args, name) is not None and args.kind not in kind_ok:
            raise UsageError(f"--{name} applies to {'/'.join(kind_ok)} models, not {args.kind}")


# ---------------------------------------------------------------------------- train
def run_train(args) -> None:
    from . import data, ddpm, dit, flow, guidance, training

    forbid(args, ("ddpm", "cfg"), "prediction", "schedule")
    forbid(args, CONDITIONAL, "p_uncond")
    forbid(args, ("flow",), "time_sampling")
    if args.channels != 1:
        raise UsageError(f"--channels {args.channels}: MNIST has 1 channel")
    if args.p_uncond is not None and not 0 <= args.p_uncond < 1:
        raise UsageError(f"--p_uncond {args.p_uncond}: must lie in [0, 1)")
    overrides = dict(img_size=args.img_size, channels=args.channels, cross_attention=args.kind in CONDITIONAL)
    if args.patch_size is not None:
        overrides["patch_size"] = args.patch_size
    try:
        model_cfg = dit.preset(args.preset, **overrides)
        train_cfg = training.TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            save_freq=args.save_freq, lr_decay_step=args.lr_decay_step, lr_decay_rate=args.lr_decay_rate,
            lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, ema_decay=args.ema_decay,
            max_steps=args.max_steps)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if not 0 < args.ema_decay < 1:
        raise UsageError(f"--ema_decay {args.ema_decay}: must lie in (0, 1)")
    check_writable_dir(args.save_dir, "--save_dir")
    device = resolve_device(args.device)

    settings = {"limit": args.limit}
    if args.kind in ("ddpm", "cfg"):
        settings.update(prediction=args.prediction or "v", schedule=args.schedule or "linear", num_steps=1000)
    if args.kind in CONDITIONAL:
        settings["p_uncond"] = guidance.P_UNCOND if args.p_uncond is None else args.p_uncond
    if args.kind == "flow":
        settings["time_sampling"] = args.time_sampling or "uniform"
    num_images = data.num_images(train=True, limit=args.limit)
    resume = None
    if args.resume is not None:  # before the data: a resume that cannot continue the run costs nothing
        try:
            resume = training.check_resume(args.resume, args.kind, model_cfg.to_dict(), train_cfg, num_images,
                                           settings)
        except training.CheckpointError as error:
            raise UsageError(f"--resume: {error}") from error

    config.configure_threads()
    try:
        images, labels = data.load_mnist(train=True, size=args.img_size, limit=args.limit)
    except data.MNISTUnavailable as error:
        raise UsageError(str(error).replace("\n", " ")) from error
    training.seed_everything(args.seed)  # the initial weights depend on --seed too
    model = dit.DiT(model_cfg)

    if args.kind == "flow":
        def loss_fn(model, x, y, generator):
            return flow.loss(model, x, guidance.drop_labels(y, settings["p_uncond"], generator), generator,
                             settings["time_sampling"])
    else:
        scheduler = ddpm.NoiseScheduler(num_steps=settings["num_steps"], schedule=settings["schedule"], device=device)

        def loss_fn(model, x, y, generator):
            y = guidance.drop_labels(y, settings["p_uncond"], generator) if args.kind == "cfg" else None
            return ddpm.loss(model, x, y, scheduler, generator, settings["prediction"])

    path = args.save_dir / CHECKPOINT_NAMES[args.kind]
    recipe = " ".join(["python -m course_lib", *args.argv])
    metadata = {"recipe": recipe, "preset": args.preset, "seed": args.seed, "images": len(images), **settings}
    started = time.time()
    try:
        result = training.train(model, loss_fn, images, labels, train_cfg, device, kind=args.kind,
                                model_config=model_cfg.to_dict(), checkpoint_path=path, resume=resume,
                                metadata=metadata)
    except (training.TrainingDiverged, training.CheckpointError) as error:
        raise UsageError(str(error)) from error
    print(f"trained {result.step} steps in {time.time() - started:.1f} s, "
          f"last-100 loss {sum(result.losses[-100:]) / max(1, len(result.losses[-100:])):.4f}; wrote {path}")


# ---------------------------------------------------------------------------- infer
def run_infer(args) -> None:
    from . import ddpm, flow, plotting, training

    # flow: Euler with 8 steps, not Heun with 4 (same 8 NFE): on the shipped model Heun's 4 steps leave a noise
    # speckle, Fréchet 359 against Euler's 132 (notebook 06, N = 200; RESULTS.md, "Quality sweep: nfe")
    sampler = args.sampler or ("euler" if args.kind == "flow" else "ddim")
    if sampler not in SAMPLERS[args.kind]:
        raise UsageError(f"--sampler {sampler}: {args.kind} models sample with {', '.join(SAMPLERS[args.kind])}")
    forbid(args, CONDITIONAL, "label", "guidance_scale")
    if args.gamma is not None and sampler != "sde":
        raise UsageError("--gamma sets the noise of --sampler sde only")
    if sampler == "ddpm" and args.steps is not None:
        raise UsageError("--steps does not apply to --sampler ddpm, which always takes all 1000 steps; use ddim")
    if args.guidance_scale is not None and not 0 <= args.guidance_scale <= MAX_GUIDANCE:
        raise UsageError(f"--guidance_scale {args.guidance_scale}: must lie in [0, {MAX_GUIDANCE:g}] "
                         f"(0 unconditional, 1 conditional, 2-5 typical)")
    gamma = 1.0 if args.gamma is None else args.gamma
    if not 0 <= gamma <= MAX_GAMMA:
        raise UsageError(f"--gamma {gamma}: must lie in [0, {MAX_GAMMA:g}]")
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise UsageError(f"--output {args.output}: use a .jpg or .png file name")
    if args.output.is_dir():
        raise UsageError(f"--output {args.output}: is a directory; name an image file")
    if not args.output.parent.is_dir():
        raise UsageError(f"--output {args.output}: directory {args.output.parent} does not exist")
    check_can_write_into(args.output.parent, f"--output {args.output}")
    device = resolve_device(args.device)
    try:
        model, payload = load_model(args.ckpt, args.kind, device)
        settings = sampling_settings(payload, args.ckpt)
    except training.CheckpointError as error:
        raise UsageError(str(error)) from error
    steps = args.steps or DEFAULT_STEPS.get(sampler)
    if sampler == "ddim" and steps > settings["num_steps"]:
        raise UsageError(f"--steps {steps}: DDIM takes at most the scheduler's {settings['num_steps']} steps")

    config.configure_threads()
    generator = torch.Generator().manual_seed(args.seed)
    n = args.num_images
    shape = (n, model.cfg.channels, model.cfg.img_size, model.cfg.img_size)
    labels, scale = None, None
    if args.kind in CONDITIONAL:
        labels = (torch.full((n,), args.label) if args.label is not None else torch.arange(n) % 10).to(device)
        scale = args.guidance_scale if args.guidance_scale is not None else settings["guidance_scale"]
    started = time.time()
    if args.kind == "flow":
        if sampler == "sde":
            images = flow.sample_sde(model, shape, steps, gamma, labels, scale, generator, device)
        else:
            images = flow.sample_ode(model, shape, steps, sampler, labels, scale, generator, device)
    else:
        scheduler = ddpm.NoiseScheduler(num_steps=settings["num_steps"], schedule=settings["schedule"],
                                        device=device)
        common = dict(labels=labels, generator=generator, device=device, prediction=settings["prediction"],
                      guidance_scale=scale)
        if sampler == "ddpm":
            images = ddpm.sample(model, scheduler, shape, **common)
        else:
            images = ddpm.sample_ddim(model, scheduler, shape, steps, **common)
    plotting.save_grid(images, args.output)
    what = f" of digit {args.label}" if args.label is not None else ""
    print(f"wrote {n} images{what} to {args.output} in {time.time() - started:.1f} s "
          f"({sampler}{'' if sampler == 'ddpm' else f', {steps} steps'}"
          f"{'' if scale is None else f', guidance {scale:g}'})")


def main(argv: list[str] | None = None) -> int:
    # the console script names itself in every usage and error line, the subcommands' included
    console = Path(sys.argv[0]).name == "simplest-diffusion"
    parser = build_parser("simplest-diffusion" if console else "python -m course_lib")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        (run_train if args.command == "train" else run_infer)(args)
    except UsageError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt as error:  # training says where the last completed epoch is saved
        parser.exit(130, f"{parser.prog} {args.command}: {error or 'interrupted'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
