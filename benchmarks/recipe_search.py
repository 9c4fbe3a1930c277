"""Recipe search on the CPU: each candidate trains for the same wall-clock, then is judged at N images.

    python -m benchmarks.recipe_search --kind flow --minutes 6 --n 1000 --save_dir runs/search
    python -m benchmarks.recipe_search --kind flow --only B C --minutes 6

Equal wall-clock, made reproducible: every candidate's training speed (steps/s, full step with EMA)
is measured first, all before any training, on the idle machine, and each candidate then trains
for ``speed × minutes`` steps with the command line's own ``train``, so a slower machine later
changes the time, not the result.
The cosine schedule ends at that last step. Each candidate is judged with Euler 8 steps at several
guidance scales (the book's recommended flow sampler); one JSON per candidate lands in
``--save_dir`` as it finishes, and the whole table in RESULTS.md at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from benchmarks.common import harness, markdown_table, record
from course_lib import checkpoint, cli, config, dit, evaluation, training
from course_lib.cli import sampling
from course_lib.cli import train as cli_train

COMMON = ["--lr", "2e-3", "--seed", "0", "--ema_decay", "0.999"]
# name -> (what it tests, train options beyond COMMON); A is the shipped models' recipe shape
CANDIDATES = {
    "A": ("baseline: learner, patch 4, step decay (halved every epoch)",
          ["--preset", "learner", "--batch_size", "128", "--lr_decay_step", "1"]),
    "B": ("learner, patch 4, warm-up + cosine",
          ["--preset", "learner", "--batch_size", "128", "--lr_schedule", "cosine"]),
    "C": ("learner, patch 2, cosine", ["--preset", "learner", "--patch_size", "2", "--batch_size", "128",
                                       "--lr_schedule", "cosine"]),
    "D": ("book (dim 128, depth 6), patch 4, cosine", ["--preset", "book", "--batch_size", "128", "--lr", "1e-3",
                                                       "--lr_schedule", "cosine"]),
    "E": ("learner, patch 4, cosine, batch 256", ["--preset", "learner", "--batch_size", "256",
                                                  "--lr_schedule", "cosine"]),
}
FLOW_ONLY = {
    "F": ("learner, patch 4, cosine, uniform t (B is logit-normal)",
          ["--preset", "learner", "--batch_size", "128", "--lr_schedule", "cosine", "--time_sampling", "uniform"]),
}
DDPM_ONLY = {
    "G": ("learner, patch 4, cosine, v + min-SNR-5 weighting",
          ["--preset", "learner", "--batch_size", "128", "--lr_schedule", "cosine", "--loss_weighting", "min_snr"]),
}
GUIDANCE = {"flow": (1.5, 2.0, 3.0), "cfg": (1.5, 2.0, 3.0), "ddpm": (None,)}
HEADER = ["kind", "candidate", "what", "params", "steps/s (2 cores)", "minutes", "steps", "images seen",
          "sampler", "guidance", "class acc.", "Fréchet", "floor at N", "confidence"]


def candidates(kind: str) -> dict:
    extra = FLOW_ONLY if kind == "flow" else DDPM_ONLY
    return {**CANDIDATES, **extra}


def options(kind: str, opts: list[str]) -> list[str]:
    """Fill in the kind's defaults (logit-normal t for flow, v-prediction for DDPM) unless given."""
    opts = COMMON + opts
    if kind == "flow" and "--time_sampling" not in opts:
        opts += ["--time_sampling", "logit_normal"]
    if kind != "flow" and "--prediction" not in opts:
        opts += ["--prediction", "v"]
    # later options win in argparse, so candidate-specific values (lr) override COMMON
    return opts


def measure_speed(kind: str, opts: list[str], device, steps: int = 20, warm: int = 3) -> tuple[float, int]:
    """Steps per second of the command line's own training step for these options, on random data.

    The options are parsed and built by ``cli_train`` and run through ``training.train``, so the step
    timed (the candidate's loss, backward, clipping, AdamW, EMA) is exactly the one the run will take.
    """
    args = cli.build_parser().parse_args(["train", kind, *opts])
    model_cfg, train_cfg, settings = cli_train.check_train_options(args)
    train_cfg = dataclasses.replace(train_cfg, epochs=1, max_steps=warm + steps)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(train_cfg.batch_size * (warm + steps), 1, 32, 32, generator=generator) * 2 - 1
    labels = torch.arange(len(images)) % 10
    model = dit.DiT(model_cfg)
    stamps = {}
    training.train(model, cli_train.objective(kind, settings, device), (images, labels), train_cfg, device,
                   progress=False, on_step=lambda step, _: stamps.__setitem__(step, time.perf_counter()))
    return steps / (stamps[warm + steps] - stamps[warm]), dit.count_parameters(model)


def judge(kind: str, path: Path, device, n: int) -> list[dict]:
    model, payload = checkpoint.load_model(path, kind, device)
    rows = []
    name, steps = ("euler", 8) if kind == "flow" else ("ddim", 50)
    for scale in GUIDANCE[kind]:
        sampler = harness(sampling.make_sampler(model, payload, name, steps, guidance_scale=scale, device=device))
        r = evaluation.measure_quality(sampler, n, 500)
        r.update(sampler=name, guidance=scale)
        print(f"    {name} g={scale}: acc={r['class_accuracy']} Fréchet={r['frechet']:.1f}", flush=True)
        rows.append(r)
    return rows


def run(kind: str, name: str, what: str, opts: list[str], speed: float, params: int, minutes: float, n: int,
        save_dir: Path, device) -> dict:
    opts = options(kind, opts)
    steps = max(1, round(speed * minutes * 60))
    batch = cli.build_parser().parse_args(["train", kind, *opts]).batch_size  # the value argparse keeps
    epochs = math.ceil(steps / math.ceil(60_000 / batch))
    out = save_dir / f"{kind}_{name}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{kind} {name} ({what}): {speed:.2f} steps/s -> {steps} steps, {epochs} epoch(s)", flush=True)
    started = time.time()
    code = cli.main(["train", kind, *opts, "--epochs", str(epochs), "--max_steps", str(steps),
                     "--save_dir", str(out), "--device", str(device)])
    if code:
        raise SystemExit(f"candidate {name} failed to train (exit {code})")
    trained_minutes = (time.time() - started) / 60
    rows = judge(kind, out / cli_train.CHECKPOINT_NAMES[kind], device, n)
    result = {"kind": kind, "candidate": name, "what": what, "options": opts, "params": params,
              "steps_per_s": speed, "minutes": trained_minutes, "steps": steps, "images": steps * batch,
              "rows": rows}
    checkpoint.write_text_atomically(save_dir / f"{kind}_{name}.json", json.dumps(result, indent=1, default=float))
    return result


def table(results: list[dict]) -> str:
    lines = []
    for res in results:
        for r in res["rows"]:
            lines.append([res["kind"], res["candidate"], res["what"], res["params"], res["steps_per_s"],
                          res["minutes"], res["steps"], res["images"], f"{r['sampler']} {r['nfe']} NFE",
                          r["guidance"], r["class_accuracy"], r["frechet"], r["floor"], r["confidence"]])
    return markdown_table(HEADER, lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="flow", choices=cli.KINDS)
    parser.add_argument("--only", nargs="+", help="candidate letters to run (default: all of the kind)")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall-clock per candidate")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--save_dir", type=Path, default=Path("runs/search"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    config.configure_threads()
    device = checkpoint.resolve_device(args.device)
    pool = candidates(args.kind)
    names = args.only or list(pool)
    unknown = [x for x in names if x not in pool]
    if unknown:
        parser.error(f"unknown candidates {unknown}; {args.kind} has {sorted(pool)}")
    # all speeds first, while nothing else runs: later load on the machine then slows training, not the steps
    speeds = {x: measure_speed(args.kind, options(args.kind, pool[x][1]), device) for x in names}
    print("steps/s:", {x: round(s, 2) for x, (s, _) in speeds.items()}, flush=True)
    results = [run(args.kind, x, *pool[x], *speeds[x], args.minutes, args.n, args.save_dir, device) for x in names]
    text = table(results)
    if args.no_record:
        print(text)
    else:
        record(f"Recipe search: {args.kind}, {args.minutes:g} min per candidate", device, text)


if __name__ == "__main__":
    main()
