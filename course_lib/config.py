"""Run-wide settings: fast mode, the default device, thread count and paths.

This is the only module that reads ``COURSE_FAST``; everything else asks :data:`FAST`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"

# Fast mode shrinks step counts, data and models so each notebook runs in well under a minute
# on 2 CPU cores. The test suite sets it; learners normally leave it off.
FAST: bool = os.environ.get("COURSE_FAST", "0").strip().lower() not in ("", "0", "false", "no")


def data_root() -> Path:
    """Where MNIST lives: ``$COURSE_DATA`` if set, else ``data/`` at the repository root."""
    return Path(os.environ.get("COURSE_DATA", REPO_ROOT / "data")).expanduser()


def default_device() -> torch.device:
    """CUDA when present, else CPU. Chosen once by the caller and passed down."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads() -> int:
    """Use one intra-op thread per physical core we may use.

    PyTorch's default can exceed the cores a container grants (it counts the host's), and
    oversubscribed threads make small matrix products several times slower.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        available = os.cpu_count() or 1
    threads = max(1, min(available, torch.get_num_threads()))
    torch.set_num_threads(threads)
    return threads


def pick(default, fast):
    """Return ``fast`` in fast mode and ``default`` otherwise (for notebook settings cells)."""
    return fast if FAST else default


# progress bars stay quiet where nobody watches them (CI sets CI=true)
QUIET: bool = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
