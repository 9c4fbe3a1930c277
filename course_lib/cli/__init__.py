"""Command line mirroring the original scripts, for the three model kinds of the book.

    python -m course_lib train ddpm --epochs 12 --save_dir runs          # unconditional DDPM
    python -m course_lib train cfg  --epochs 12 --save_dir runs          # class-conditional DDPM with CFG
    python -m course_lib train flow --epochs 12 --save_dir runs          # class-conditional rectified flow
    python -m course_lib infer cfg  --ckpt checkpoints/ddpm_cfg.pt --output four.jpg --label 4

Every failure is one line on stderr and exit status 2, found before any training, sampling or
writing starts: each option's value by its argparse type (here), then what needs several options or
the disk (paths, devices, checkpoints, resume compatibility) before any work.

The package: this file (the options and ``main``), ``train.py`` and ``infer.py`` (the two commands),
``reflow.py`` (``train flow --reflow``), ``sampling.py`` (which sampler a checkpoint gets) and
``checks.py`` (the checks both commands share, the folder lock and :class:`UsageError`).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from .. import ddpm, distributed, dit, flow, guidance, training
from ..reflow import PAIR_STEPS  # not the module: the name reflow here is the subpackage's cli/reflow.py
from . import sampling
from .checks import MAX_BATCH, MAX_IMAGES, MAX_IMG_SIZE, MAX_PAIRS, MAX_STEPS, UsageError
from .infer import run_infer
from .train import DEFAULTS, run_train

KINDS = ("ddpm", "cfg", "flow")
MAX_GUIDANCE = 20.0  # far past any useful scale: beyond it samples saturate to blobs
MAX_GAMMA = 10.0
SEED_LIMIT = 2**32  # torch.Generator.manual_seed and numpy accept seeds in [0, 2**32)
TRAIN = training.TrainConfig()  # the library's defaults, where the command line keeps them


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; the book's promise is one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n" if distributed.speaks() else None)


# ---------------------------------------------------------------------------- option values
def number(parse, what: str, accept=lambda value: True, refused: str = ""):
    """An argparse ``type``: ``parse`` the text (int or float), then refuse Inf, NaN and what ``accept`` refuses.

    Each refusal reads ``must be <what>, got <text>`` (or ``refused``, e.g. ``must be positive``).
    """
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{refused or 'must be ' + what}, got {value}")
        return value

    return convert


positive_int = number(int, "a positive integer", lambda value: value > 0)
positive_float = number(float, "a number", lambda value: value > 0, "must be positive")
seed_value = number(int, "an integer", lambda value: 0 <= value < SEED_LIMIT, "must lie in [0, 2**32)")
digit = number(int, "a digit 0-9", lambda value: 0 <= value <= 9)
guidance_value = number(float, "a number", lambda value: 0 <= value <= MAX_GUIDANCE,
                        f"must lie in [0, {MAX_GUIDANCE:g}] (0 unconditional, 1 conditional, 2-5 typical)")
gamma_value = number(float, "a number", lambda value: 0 <= value <= MAX_GAMMA,
                     f"must lie in [0, {MAX_GAMMA:g}] (the SDE's noise level)")
p_uncond_value = number(float, "a number", lambda value: 0 <= value < 1,
                        "must lie in [0, 1) (1 would never show the model a label)")
ema_value = number(float, "a number", lambda value: 0 < value < 1, "must lie in (0, 1)")


def at_most(maximum: int, why: str):
    """An argparse ``type``: a positive integer no larger than ``maximum`` (``why`` says where the cap comes from)."""
    def convert(text: str):
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,} ({why}), got {value:,}")
        return value

    return convert


steps_value = at_most(MAX_STEPS, "steps per image")


# ---------------------------------------------------------------------------- the parser
def build_parser(prog: str = "python -m course_lib") -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    add_train_options(commands.add_parser("train", help="train a model", formatter_class=fmt))
    add_infer_options(commands.add_parser("infer", help="sample images from a checkpoint", formatter_class=fmt))
    return parser


def add_train_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("kind", choices=KINDS)
    train.add_argument("--img_size", type=at_most(MAX_IMG_SIZE, "MNIST digits are 28 pixels; memory grows as its "
                                                  "square"), default=32, help="Image size")
    train.add_argument("--channels", type=positive_int, default=1, help="Number of image channels")
    train.add_argument("--patch_size", type=positive_int, default=None,
                       help="Patch size for DiT (default: the preset's)")
    train.add_argument("--preset", choices=sorted(dit.PRESETS), default=None,
                       help="DiT size (tiny: tests; book: long skips and a conv head) [small]")
    # --epochs 12 and --lr_decay_step 4 are the original scripts' values, not TrainConfig's
    train.add_argument("--epochs", type=positive_int, default=12, help="Number of training epochs")
    train.add_argument("--batch_size", type=at_most(MAX_BATCH, "a batch's activations must fit in memory"),
                       default=TRAIN.batch_size,
                       help="Training batch size (under torchrun: the global batch, split among the processes)")
    train.add_argument("--lr", type=positive_float, default=TRAIN.lr, help="Learning rate")
    train.add_argument("--seed", type=seed_value, default=TRAIN.seed, help="Random seed for reproducibility")
    train.add_argument("--save_dir", type=Path, default=Path("runs"), help="Directory to save model checkpoints")
    train.add_argument("--save_freq", type=positive_int, default=TRAIN.save_freq, help="Save model every N epochs")
    train.add_argument("--lr_decay_step", type=int, default=4, help="LR decay step size in epochs (0: never)")
    train.add_argument("--lr_decay_rate", type=positive_float, default=TRAIN.lr_decay_rate, help="LR decay rate")
    train.add_argument("--lr_schedule", choices=training.LR_SCHEDULES, default=TRAIN.lr_schedule,
                       help="step: x lr_decay_rate every lr_decay_step epochs; cosine: to 0 at the last step")
    train.add_argument("--warmup_steps", type=int, default=TRAIN.warmup_steps,
                       help="linear learning-rate warm-up steps")
    train.add_argument("--ema_decay", type=ema_value, default=TRAIN.ema_decay,
                       help="EMA decay of the sampled weights")
    train.add_argument("--prediction", choices=ddpm.PREDICTIONS, default=None,
                       help=f"ddpm/cfg: what the network predicts (converted to noise for sampling) "
                            f"[{DEFAULTS['prediction']}]")
    train.add_argument("--schedule", choices=ddpm.SCHEDULES, default=None,
                       help=f"ddpm/cfg: β schedule [{DEFAULTS['schedule']}]")
    train.add_argument("--loss_weighting", choices=ddpm.LOSS_WEIGHTINGS, default=None,
                       help=f"ddpm/cfg: per-step loss weights, min_snr = min(SNR, {ddpm.MIN_SNR_GAMMA:g}) on the "
                            f"x0-error (Hang et al. 2023) [{DEFAULTS['loss_weighting']}]")
    train.add_argument("--p_uncond", type=p_uncond_value, default=None,
                       help=f"cfg/flow: probability of dropping the label in training [{guidance.P_UNCOND}]")
    train.add_argument("--time_sampling", choices=flow.TIME_SAMPLINGS, default=None,
                       help=f"how training times are drawn (ddpm/cfg: the step whose flow time b/(a+b) is drawn) "
                            f"[{DEFAULTS['time_sampling']}]")
    train.add_argument("--reflow", type=Path, default=None,
                       help="flow: retrain this flow checkpoint on the (noise, image) pairs its ODE draws (chapter 07)")
    train.add_argument("--num_pairs", type=at_most(MAX_PAIRS, "they are held in memory"), default=None,
                       help="reflow: how many pairs to draw [as many as training images]")
    train.add_argument("--pair_steps", type=steps_value, default=None,
                       help=f"reflow: the base's Euler steps per pair [{PAIR_STEPS}]")
    train.add_argument("--max_steps", type=positive_int, default=None, help="stop after this many steps")
    train.add_argument("--limit", type=positive_int, default=None, help="train on the first N images only")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--init", type=Path, default=None,
                       help="warm start: begin from this checkpoint's (EMA) weights, of the same kind and model, "
                            "with a fresh optimiser and learning-rate schedule")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run of this name that --save_dir holds (else it is refused)")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_infer_options(infer: argparse.ArgumentParser) -> None:
    def listed(kind: str) -> str:
        *others, last = sampling.SAMPLERS[kind]
        return f"{', '.join(others)} or {last} [{sampling.DEFAULT_SAMPLER[kind]}]"

    steps = ", ".join(f"{name} {n}" for name, n in sampling.DEFAULT_STEPS.items())
    infer.add_argument("kind", choices=KINDS)
    infer.add_argument("--ckpt", type=Path, required=True, help="checkpoint to sample from")
    infer.add_argument("--output", type=Path, required=True, help="image file to write (.jpg or .png)")
    infer.add_argument("--label", type=digit, default=None,
                       help="cfg/flow: the digit to draw (default: the grid cycles through 0-9)")
    infer.add_argument("--guidance_scale", type=guidance_value, default=None,
                       help="cfg/flow: 0 unconditional, 1 conditional, >1 guided; ddpm: autoguidance by the guide the "
                            "checkpoint carries, 1 the model alone (default: the checkpoint's)")
    infer.add_argument("--num_images", type=at_most(MAX_IMAGES, "a 32 x 32 grid, sampled in one batch"), default=64,
                       help="how many images in the grid")
    infer.add_argument("--sampler", default=None, help=f"ddpm/cfg: {listed('ddpm')}; flow: {listed('flow')}")
    infer.add_argument("--steps", type=steps_value, default=None,
                       help=f"sampler steps ({steps}; at most {MAX_STEPS}); ddpm always uses all T")
    infer.add_argument("--gamma", type=gamma_value, default=None,
                       help=f"flow sde: noise level γ in σ(t)² = γ·t [{flow.SDE_GAMMA:g}]")
    infer.add_argument("--seed", type=seed_value, default=0, help="Random seed for reproducibility")
    infer.add_argument("--overwrite", action="store_true",
                       help="replace an existing --output image that infer did not write (never the checkpoint)")
    infer.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")


def main(argv: list[str] | None = None) -> int:
    # the console script names itself in every usage and error line, the subcommands' included
    console = Path(sys.argv[0]).name == "simplest-diffusion"
    parser = build_parser("simplest-diffusion" if console else "python -m course_lib")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with terminate_as_interrupt():
            (run_train if args.command == "train" else run_infer)(args)
    except UsageError as error:  # under torchrun, one line per machine (every process refuses alike)
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n" if distributed.speaks() else None)
    except KeyboardInterrupt as error:  # training says where the last completed epoch is saved
        parser.exit(130, f"{parser.prog} {args.command}: {error or 'interrupted before any file was written'}\n"
                    if distributed.writes() else None)
    except training.ProcessLost as error:  # process 0 says what it kept; torchrun names the process that stopped
        parser.exit(1, f"{parser.prog} {args.command}: {error}\n" if distributed.writes() else None)
    return 0


@contextmanager
def terminate_as_interrupt():
    """Inside: SIGTERM (``kill``, a job scheduler's stop) is handled as Ctrl-C is, so a run stopped either
    way saves its last epoch, removes its temporary files and says what it kept."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave the signal alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
