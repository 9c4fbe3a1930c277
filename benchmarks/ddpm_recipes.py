"""Unconditional DDPM recipes side by side: each checkpoint's training settings and its DDIM quality.

    python -m benchmarks.ddpm_recipes runs/abl/A/ddpm_uncond.pt runs/abl/B/ddpm_uncond.pt --n 1000

One row per checkpoint: its preset, patch size, β schedule, how training steps were drawn, prediction
target, optimiser steps, then DDIM (``--steps``, default 50) judged at N images: Fréchet distance with
its bootstrap standard error, the real-data floor, mean judge confidence and the digit shares. The
runs are meant to be of equal wall-clock time on the same machine (say how in the notes). Every
checkpoint is loaded and checked before the first sample; a failure is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import harness, main_of, markdown_table, record
from course_lib import checkpoint, cli, config, evaluation
from course_lib.cli import sampling
from course_lib.cli.checks import reported_writes, resolve_device, usage

HEADER = ["checkpoint", "preset", "patch", "schedule", "time sampling", "prediction", "steps", "DDIM", "N",
          "Fréchet", "± SE", "floor at N", "confidence", "digit share min–max"]


PROG = "python -m benchmarks.ddpm_recipes"


def sampler_of(path: Path, steps: int, device):
    """``(payload, DDIM sampler)`` of one checkpoint: loading and checking it draws nothing."""
    model, payload = checkpoint.load_model(path, "ddpm", device)
    return payload, sampling.make_sampler(model, payload, "ddim", steps, guidance_scale=1.0, device=device, path=path)


def row(path: Path, payload: dict, sample, steps: int, n: int) -> list:
    meta = payload["metadata"]
    quality = evaluation.measure_quality(harness(sample), n)
    print(f"  {path}: Fréchet {quality['frechet']:.1f} ± {quality['frechet_se']:.1f}", flush=True)
    return [str(path), meta.get("preset"), payload["model_config"]["patch_size"], meta["schedule"],
            meta.get("time_sampling", "uniform"), meta["prediction"], meta.get("step"), steps, n,
            quality["frechet"], quality["frechet_se"], quality["floor"], quality["confidence"],
            f"{quality['digit_share_min']:.1%}–{quality['digit_share_max']:.1%}"]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", type=Path, nargs="+", help="unconditional DDPM checkpoints")
    parser.add_argument("--n", type=cli.positive_int, default=1000)
    parser.add_argument("--steps", type=cli.at_most(cli.MAX_STEPS, "steps per image"), default=50, help="DDIM steps")
    parser.add_argument("--title", default="Unconditional DDPM recipes", help="the RESULTS.md heading")
    parser.add_argument("--notes", default="", help="a paragraph under the table (how the runs were made)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-record", action="store_true")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return main_of(PROG, lambda: recipes(args))


def recipes(args) -> None:
    device = resolve_device(args.device)
    with usage():  # every checkpoint checked before the first sample
        samplers = [sampler_of(path, args.steps, device) for path in args.ckpts]
    config.configure_threads()
    table = markdown_table(HEADER, [row(path, payload, sample, args.steps, args.n)
                                    for path, (payload, sample) in zip(args.ckpts, samplers, strict=True)])
    with reported_writes():
        if args.no_record:
            print(table)
        else:
            record(args.title, device, table, args.notes)


if __name__ == "__main__":
    sys.exit(main())
