"""``train flow --reflow BASE``: checked up front, trains on its base's pairs, resumes on the same pairs."""

import pytest
import torch
from cli_helpers import TINY, main_exit, run

from course_lib import checkpoint, reflow
from course_lib.cli import reflow as cli_reflow

TINY_NO_PRESET = [a for a in TINY if a not in ("--preset", "tiny")]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    assert run("train", "flow", *TINY, "--save_dir", folder) == 0
    return folder / "flow_cfg.pt"


def test_reflow_writes_a_flow_checkpoint_that_records_its_pairs_and_samples(base, tmp_path):
    save = tmp_path / "re"
    assert run("train", "flow", "--reflow", base, "--num_pairs", 40, *TINY_NO_PRESET, "--save_dir", save) == 0
    payload = checkpoint.load_checkpoint(save / "flow_reflow.pt", kind="flow")
    meta = payload["metadata"]
    assert meta["reflow"] == str(base) and meta["num_pairs"] == 40 and meta["pair_steps"] == reflow.PAIR_STEPS
    assert meta["guidance_scale"] == 1.0 and meta["preset"] == "tiny" and meta["images"] == 40
    assert payload["model_config"] == checkpoint.load_checkpoint(base, kind="flow")["model_config"]
    saved = torch.load(save / cli_reflow.PAIRS_FILE, weights_only=True)
    assert saved["noise"].shape == saved["images"].shape == (40, 1, 32, 32) and saved["labels"].shape == (40,)
    out = tmp_path / "one_step.png"
    assert run("infer", "flow", "--ckpt", save / "flow_reflow.pt", "--steps", 1, "--num_images", 4,
               "--output", out, "--device", "cpu") == 0
    assert out.stat().st_size > 0


def test_the_pairs_are_those_the_base_ode_draws_from_the_stored_noise(base, tmp_path):
    """Guards: pairs stored out of step with their noise, or drawn with another guidance than the base's."""
    save = tmp_path / "re"
    assert run("train", "flow", "--reflow", base, "--num_pairs", 6, *TINY_NO_PRESET, "--save_dir", save) == 0
    saved = torch.load(save / cli_reflow.PAIRS_FILE, weights_only=True)
    noise, images = saved["noise"], saved["images"]
    model, payload = checkpoint.load_model(base, "flow")
    scale = checkpoint.sampling_settings(payload)["guidance_scale"]
    redrawn = reflow.flow.sample_ode(model, noise, saved["labels"], num_steps=reflow.PAIR_STEPS,
                                     guidance_scale=scale)
    assert torch.allclose(redrawn, images, atol=1e-5)


def test_a_resume_continues_on_the_saved_pairs_and_refuses_other_pairs(base, tmp_path, capsys):
    save, args = tmp_path / "re", ["--reflow", base, "--num_pairs", 40, *TINY_NO_PRESET, "--save_dir", tmp_path / "re"]
    assert run("train", "flow", *args) == 0
    pairs = torch.load(save / cli_reflow.PAIRS_FILE, weights_only=True)
    longer = [a if a != "1" else "2" for a in map(str, args)]  # --epochs 2
    assert run("train", "flow", *longer, "--resume", save / "flow_reflow.pt") == 0
    again = torch.load(save / cli_reflow.PAIRS_FILE, weights_only=True)
    assert all(torch.equal(again[field], pairs[field]) for field in ("noise", "images", "labels"))
    other = [a if a != "40" else "30" for a in longer]
    code, err = main_exit(capsys, "train", "flow", *other, "--resume", save / "flow_reflow.pt")
    assert code == 2 and "num_pairs 40 -> 30" in err and err.count("\n") == 1


@pytest.mark.parametrize("options, message", [
    (["--num_pairs", "5"], "--num_pairs applies only with --reflow"),
    (["--pair_steps", "2"], "--pair_steps applies only with --reflow"),
    (["--reflow", "missing.pt"], "--reflow: checkpoint missing.pt does not exist"),
    (["--reflow", "BASE", "--preset", "tiny"], "--preset: with --reflow the model is the base checkpoint's"),
    (["--reflow", "BASE", "--patch_size", "2"], "--patch_size: with --reflow"),
    (["--reflow", "BASE", "--img_size", "28"], "--img_size 28: the base checkpoint"),
])
def test_bad_reflow_options_are_one_line_before_any_work(base, tmp_path, capsys, options, message):
    options = [str(base) if o == "BASE" else o for o in options]
    code, err = main_exit(capsys, "train", "flow", *options, *TINY_NO_PRESET, "--save_dir", tmp_path / "x")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_reflow_is_refused_for_ddpm_models(base, tmp_path, capsys):
    code, err = main_exit(capsys, "train", "cfg", "--reflow", base, *TINY_NO_PRESET, "--save_dir", tmp_path / "x")
    assert code == 2 and "--reflow applies to flow models, not cfg" in err
