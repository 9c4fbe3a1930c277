"""ε- versus v-prediction for the same DiT, data order and number of steps, judged by the classifier.

    python -m benchmarks.prediction_target --steps 1500 --preset small --n 500

Each run trains from the same initial weights with the same batches and noise, then draws N images
with DDIM and scores them; only the regression target differs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import harness, markdown_table, record
from course_lib import config, data, ddpm, dit, evaluation, plotting, training
from course_lib.cli import sampling


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prediction_target", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--preset", default="small", choices=list(dit.PRESETS))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--grids", type=Path, default=None, help="folder for a sample grid per target")
    args = parser.parse_args(argv)
    if args.grids is not None:
        args.grids.mkdir(parents=True, exist_ok=True)  # before training, so a bad path costs nothing
    config.configure_threads()
    device = config.default_device()
    images, labels = data.load_mnist(train=True, limit=60_000)
    scheduler = ddpm.NoiseScheduler(device=device)
    rows = []
    for prediction in ddpm.PREDICTIONS:
        training.seed_everything(0)
        model = dit.DiT(dit.preset(args.preset))
        cfg = training.TrainConfig(epochs=100, batch_size=args.batch_size, max_steps=args.steps, seed=0)
        started = time.perf_counter()
        result = training.train(model, lambda m, batch, g, p=prediction: ddpm.loss(m, batch[0], None, scheduler, g, p),
                                (images, labels), cfg, device, progress=False)
        seconds = time.perf_counter() - started

        # what a checkpoint of this run would record, so make_sampler samples as infer would
        trained = {"kind": "ddpm", "metadata": {"prediction": prediction, "schedule": scheduler.schedule,
                                                "num_timesteps": scheduler.num_timesteps}}
        sampler = harness(sampling.make_sampler(result.ema, trained, "ddim", args.ddim_steps, device=device))
        r = evaluation.measure_quality(sampler, args.n)
        if args.grids is not None:
            x, _, _ = sampler(64, torch.Generator().manual_seed(0))
            plotting.save_grid(x, args.grids / f"prediction_{prediction}_{args.steps}.png")
        rows.append([prediction, args.preset, args.steps, f"{seconds:.0f}", r["n"], r["frechet"], r["floor"],
                     r["confidence"], f"{r['digit_share_min']:.1%}–{r['digit_share_max']:.1%}"])
        print(rows[-1], flush=True)
    header = ["target", "preset", "train steps", "train s", "N", "Fréchet", "floor at N", "confidence",
              "digit share min–max"]
    record(f"ε vs v prediction (DDIM {args.ddim_steps})", device, markdown_table(header, rows))


if __name__ == "__main__":
    main()
