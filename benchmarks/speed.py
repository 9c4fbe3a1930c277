"""Training and sampling speed of the DiT presets, with FLOPs and the machine's matmul ceiling.

    python -m benchmarks.speed                 # CPU, and CUDA too when present
    python -m benchmarks.speed --device cpu --presets small

For each preset: optimiser steps/s and images/s at the training batch, network evaluations per
second when sampling (images/s per NFE), FLOPs counted by torch.utils.flop_counter, and the FLOP/s
achieved, beside what one large matrix product reaches on the same device (the ceiling).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import markdown_table, record
from course_lib import config, dit


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_ceiling(device: torch.device, size: int = 2048) -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / timed(lambda: a @ b, device, repeats=10)


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_preset(name: str, device: torch.device, train_batch: int, sample_batch: int, repeats: int):
    model = dit.DiT(dit.preset(name)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(train_batch, 1, 32, 32, device=device)
    t = torch.rand(train_batch, device=device)

    def train_step():
        loss = (model(x, t) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def forward_backward():
        (model(x, t) - x).pow(2).mean().backward()

    train_seconds = timed(train_step, device, repeats)
    train_flops = count_flops(forward_backward)
    xs = torch.randn(sample_batch, 1, 32, 32, device=device)
    ts = torch.rand(sample_batch, device=device)

    def evaluate():
        with torch.no_grad():
            model(xs, ts)

    sample_seconds = timed(evaluate, device, repeats)
    sample_flops = count_flops(evaluate)
    return [name, dit.count_parameters(model), train_batch, 1 / train_seconds, train_batch / train_seconds,
            train_flops / train_seconds / 1e9, sample_batch, sample_batch / sample_seconds,
            sample_flops / sample_seconds / 1e9]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), action="append")
    parser.add_argument("--presets", nargs="+", default=list(dit.PRESETS))
    parser.add_argument("--train_batch", type=int, default=128)
    parser.add_argument("--sample_batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    config.configure_threads()
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    header = ["preset", "params", "train batch", "train steps/s", "train images/s", "train GFLOP/s",
              "sample batch", "images/s per NFE", "sample GFLOP/s"]
    for name in devices:
        device = torch.device(name)
        ceiling = matmul_ceiling(device) / 1e9
        rows = [bench_preset(p, device, args.train_batch, args.sample_batch, args.repeats) for p in args.presets]
        table = markdown_table(header, rows)
        notes = (f"Matrix-multiply ceiling on this device: {ceiling:.1f} GFLOP/s (2048² fp32). "
                 + " ".join(f"{r[0]}: training at {r[5] / ceiling:.0%} and sampling at {r[8] / ceiling:.0%} of it."
                            for r in rows))
        if args.no_record:
            print(table + "\n\n" + notes)
        else:
            record(f"DiT speed on {name}", device, table, notes)


if __name__ == "__main__":
    main()
