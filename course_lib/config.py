"""Run-wide settings: fast mode, the default device, thread count and paths; noise; the two input checks.

This is the only module that reads ``COURSE_FAST``; everything else asks :data:`FAST`.
"""

from __future__ import annotations

import math
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


def randn(shape, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Gaussian noise of ``shape`` on ``device``, drawn on the generator's own device.

    A CPU generator draws the same numbers whatever the model runs on, so a seed gives the same
    images on a CPU and a GPU. Every sampler's noise comes from here (or from the caller).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r} (a device goes in device=)")
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


# ---------------------------------------------------------------------------- input checks
# Each public function checks its inputs once, on entry, with these two; loops and forward passes never re-check.
def check_number(name: str, value, low: float = 0.0, high: float = math.inf, *, below_high: bool = False) -> float:
    """``value`` as a float if it is a finite number in [low, high] (or [low, high)), else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    too_high = value >= high if below_high else value > high
    if not math.isfinite(value) or value < low or too_high:
        upper = f", {high:g}{')' if below_high else ']'}" if math.isfinite(high) else ", ∞)"
        raise ValueError(f"{name} must lie in [{low:g}{upper}, got {value!r}")
    return float(value)


def check_count(name: str, value, maximum: int | None = None) -> int:
    """``value`` if it is an integer in [1, maximum] (no maximum: any positive integer); else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1 or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must lie in [1, {maximum}], got {value}" if maximum is not None
                         else f"{name} must be a positive integer, got {value}")
    return value
