"""What every benchmark shares: a description of the machine, appending to RESULTS.md, the harness sampler."""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

import torch

from course_lib import checkpoint
from course_lib.cli import terminate_as_interrupt
from course_lib.cli.checks import UsageError, check_can_write_into, reported_writes, run_lock

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
    with run_lock(RESULTS.parent, "RESULTS.md", wait=True):  # one appender at a time, the file whole throughout
        checkpoint.write_text_atomically(RESULTS, (RESULTS.read_text() if RESULTS.exists() else "") + block)


def main_of(prog: str, body) -> int:
    """Run ``body()`` as the command line runs its commands: a UsageError is one line and exit status 2,
    Ctrl-C (or SIGTERM) one line and 130. Each benchmark checks every path and option, and loads every
    checkpoint, before it samples; it changes a checkpoint last (:class:`CheckpointUpdate`)."""
    try:
        with terminate_as_interrupt():
            body()
    except UsageError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return 2
    except KeyboardInterrupt as error:
        sys.stderr.write(f"{prog}: {error or 'interrupted: no checkpoint was changed'}\n")
        return 130
    return 0


def check_output_file(path: Path | None, option: str, overwrite: bool = False) -> None:
    """A file the benchmark will write (``--json``): its folder exists and takes files; an existing file
    is replaced only with ``--overwrite``."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory; name a file")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: directory {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise UsageError(f"{option} {path}: exists; replace it with --overwrite or name another file")
    check_can_write_into(path.parent, f"{option} {path}")


class CheckpointUpdate:
    """A checkpoint a benchmark will rewrite at its very end: checked writable at the start, its folder
    locked for the whole run (as ``train`` locks its ``--save_dir``), and written only if the file is
    still byte for byte what was measured, atomically. Use as a context manager around the whole run."""

    def __init__(self, path: Path, option: str = "--ckpt"):
        self.path, self.option = path, option
        if not path.is_file():
            raise UsageError(f"{option} {path}: does not exist")
        check_can_write_into(path.parent, f"{option} {path} (it is rewritten at the end)")

    def __enter__(self):
        self.lock = run_lock(self.path.parent, self.option)
        self.lock.__enter__()
        self.sha256 = checkpoint.file_sha256(self.path)
        return self

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)

    def write(self, payload: dict) -> None:
        if checkpoint.file_sha256(self.path) != self.sha256:
            raise UsageError(f"{self.option} {self.path}: changed on disk while this ran; it is left as it is now "
                             f"(run again to store the new result)")
        with reported_writes():
            checkpoint.save_checkpoint(self.path, payload)


def harness(sample, img_size: int = 32):
    """A :class:`course_lib.cli.sampling.Sampler` as the quality harness wants it: ``(n, generator) ->
    (images, labels, nfe)``; a conditional one draws the digits 0-9 in turn, at its guidance scale."""
    def sampler(n: int, generator: torch.Generator):
        labels = torch.arange(n) % 10 if sample.conditional else None
        return sample((n, 1, img_size, img_size), labels, generator), labels, sample.nfe

    return sampler
