"""What every benchmark shares: a description of the machine, appending to RESULTS.md, the harness sampler."""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value):
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def invocation() -> str:
    """How this benchmark was started, as one would type it: ``python -m benchmarks.<name>``.

    Under ``python -m`` Python sets ``sys.argv[0]`` to the module's file path; any other caller keeps
    its own ``sys.argv[0]``.
    """
    script = Path(sys.argv[0])
    if script.suffix == ".py" and script.resolve().parent == Path(__file__).resolve().parent:
        return f"python -m benchmarks.{script.stem}"
    return f"python {sys.argv[0]}"


def record(title: str, device: torch.device, table: str, notes: str = "") -> None:
    """Print ``table`` and append it to RESULTS.md with the date, machine and command."""
    print(table)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join([invocation(), *sys.argv[1:]])
    block = f"\n## {title}\n\n{stamp} · {machine(device)} · `{command}`\n\n{table}\n"
    if notes:
        block += f"\n{notes}\n"
    with open(RESULTS, "a") as handle:
        handle.write(block)


def harness(sample, img_size: int = 32):
    """A :class:`course_lib.sampling.Sampler` as the quality harness wants it: ``(n, generator) ->
    (images, labels, nfe)``; a conditional one draws the digits 0-9 in turn, at its guidance scale."""
    def sampler(n: int, generator: torch.Generator):
        labels = torch.arange(n) % 10 if sample.conditional else None
        return sample((n, 1, img_size, img_size), labels, generator), labels, sample.nfe

    return sampler
