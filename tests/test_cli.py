"""The command line: bad options exit 2 with one message and write nothing; a tiny run works."""

import subprocess
import sys

import pytest
import torch

from course_lib import cli, data, training


def call(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "course_lib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--batch_size", "0"], "must be a positive integer"),
    (["--epochs", "-3"], "must be a positive integer"),
    (["--img_size", "0"], "must be a positive integer"),
    (["--patch_size", "5"], "does not divide img_size"),
    (["--channels", "3"], "MNIST has 1 channel"),
    (["--lr", "0"], "must be positive"),
    (["--resume", "nowhere.pt"], "does not exist"),
])
def test_bad_train_options_exit_2_and_write_nothing(tmp_path, args, message):
    result = call("train", "ddpm", "--save_dir", tmp_path / "out", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("error:") == 1
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    result = call("train", "ddpm", "--preset", "tiny", "--epochs", "1", "--batch_size", "32",
                  "--max_steps", "3", "--limit", "64", "--save_dir", folder, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return folder / cli.CHECKPOINT_NAMES["ddpm"]


def test_train_then_infer_writes_a_grid(tiny_checkpoint, tmp_path):
    payload = training.load_checkpoint(tiny_checkpoint, kind="ddpm")
    assert payload["metadata"]["recipe"].startswith("python -m course_lib train ddpm --preset tiny")
    out = tmp_path / "grid.png"
    result = call("infer", "ddpm", "--ckpt", tiny_checkpoint, "--output", out, "--num_images", "4",
                  "--steps", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    from PIL import Image
    assert Image.open(out).size == (2 * 34 + 2, 2 * 34 + 2)  # a 2 x 2 grid, 2-pixel padding


@pytest.mark.parametrize("problem", ["missing", "corrupt", "wrong_kind", "bad_dir", "bad_suffix"])
def test_bad_infer_options_exit_2_and_write_nothing(tiny_checkpoint, tmp_path, problem):
    ckpt, out = tiny_checkpoint, tmp_path / "grid.jpg"
    if problem == "missing":
        ckpt = tmp_path / "missing.pt"
    elif problem == "corrupt":
        ckpt = tmp_path / "corrupt.pt"
        ckpt.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    elif problem == "wrong_kind":
        ckpt = tmp_path / "judge.pt"
        torch.save({"format": training.CHECKPOINT_FORMAT, "kind": "judge"}, ckpt)
    elif problem == "bad_dir":
        out = tmp_path / "no" / "such" / "grid.jpg"
    else:
        out = tmp_path / "grid.txt"
    result = call("infer", "ddpm", "--ckpt", ckpt, "--output", out, "--steps", "2")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_help_lists_every_option_with_its_default():
    text = call("train", "ddpm", "--help").stdout
    for option in ("--img_size", "--channels", "--patch_size", "--epochs", "--batch_size", "--lr", "--seed",
                   "--save_dir", "--save_freq", "--lr_decay_step", "--lr_decay_rate", "--resume", "--device"):
        assert option in text
    assert text.count("(default:") >= 17
    text = call("infer", "ddpm", "--help").stdout
    for option in ("--ckpt", "--output", "--num_images", "--sampler", "--steps", "--seed"):
        assert option in text


def test_data_constants():
    assert data.NULL_LABEL == data.NUM_CLASSES == 10
