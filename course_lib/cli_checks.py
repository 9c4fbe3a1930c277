"""What both commands check before any work, and the one error they report: :class:`UsageError`.

The library's own checkers (inputs, checkpoints, devices) raise library errors; :func:`usage`
turns each into the one line the command line prints, naming the option it came from.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from . import checkpoint
from .inputs import ChoiceError, InputError


class UsageError(Exception):
    """Raised for bad options; reported as one line with exit status 2."""


@contextmanager
def usage(options: dict[str, str] | None = None, prefix: str = ""):
    """Inside: a library error becomes a UsageError, naming the option it came from.

    ``options`` maps the library's argument names to the options that set them ({"num_steps": "--steps"});
    an InputError of one of them reads ``--steps 1001: reason``; any other error is ``prefix`` + its text.
    """
    options = options or {}
    try:
        yield
    except InputError as error:
        option = options.get(error.name)
        raise UsageError(error.for_option(option) if option else f"{prefix}{error}") from error
    except ChoiceError as error:
        raise UsageError(error.for_options(options)) from error
    except ValueError as error:  # CheckpointError, DeviceError, a DiTConfig or TrainConfig that refuses
        raise UsageError(f"{prefix}{error}") from error


def resolve_device(name: str | None) -> torch.device:
    with usage(prefix="--"):  # DeviceError's messages start with "device"
        return checkpoint.resolve_device(name)


def forbid(args, kind_ok: tuple[str, ...], *names: str) -> None:
    for name in names:
        if getattr(args, name) is not None and args.kind not in kind_ok:
            raise UsageError(f"--{name} applies to {'/'.join(kind_ok)} models, not {args.kind}")


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable_dir(path: Path, option: str) -> None:
    """``path`` must be a directory we can create or write into; nothing is created here."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, so the directory cannot be made")
    check_can_write_into(existing, f"{option} {path}")


def check_can_write_into(folder: Path, what: str) -> None:
    """Refuse a folder where no file can be created (``os.access`` says yes to root everywhere)."""
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        with tempfile.TemporaryFile(dir=folder):  # a real file, deleted at once, settles it
            pass
    except OSError as error:
        raise UsageError(f"{what}: cannot create files in {folder} ({error.strerror})") from error


def check_output_image(output: Path) -> None:
    """``--output`` must name a .jpg or .png file in an existing folder we can write into."""
    if output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise UsageError(f"--output {output}: use a .jpg or .png file name")
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory; name an image file")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: directory {output.parent} does not exist")
    check_can_write_into(output.parent, f"--output {output}")
