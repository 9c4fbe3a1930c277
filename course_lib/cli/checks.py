"""What both commands check before any work, and the one error they report: :class:`UsageError`.

Option values are checked by their argparse types (``course_lib.cli``); what is checked here needs more
than one option or the file system. Errors the library raises on what the options describe (a checkpoint
that does not load, a device that is not there) become one line through :func:`usage`.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import checkpoint

# the caps on sizes, each far past what the book uses, so that a typo fails at once instead of after hours
MAX_STEPS = 1000  # sampler steps, every sampler: the quality curves are flat long before (DDIM: also <= T)
MAX_IMAGES = 1024  # infer's grid: 32 x 32 images, sampled in one batch (about 0.45 MB of memory each)
MAX_IMG_SIZE = 64  # MNIST's digits are 28 pixels; the training set at 64 already takes 1 GB of memory
MAX_PATCHES = 256  # the DiT's tokens per image: attention's memory grows with their square
MAX_BATCH = 4096
MAX_PAIRS = 120_000  # reflow pairs: twice MNIST's training set, 1 GB at 32 pixels


class UsageError(Exception):
    """Raised for bad options; reported as one line with exit status 2."""


@contextmanager
def usage(prefix: str = ""):
    """Inside: a library error (a ValueError, TypeError) becomes a UsageError: ``prefix`` + its text."""
    try:
        yield
    except (ValueError, TypeError) as error:  # CheckpointError, DeviceError, a DiTConfig or TrainConfig that refuses
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


def check_output_image(output: Path, ckpt: Path | None = None, overwrite: bool = False) -> None:
    """``--output`` must name a .jpg or .png file in an existing folder we can write into.

    An existing file there is replaced only if it is a grid ``infer`` wrote (tagged by
    :func:`course_lib.plotting.save_grid`), or another PNG/JPEG image with ``overwrite``; never the
    checkpoint ``ckpt`` itself, nor a file that is not an image.
    """
    from ..plotting import grid_file_kind

    if output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise UsageError(f"--output {output}: use a .jpg or .png file name")
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory; name an image file")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: directory {output.parent} does not exist")
    if output.exists():
        if ckpt is not None and ckpt.exists() and os.path.samefile(output, ckpt):
            raise UsageError(f"--output {output}: is the checkpoint --ckpt {ckpt}; name another file")
        found = grid_file_kind(output)
        if found == "other":
            raise UsageError(f"--output {output}: exists and is not a PNG or JPEG image, so it is not replaced "
                             f"(not even with --overwrite); name another file")
        if found == "image" and not overwrite:
            raise UsageError(f"--output {output}: exists and is not a grid infer wrote; replace it with "
                             f"--overwrite or name another file")
    check_can_write_into(output.parent, f"--output {output}")


LOCK_FILE = ".simplest-diffusion.lock"  # in a folder while a run writes into it; removed when the run ends


@contextmanager
def run_lock(folder: Path, option: str, wait: bool = False):
    """Hold ``folder``'s lock for the whole run (``fcntl.flock`` on :data:`LOCK_FILE`): a second run into
    the folder is refused at once with one line naming the holder's pid. The folder is made if need be;
    on the way out the lock file goes, and so does any folder made here that is still empty. Inside,
    temporaries a killed run left (``*.pt.*.partial``) are removed: no other writer can own them.
    With ``wait``, a held lock is waited for instead (for a moment's write, such as a RESULTS.md row).
    """
    made = [parent for parent in [folder, *folder.parents] if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    try:
        handle = acquire(lock, option, folder, wait)
    except BaseException:
        remove_empty(made)
        raise
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()}: {' '.join(sys.argv)}"[:300].replace("\n", " ").encode())
        remove_stale_partials(folder)
        yield
    finally:
        lock.unlink(missing_ok=True)  # before closing: a run waiting on this inode sees it gone and retries
        os.close(handle)
        remove_empty(made)


def acquire(lock: Path, option: str, folder: Path, wait: bool = False) -> int:
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 300).decode("utf-8", "replace").strip() or "a run that is just starting"
            os.close(handle)
            raise UsageError(f"{option} {folder}: another run is writing into it ({holder}); wait for it to end "
                             f"or choose another {option}") from None
        try:
            if os.stat(lock).st_ino == os.fstat(handle).st_ino:  # still the file at that name: ours
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)  # the holder removed it as we opened it: take the new one


def remove_stale_partials(folder: Path) -> None:
    """Remove the checkpoints' temporaries a killed run left in ``folder`` (only the lock's holder may)."""
    for pattern in (f"*.pt{checkpoint.PARTIAL}", f"*.pt.*{checkpoint.PARTIAL}"):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)


def remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def reported_writes():
    """Inside: a WriteError (a full disk, a folder gone) becomes one line that names the file; the file
    itself is as it was, since every write goes through :func:`checkpoint.write_atomically`."""
    try:
        yield
    except checkpoint.WriteError as error:
        raise UsageError(f"could not write {error.filename}: {error.strerror}; the file there before (if any) "
                         f"is unchanged") from error
