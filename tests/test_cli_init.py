"""`train --init CKPT`: a warm start from a checkpoint's weights, with a fresh optimiser and schedule.

What a later sitting uses to continue a shipped model when the untracked run folder is gone."""

import pytest
import torch
from cli_helpers import TINY, assert_refused, main_exit, tiny_run


@pytest.fixture(scope="module")
def ddpm_checkpoint(tmp_path_factory):
    return tiny_run("ddpm", tmp_path_factory.mktemp("ddpm_run"))


def test_the_new_run_starts_from_the_checkpoints_weights_and_records_them(ddpm_checkpoint, tmp_path, capsys):
    """Guards: --init parsed but ignored (fresh weights), or its origin lost from the metadata."""
    code, err = main_exit(capsys, "train", "ddpm", *TINY, "--max_steps", "1", "--lr", "1e-12", "--warmup_steps", "0",
                          "--save_dir", tmp_path, "--init", ddpm_checkpoint)
    assert code == 0, err
    start = torch.load(ddpm_checkpoint, weights_only=True)
    after = torch.load(tmp_path / "ddpm_uncond.pt", weights_only=True)
    for name, value in start["state_dict"].items():  # one step at lr 1e-12 moves nothing visible
        torch.testing.assert_close(after["state_dict"][name], value, atol=1e-6, rtol=0)
    assert after["metadata"]["init"] == {"checkpoint": str(ddpm_checkpoint), "recipe": start["metadata"]["recipe"],
                                         "step": start["metadata"]["step"]}
    assert f"--init {ddpm_checkpoint}" in after["metadata"]["recipe"]


@pytest.mark.parametrize("extra, message", [
    (["--preset", "small"], "its model differs from this run's in depth, dim"),
    (["--resume", "x.pt"], "--init starts a new run from weights; it does not combine with --resume"),
])
def test_an_init_that_does_not_fit_is_refused_before_training(ddpm_checkpoint, tmp_path, capsys, extra, message):
    code, err = main_exit(capsys, "train", "ddpm", *TINY, "--max_steps", "1", "--save_dir", tmp_path / "out",
                          "--init", ddpm_checkpoint, *extra)
    assert_refused(code, err, message)
    assert not (tmp_path / "out").exists()


def test_an_init_of_another_kind_is_refused(ddpm_checkpoint, tmp_path, capsys):
    code, err = main_exit(capsys, "train", "flow", *TINY, "--max_steps", "1", "--save_dir", tmp_path / "out",
                          "--init", ddpm_checkpoint)
    assert_refused(code, err, "--init: ")
    assert "holds a 'ddpm' model, expected 'flow'" in err
    assert not (tmp_path / "out").exists()
