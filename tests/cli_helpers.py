"""What the command-line tests share: the CLI run in a subprocess or in this process, and a tiny training run."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib import cli
from course_lib.cli.train import CHECKPOINT_NAMES

TINY = ["--preset", "tiny", "--epochs", "1", "--batch_size", "32", "--limit", "64", "--device", "cpu"]


def call(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m course_lib ...`` in a real subprocess, as a learner runs it."""
    return subprocess.run([sys.executable, "-m", "course_lib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def run(*args) -> int:
    """Run the command line in this process (faster than a subprocess); return its exit status."""
    try:
        return cli.main([str(arg) for arg in args])
    except SystemExit as stopped:
        return stopped.code


def main_exit(capsys, *args) -> tuple[int, str]:
    """Run the command line in this process; return (exit status, stderr)."""
    capsys.readouterr()
    code = run(*args)
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    """Exit status 2 and one line on stderr that contains each of ``fragments``, no traceback."""
    assert code == 2, err
    assert all(fragment in err for fragment in fragments), err
    assert err.count("\n") == 1 and err.count("error:") == 1 and "Traceback" not in err, err


def tiny_run(kind: str, folder: Path, *extra, max_steps: int = 2, subprocess_run: bool = False) -> Path:
    """Train a tiny model of ``kind`` for ``max_steps`` steps into ``folder``; return its checkpoint."""
    args = ["train", kind, *TINY, "--max_steps", max_steps, "--save_dir", folder, *extra]
    if subprocess_run:
        result = call(*args)
        assert result.returncode == 0, result.stderr
    else:
        assert run(*args) == 0
    return folder / CHECKPOINT_NAMES[kind]


def snapshot(*folders: Path) -> dict:
    """Every file under ``folders``: links by target, files by content hash (compare before and after a refusal)."""
    seen = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                seen[path] = ("link", os.readlink(path))
            elif path.is_file():
                seen[path] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


# A subprocess that runs the real command line (``python -c DRIVER <argv>``) with hooks that make the timing of a
# signal certain; each writes the file named by MARKER before it sleeps, so a test knows when to send it:
#   PAUSE_AT_LOSS=n  sleeps inside the n-th loss evaluation (that is, during optimiser step n);
#   STALL_WRITE=n    writes the first half of the n-th checkpoint file (torch.save), flushes it, and sleeps there;
#   STALL_IMAGE=1    writes half of an image's temporary ``.partial`` file, flushes it, and sleeps there.
DRIVER = """
import io, os, signal, sys, time
from pathlib import Path

import pytest
import torch
from course_lib import cli, ddpm

# a shell that starts a job in the background without job control (nohup ... &) hands it SIGINT ignored,
# and Python keeps it ignored: restore what a terminal's Ctrl-C meets, so the test does not depend on its parent
signal.signal(signal.SIGINT, signal.default_int_handler)

marker = Path(os.environ["MARKER"])
pause_at, stall_write = int(os.environ.get("PAUSE_AT_LOSS", 0)), int(os.environ.get("STALL_WRITE", 0))
stall_image = bool(os.environ.get("STALL_IMAGE"))
real_loss, real_save, real_write_bytes = ddpm.loss, torch.save, Path.write_bytes
count = {"loss": 0, "save": 0}

def stall(path, data):
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
    marker.write_text("writing " + str(path))
    time.sleep(600)

def loss(*args, **kwargs):
    count["loss"] += 1
    if count["loss"] == pause_at:
        marker.write_text("training")
        time.sleep(600)
    return real_loss(*args, **kwargs)

def save(obj, f):
    count["save"] += 1
    if count["save"] == stall_write:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        stall(f, buffer.getvalue())
    return real_save(obj, f)

def write_bytes(self, data):
    if stall_image and self.name.endswith(".partial"):
        stall(self, data)
    return real_write_bytes(self, data)

ddpm.loss, torch.save, Path.write_bytes = loss, save, write_bytes
sys.exit(cli.main(sys.argv[1:]))
"""


def start_driver(tmp_path, argv, **hooks):
    """Start ``python -c DRIVER argv`` with ``hooks`` (PAUSE_AT_LOSS=..., STALL_WRITE=..., STALL_IMAGE=...) and
    wait until it reaches its hook; returns ``(process, what the marker says)``."""
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "MARKER": str(marker), "CI": "true", "OMP_NUM_THREADS": "1",
           **{k: str(v) for k, v in hooks.items()}}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, argv)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # a loaded 2-core machine can take minutes to import torch
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before the hook: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the run never reached the hook")
        time.sleep(0.2)
    return process, marker.read_text()
