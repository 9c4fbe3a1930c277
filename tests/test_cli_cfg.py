"""`train cfg` / `infer cfg`: a tiny run works; bad labels, guidance scales and checkpoints exit 2."""

import subprocess
import sys

import pytest
import torch

from course_lib import cli, config, training


def call(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "course_lib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def exit_status(capsys, *args):
    """Run the command line in this process (faster than a subprocess); return (status, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        cli.main([str(arg) for arg in args])
    return stopped.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def cfg_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg_run")
    result = call("train", "cfg", "--preset", "tiny", "--epochs", "1", "--batch_size", "32", "--max_steps", "3",
                  "--limit", "64", "--p_uncond", "0.2", "--save_dir", folder, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return folder / cli.CHECKPOINT_NAMES["cfg"]


def test_train_cfg_records_p_uncond_and_uses_cross_attention(cfg_checkpoint):
    payload = training.load_checkpoint(cfg_checkpoint, kind="cfg")
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train cfg --preset tiny")
    assert meta["p_uncond"] == 0.2 and meta["prediction"] == "v"
    assert payload["model_config"]["cross_attention"] is True
    assert payload["model_config"]["cond_tokens"] >= 2
    assert payload["state_dict"]["label_tokens"].shape[0] == 11  # ten digits and NULL_LABEL


def test_infer_cfg_label_4_writes_a_grid(cfg_checkpoint, tmp_path):
    out = tmp_path / "four.png"
    result = call("infer", "cfg", "--ckpt", cfg_checkpoint, "--output", out, "--label", "4", "--num_images", "4",
                  "--steps", "2", "--guidance_scale", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "of digit 4" in result.stdout and "guidance 3" in result.stdout
    from PIL import Image
    assert Image.open(out).size == (2 * 34 + 2, 2 * 34 + 2)


@pytest.mark.parametrize("args, message", [
    (["--label", "10"], "must be a digit 0-9, got 10"),
    (["--label", "-1"], "must be a digit 0-9, got -1"),
    (["--label", "four"], "must be a digit 0-9, got 'four'"),
    (["--label", "4.5"], "must be a digit 0-9, got '4.5'"),
    (["--guidance_scale", "nan"], "must be a finite number"),
    (["--guidance_scale", "inf"], "must be a finite number"),
    (["--guidance_scale", "two"], "must be a number, got 'two'"),
    (["--guidance_scale", "-1"], "--guidance_scale -1.0: must lie in [0, 20]"),
    (["--guidance_scale", "1e6"], "--guidance_scale 1000000.0: must lie in [0, 20]"),
])
def test_bad_labels_and_guidance_scales_exit_2_and_write_nothing(cfg_checkpoint, tmp_path, capsys, args, message):
    out = tmp_path / "grid.png"
    status, stderr = exit_status(capsys, "infer", "cfg", "--ckpt", cfg_checkpoint, "--output", out, "--steps", "2",
                                 *args)
    assert status == 2, stderr
    assert message in stderr
    assert stderr.count("error:") == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_unconditional_checkpoint_given_to_infer_cfg_exits_2(tmp_path):
    out = tmp_path / "grid.png"  # a real subprocess once, as a learner would run it
    result = call("infer", "cfg", "--ckpt", config.CHECKPOINT_DIR / "ddpm_uncond.pt", "--output", out,
                  "--label", "4", "--steps", "2")
    assert result.returncode == 2
    assert "holds a 'ddpm' model, expected 'cfg'" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_cfg_checkpoint_relabelled_as_unconditional_is_refused(cfg_checkpoint, tmp_path, capsys):
    """A checkpoint whose kind says cfg but whose DiT has no cross-attention cannot be sampled with labels."""
    payload = torch.load(cfg_checkpoint, weights_only=True)
    payload["model_config"] = {**payload["model_config"], "cross_attention": False}
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    out = tmp_path / "grid.png"
    status, stderr = exit_status(capsys, "infer", "cfg", "--ckpt", forged, "--output", out, "--label", "4")
    assert status == 2
    assert "must use cross-attention" in stderr and not out.exists()


def test_label_and_guidance_are_refused_for_an_unconditional_model(tmp_path, capsys):
    out = tmp_path / "grid.png"
    for args in (["--label", "4"], ["--guidance_scale", "2"]):
        status, stderr = exit_status(capsys, "infer", "ddpm", "--ckpt", config.CHECKPOINT_DIR / "ddpm_uncond.pt",
                                     "--output", out, *args)
        assert status == 2
        assert "applies to cfg/flow models, not ddpm" in stderr
    assert not out.exists()


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_bad_p_uncond_exits_2(tmp_path, capsys, value):
    status, stderr = exit_status(capsys, "train", "cfg", "--p_uncond", value, "--save_dir", tmp_path / "out")
    assert status == 2 and stderr.count("error:") == 1 and "p_uncond" in stderr
    assert not (tmp_path / "out").exists()
