"""The judge's own numbers: test accuracy and the real-data Fréchet floor at several N.

    python -m benchmarks.judge --n 1000 5000
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import markdown_table, record
from course_lib import checkpoint, config, data, evaluation


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args(argv)
    config.configure_threads()
    images, labels = data.load_mnist(train=False, limit=10_000)
    started = time.perf_counter()
    accuracy = evaluation.class_accuracy(images, labels)
    seconds = time.perf_counter() - started
    meta = checkpoint.load_checkpoint(evaluation.JUDGE_PATH, kind="judge")["metadata"]
    rows = [["test accuracy (10,000 images)", f"{accuracy:.4f}", f"{seconds:.1f} s"]]
    for n in args.n:
        started = time.perf_counter()
        rows.append([f"real-data Fréchet floor, N = {n} (train images vs test split)",
                     f"{evaluation.real_floor(n):.3f}", f"{time.perf_counter() - started:.1f} s"])
    notes = (f"Judge recipe {meta['recipe']}; trained in {meta['train_seconds']:.0f} s "
             f"(the metadata's test accuracy: {meta['test_accuracy']:.4f}).")
    record("Judge", torch.device("cpu"), markdown_table(["quantity", "value", "time"], rows), notes)


if __name__ == "__main__":
    main()
