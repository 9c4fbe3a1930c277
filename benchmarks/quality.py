"""Sample quality of a checkpoint and sampler at several step counts, judged by the MNIST classifier.

    python -m benchmarks.quality --ckpt checkpoints/ddpm_uncond.pt --sampler ddim --steps 20 50
    python -m benchmarks.quality --stand-in real            # real test images: must show the floor

One row per setting: model, sampler, NFE, N, class accuracy (conditional models), Fréchet distance,
the real-data floor at the same N, mean judge confidence, digit shares, images/s and seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import harness, markdown_table, record
from course_lib import checkpoint, cli, config, evaluation, sampling

HEADER = ["model", "sampler", "NFE", "N", "class acc.", "Fréchet", "floor at N", "confidence",
          "digit share min–max", "images/s", "seconds"]


def store_in_checkpoint(path: Path, kind: str, measured: list[dict]) -> None:
    """Add the measured rows to the checkpoint's metadata (rewritten atomically)."""
    payload = checkpoint.load_checkpoint(path, kind=kind)
    quality = payload["metadata"].setdefault("quality", {})
    for row in measured:
        quality[f"{row['sampler']}_nfe{row['nfe']}_n{row['n']}"] = {
            k: row[k] for k in ("frechet", "floor", "confidence", "histogram", "class_accuracy", "images_per_s")}
    checkpoint.save_checkpoint(path, payload)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="checkpoint to sample from")
    parser.add_argument("--kind", default="ddpm", choices=cli.KINDS)
    parser.add_argument("--sampler", default="ddim", choices=sampling.DDPM_SAMPLERS)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50], help="step counts (DDIM)")
    parser.add_argument("--stand-in", choices=("real",), help="score real test images instead of a model")
    parser.add_argument("--n", type=int, default=1000, help="images per row")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--into-checkpoint", action="store_true",
                        help="also store the rows in the checkpoint's metadata under 'quality'")
    args = parser.parse_args(argv)
    if (args.ckpt is None) == (args.stand_in is None):
        parser.error("give exactly one of --ckpt and --stand-in")
    if args.into_checkpoint and args.ckpt is None:
        parser.error("--into-checkpoint needs --ckpt")
    config.configure_threads()
    device = checkpoint.resolve_device(args.device)

    settings = []
    if args.stand_in:
        settings.append(("real test images", "—", evaluation.real_images_sampler(train=False)))
    else:
        # the checkpoint's own schedule, T and prediction (a checkpoint without them is refused);
        # a conditional model draws the digits 0-9 in turn at its recommended guidance
        model, payload = checkpoint.load_model(args.ckpt, args.kind, device)
        for steps in [None] if args.sampler == "ddpm" else args.steps:
            sample = sampling.make_sampler(model, payload, args.sampler, steps, device=device, path=args.ckpt)
            settings.append((args.ckpt.name, args.sampler, harness(sample, model.cfg.img_size)))

    rows, measured = [], []
    for model_name, sampler_name, sampler in settings:
        r = evaluation.measure_quality(sampler, args.n, args.batch_size)
        measured.append({"sampler": sampler_name, **r})
        rows.append([model_name, sampler_name, r["nfe"], r["n"], r["class_accuracy"], r["frechet"], r["floor"],
                     r["confidence"], f"{r['digit_share_min']:.1%}–{r['digit_share_max']:.1%}",
                     r["images_per_s"], r["seconds"]])
        print("  digit shares:", " ".join(f"{d}:{p:.1%}" for d, p in enumerate(r["histogram"])), flush=True)
    table = markdown_table(HEADER, rows)
    if args.into_checkpoint:
        store_in_checkpoint(args.ckpt, args.kind, measured)
    if args.no_record:
        print(table)
    else:
        record("Sample quality", device, table)


if __name__ == "__main__":
    main()
