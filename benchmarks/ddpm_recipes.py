"""Unconditional DDPM recipes side by side: each checkpoint's training settings and its DDIM quality.

    python -m benchmarks.ddpm_recipes runs/abl/A/ddpm_uncond.pt runs/abl/B/ddpm_uncond.pt --n 1000

One row per checkpoint: its preset, patch size, β schedule, how training steps were drawn, prediction
target, optimiser steps, then DDIM (``--steps``, default 50) judged at N images: Fréchet distance with
its bootstrap standard error, the real-data floor, mean judge confidence and the digit shares. The
runs are meant to be of equal wall-clock time on the same machine (say how in the notes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import harness, markdown_table, record
from course_lib import checkpoint, cli, config, evaluation, sampling

HEADER = ["checkpoint", "preset", "patch", "schedule", "time sampling", "prediction", "steps", "DDIM", "N",
          "Fréchet", "± SE", "floor at N", "confidence", "digit share min–max"]


def row(path: Path, steps: int, n: int, device) -> list:
    model, payload = checkpoint.load_model(path, "ddpm", device)
    meta = payload["metadata"]
    sample = sampling.make_sampler(model, payload, "ddim", steps, guidance_scale=1.0, device=device, path=path)
    quality = evaluation.measure_quality(harness(sample), n)
    print(f"  {path}: Fréchet {quality['frechet']:.1f} ± {quality['frechet_se']:.1f}", flush=True)
    return [str(path), meta.get("preset"), payload["model_config"]["patch_size"], meta["schedule"],
            meta.get("time_sampling", "uniform"), meta["prediction"], meta.get("step"), steps, n,
            quality["frechet"], quality["frechet_se"], quality["floor"], quality["confidence"],
            f"{quality['digit_share_min']:.1%}–{quality['digit_share_max']:.1%}"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ddpm_recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", type=Path, nargs="+", help="unconditional DDPM checkpoints")
    parser.add_argument("--n", type=cli.positive_int, default=1000)
    parser.add_argument("--steps", type=cli.positive_int, default=50, help="DDIM steps")
    parser.add_argument("--title", default="Unconditional DDPM recipes", help="the RESULTS.md heading")
    parser.add_argument("--notes", default="", help="a paragraph under the table (how the runs were made)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.ckpts if not p.is_file()]
    if missing:
        parser.error(f"no such checkpoint: {', '.join(missing)}")
    config.configure_threads()
    device = checkpoint.resolve_device(args.device)
    table = markdown_table(HEADER, [row(path, args.steps, args.n, device) for path in args.ckpts])
    if args.no_record:
        print(table)
    else:
        record(args.title, device, table, args.notes)


if __name__ == "__main__":
    main()
