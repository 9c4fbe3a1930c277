"""Sample quality of a checkpoint and sampler at several step counts, judged by the MNIST classifier.

    python -m benchmarks.quality --ckpt checkpoints/ddpm_uncond.pt --sampler ddim --steps 20 50
    python -m benchmarks.quality --stand-in real            # real test images: must show the floor

One row per setting: model, sampler, NFE, N, class accuracy (conditional models), Fréchet distance,
the real-data floor at the same N, mean judge confidence, digit shares, images/s and seconds.
Every option is checked and the checkpoint loaded before the first sample (a failure is one line,
exit status 2); ``--into-checkpoint`` rewrites the checkpoint last, atomically, if it is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from benchmarks.common import CheckpointUpdate, harness, main_of, markdown_table, record
from course_lib import checkpoint, cli, config, evaluation
from course_lib.cli import sampling
from course_lib.cli.checks import UsageError, reported_writes, resolve_device, usage

HEADER = ["model", "sampler", "NFE", "N", "class acc.", "Fréchet", "floor at N", "confidence",
          "digit share min–max", "images/s", "seconds"]


PROG = "python -m benchmarks.quality"


def stored(path: Path, kind: str, measured: list[dict]) -> dict:
    """The checkpoint with the measured rows added to its metadata (written by :class:`CheckpointUpdate`)."""
    payload = checkpoint.load_checkpoint(path, kind=kind)
    quality = payload["metadata"].setdefault("quality", {})
    for row in measured:
        quality[f"{row['sampler']}_nfe{row['nfe']}_n{row['n']}"] = {
            k: row[k] for k in ("frechet", "floor", "confidence", "histogram", "class_accuracy", "images_per_s")}
    return payload


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="checkpoint to sample from")
    parser.add_argument("--kind", default="ddpm", choices=cli.KINDS)
    parser.add_argument("--sampler", default="ddim", choices=sampling.DDPM_SAMPLERS)
    parser.add_argument("--steps", type=cli.at_most(cli.MAX_STEPS, "steps per image"), nargs="+", default=[20, 50],
                        help="step counts (DDIM)")
    parser.add_argument("--stand-in", choices=("real",), help="score real test images instead of a model")
    parser.add_argument("--n", type=cli.positive_int, default=1000, help="images per row")
    parser.add_argument("--batch_size", type=cli.at_most(cli.MAX_BATCH, "a batch is sampled at once"), default=250)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--into-checkpoint", action="store_true",
                        help="also store the rows in the checkpoint's metadata under 'quality' (written last)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return main_of(PROG, lambda: quality(args))


def quality(args) -> None:
    if (args.ckpt is None) == (args.stand_in is None):
        raise UsageError("give exactly one of --ckpt and --stand-in")
    if args.into_checkpoint and args.ckpt is None:
        raise UsageError("--into-checkpoint needs --ckpt")
    with contextlib.ExitStack() as stack:
        update = stack.enter_context(CheckpointUpdate(args.ckpt)) if args.into_checkpoint else None
        device = resolve_device(args.device)
        settings = []
        if args.stand_in:
            settings.append(("real test images", "—", evaluation.real_images_sampler(train=False)))
        else:
            # the checkpoint's own schedule, T and prediction (a checkpoint without them is refused);
            # a conditional model draws the digits 0-9 in turn at its recommended guidance
            with usage():
                model, payload = checkpoint.load_model(args.ckpt, args.kind, device)
                for steps in [None] if args.sampler == "ddpm" else args.steps:
                    sample = sampling.make_sampler(model, payload, args.sampler, steps, device=device, path=args.ckpt)
                    settings.append((args.ckpt.name, args.sampler, harness(sample, model.cfg.img_size)))
        config.configure_threads()
        rows, measured = [], []
        for model_name, sampler_name, sampler in settings:
            r = evaluation.measure_quality(sampler, args.n, args.batch_size)
            measured.append({"sampler": sampler_name, **r})
            rows.append([model_name, sampler_name, r["nfe"], r["n"], r["class_accuracy"], r["frechet"], r["floor"],
                         r["confidence"], f"{r['digit_share_min']:.1%}–{r['digit_share_max']:.1%}",
                         r["images_per_s"], r["seconds"]])
            print("  digit shares:", " ".join(f"{d}:{p:.1%}" for d, p in enumerate(r["histogram"])), flush=True)
        table = markdown_table(HEADER, rows)
        with reported_writes():
            if args.no_record:
                print(table)
            else:
                record("Sample quality", device, table)
        if update is not None:  # the checkpoint last
            update.write(stored(args.ckpt, args.kind, measured))


if __name__ == "__main__":
    sys.exit(main())
