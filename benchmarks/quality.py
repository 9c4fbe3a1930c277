"""Sample quality of a checkpoint and sampler at several step counts, judged by the MNIST classifier.

    python benchmarks/quality.py --ckpt checkpoints/ddpm_uncond.pt --sampler ddim --steps 20 50
    python benchmarks/quality.py --stand-in real            # real test images: must show the floor

One row per setting: model, sampler, NFE, N, class accuracy (conditional models), Fréchet distance,
the real-data floor at the same N, mean judge confidence, digit shares, images/s and seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import markdown_table, record  # noqa: E402
from course_lib import cli, config, ddpm, evaluation, training  # noqa: E402

HEADER = ["model", "sampler", "NFE", "N", "class acc.", "Fréchet", "floor at N", "confidence",
          "digit share min–max", "images/s", "seconds"]


def ddpm_sampler(model, scheduler, prediction, name: str, steps: int, device) -> evaluation.Sampler:
    def sampler(n, generator):
        shape = (n, 1, model.cfg.img_size, model.cfg.img_size)
        if name == "ddpm":
            images = ddpm.sample(model, scheduler, shape, generator=generator, device=device, prediction=prediction)
            return images, None, scheduler.num_steps
        images = ddpm.sample_ddim(model, scheduler, shape, steps, generator=generator, device=device,
                                  prediction=prediction)
        return images, None, steps

    return sampler


def store_in_checkpoint(path: Path, kind: str, measured: list[dict]) -> None:
    """Add the measured rows to the checkpoint's metadata (rewritten atomically)."""
    payload = training.load_checkpoint(path, kind=kind)
    quality = payload["metadata"].setdefault("quality", {})
    for row in measured:
        quality[f"{row['sampler']}_nfe{row['nfe']}_n{row['n']}"] = {
            k: row[k] for k in ("frechet", "floor", "confidence", "histogram", "class_accuracy", "images_per_s")}
    training.save_checkpoint(path, payload)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="checkpoint to sample from")
    parser.add_argument("--kind", default="ddpm", choices=cli.KINDS)
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"))
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
    device = cli.resolve_device(args.device)

    settings = []
    if args.stand_in:
        settings.append(("real test images", "—", evaluation.real_images_sampler(train=False)))
    else:
        model, payload = cli.load_model(args.ckpt, args.kind, device)
        scheduler = ddpm.NoiseScheduler(device=device)
        prediction = payload["metadata"].get("prediction", "eps")
        steps = [scheduler.num_steps] if args.sampler == "ddpm" else args.steps
        for s in steps:
            sampler = ddpm_sampler(model, scheduler, prediction, args.sampler, s, device)
            settings.append((args.ckpt.name, args.sampler, sampler))

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
