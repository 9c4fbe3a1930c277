"""What the command-line tests share: the CLI run in a subprocess or in this process, and a tiny training run."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

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
