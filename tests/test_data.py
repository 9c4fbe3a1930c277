"""MNIST loading and the MD5 guard. Corruption is tested on temporary copies only."""

import shutil

import pytest
import torch

from course_lib import data


@pytest.fixture(scope="module")
def real_raw():
    root = data.ensure_mnist()
    return data.raw_dir(root)


def test_real_files_pass_md5(real_raw):
    assert data.check_raw_files(real_raw) == []


def test_images_are_padded_to_32_and_scaled_to_minus_one_one():
    images, labels = data.load_mnist(train=False, limit=64)
    assert images.shape == (64, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert images.min() == -1.0 and images.max() == 1.0
    # the 2-pixel border added by padding is background
    assert (images[:, :, :2, :] == -1).all() and (images[:, :, :, -2:] == -1).all()
    assert set(labels.tolist()) <= set(range(10))


def test_fast_mode_keeps_a_small_subset():
    images, labels = data.load_mnist(train=True)
    assert len(images) == data.FAST_SUBSET == len(labels)


def test_corrupt_copy_is_rejected_and_never_used(real_raw, tmp_path):
    copy = tmp_path / "MNIST" / "raw"
    copy.mkdir(parents=True)
    for name in data.MNIST_MD5:
        shutil.copyfile(real_raw / name, copy / name)
    assert data.check_raw_files(copy) == []
    victim = copy / "t10k-labels-idx1-ubyte"
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 0xFF  # flip one label byte
    victim.write_bytes(bytes(raw))
    problems = data.check_raw_files(copy)
    assert len(problems) == 1 and "t10k-labels-idx1-ubyte is corrupt" in problems[0]
    with pytest.raises(data.MNISTUnavailable, match="corrupt.*Delete"):
        data.load_mnist(train=False, root=tmp_path)
    assert victim.read_bytes() == bytes(raw)  # reported, not silently replaced


def test_missing_data_offline_says_what_to_do(tmp_path):
    with pytest.raises(data.MNISTUnavailable, match="python -m course_lib.data"):
        data.load_mnist(train=False, root=tmp_path, allow_fetch=False)


def test_to_model_range_resizes_other_sizes():
    square = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    out = data.to_model_range(square, size=16)
    assert out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.ones(2, 1, 16, 16))
