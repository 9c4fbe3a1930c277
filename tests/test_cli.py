"""The command line: bad options exit 2 with one message and write nothing; a tiny run works."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_refused, call, main_exit

from course_lib import checkpoint, cli, data
from course_lib.cli.train import CHECKPOINT_NAMES


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
    return folder / CHECKPOINT_NAMES["ddpm"]


def test_train_then_infer_writes_a_grid(tiny_checkpoint, tmp_path):
    payload = checkpoint.load_checkpoint(tiny_checkpoint, kind="ddpm")
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
        torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "kind": "judge"}, ckpt)
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


def test_the_null_label_cannot_be_asked_for(capsys, tmp_path):
    """Label NULL_LABEL (= 10) means "no label" inside the model; --label takes digits 0-9 only."""
    out = tmp_path / "grid.png"
    code, err = main_exit(capsys, "infer", "cfg", "--ckpt", tmp_path / "x.pt", "--output", out,
                          "--label", str(data.NULL_LABEL))
    assert code == 2 and "must be a digit 0-9, got 10" in err and err.count("\n") == 1
    assert cli.digit(str(data.NUM_CLASSES - 1)) == 9 and not out.exists()


# ---------------------------------------------------------------------------- every failure: one line, exit 2
@pytest.fixture(scope="module")
def broken_checkpoints(tiny_checkpoint, tmp_path_factory):
    """Copies of the tiny checkpoint, each broken in one way."""
    folder = tmp_path_factory.mktemp("broken")
    payload = torch.load(tiny_checkpoint, weights_only=True)
    meta = payload["metadata"]
    variants = {
        "no_metadata": {k: v for k, v in payload.items() if k != "metadata"},
        "unknown_prediction": {**payload, "metadata": {**meta, "prediction": "x0"}},
        "no_schedule": {**payload, "metadata": {k: v for k, v in meta.items() if k != "schedule"}},
        "img_size_64": {**payload, "model_config": {**payload["model_config"], "img_size": 64}},
        "depth_3": {**payload, "model_config": {**payload["model_config"], "depth": 3}},
    }
    poisoned = dict(payload["state_dict"])
    poisoned["patch_embed.weight"] = poisoned["patch_embed.weight"].clone()
    poisoned["patch_embed.weight"][0, 0] = float("inf")
    variants["inf_weights"] = {**payload, "state_dict": poisoned}
    paths = {}
    for name, variant in variants.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(variant, paths[name])
    paths["truncated"] = folder / "truncated.pt"
    paths["truncated"].write_bytes(tiny_checkpoint.read_bytes()[:5000])
    return paths


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed: must lie in [0, 2**32), got -1"),
    (["--seed", str(2**32)], "--seed: must lie in [0, 2**32), got 4294967296"),
    (["--seed", "1.5"], "--seed: must be an integer"),
    (["--lr", "inf"], "--lr: must be a finite number, got inf"),
    (["--lr", "nan"], "--lr: must be a finite number, got nan"),
    (["--lr=-1e-3"], "--lr: must be positive"),
    (["--device", "mps"], "--device mps: the book runs on cpu or cuda, not mps"),
    (["--device", "meta"], "--device meta: the book runs on cpu or cuda, not meta"),
    (["--device", "nonsense"], "--device 'nonsense' is not a device"),
    (["--p_uncond", "0.1"], "--p_uncond applies to cfg/flow models, not ddpm"),
    (["--unknown_option", "1"], "unrecognized arguments: --unknown_option"),
])
def test_bad_train_options_are_one_line_in_process(capsys, tmp_path, args, message):
    code, err = main_exit(capsys, "train", "ddpm", "--save_dir", tmp_path / "out", *args)
    assert_refused(code, err, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_absent_cuda_is_refused(capsys, tmp_path, tiny_checkpoint):
    code, err = main_exit(capsys, "train", "ddpm", "--save_dir", tmp_path / "out", "--device", "cuda")
    assert_refused(code, err, "--device cuda asked for CUDA, which is not available here")
    code, err = main_exit(capsys, "infer", "ddpm", "--ckpt", tiny_checkpoint, "--output", tmp_path / "a.png",
                          "--device", "cuda:1")
    assert_refused(code, err, "--device cuda:1 asked for CUDA")
    assert not (tmp_path / "out").exists() and not (tmp_path / "a.png").exists()


def test_save_dir_that_cannot_hold_a_checkpoint_is_refused_before_training(capsys, tmp_path, monkeypatch):
    from course_lib import data as data_module

    monkeypatch.setattr(data_module, "load_mnist", lambda *a, **k: pytest.fail("data loaded before the check"))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    code, err = main_exit(capsys, "train", "ddpm", "--save_dir", a_file)
    assert_refused(code, err, "exists and is not a directory")
    code, err = main_exit(capsys, "train", "ddpm", "--save_dir", a_file / "inside")
    assert_refused(code, err, "is a file, so the directory cannot be made")
    assert a_file.read_text() == "not a folder"
    if Path("/proc").is_dir():  # root may write anywhere os.access can see; /proc refuses even root
        code, err = main_exit(capsys, "train", "ddpm", "--save_dir", "/proc/simplest-diffusion-test")
        assert_refused(code, err, "cannot create files in /proc")


@pytest.mark.parametrize("problem, message", [
    ("other_preset", "this run would differ from the saved one in dim 64 -> 128, depth 2 -> 6"),
    ("other_size", "this run would differ from the saved one in img_size 32 -> 28"),
    ("other_kind", "holds a 'ddpm' model, expected 'flow'"),
    ("truncated", "is not a readable checkpoint"),
    ("other_limit", "limit 64 -> 96"),
    ("other_prediction", "prediction 'v' -> 'eps'"),
    ("other_lr", "lr 0.001 -> 0.002"),
    ("other_batch_size", "batch_size 32 -> 16"),
    ("other_seed", "seed 0 -> 3"),
    ("other_schedule", "schedule 'linear' -> 'cosine'"),
    ("many", "batch_size 32 -> 16, lr 0.001 -> 0.003, seed 0 -> 4, prediction 'v' -> 'eps', "
             "schedule 'linear' -> 'cosine', limit 64 -> 48"),
    ("finished", "the run already finished 1 epoch; ask for more with --epochs"),
])
def test_a_resume_that_would_change_the_run_is_refused_before_any_work(
        capsys, tmp_path, monkeypatch, tiny_checkpoint, broken_checkpoints, problem, message):
    """--resume continues the same run or nothing: every differing field is named, nothing is written."""
    from course_lib import data as data_module

    monkeypatch.setattr(data_module, "load_mnist", lambda *a, **k: pytest.fail("data loaded before the check"))
    same = {"--preset": "tiny", "--epochs": "2", "--batch_size": "32", "--limit": "64", "--device": "cpu"}
    changed = {
        "other_preset": {"--preset": "book"}, "other_size": {"--img_size": "28"}, "other_limit": {"--limit": "96"},
        "other_prediction": {"--prediction": "eps"}, "other_lr": {"--lr": "2e-3"},
        "other_batch_size": {"--batch_size": "16"}, "other_seed": {"--seed": "3"},
        "other_schedule": {"--schedule": "cosine"}, "finished": {"--epochs": "1"},
        "many": {"--batch_size": "16", "--lr": "3e-3", "--seed": "4", "--prediction": "eps",
                 "--schedule": "cosine", "--limit": "48"},
    }.get(problem, {})
    kind = "flow" if problem == "other_kind" else "ddpm"
    resume = broken_checkpoints["truncated"] if problem == "truncated" else tiny_checkpoint
    options = [item for pair in {**same, **changed}.items() for item in pair]
    before = {p: p.read_bytes() for p in tiny_checkpoint.parent.iterdir()}
    code, err = main_exit(capsys, "train", kind, *options, "--save_dir", tmp_path / "out", "--resume", resume)
    assert_refused(code, err, message)
    assert not (tmp_path / "out").exists()
    assert {p: p.read_bytes() for p in tiny_checkpoint.parent.iterdir()} == before


@pytest.mark.parametrize("problem, message", [
    ("steps_too_many", ("--steps", "at most 1,000", "got 1,001")),  # the argparse type's cap, before DDIM's T
    ("steps_with_ddpm", "--steps does not apply to --sampler ddpm"),
    ("output_is_a_directory", "is a directory; name an image file"),
    ("seed_negative", "--seed: must lie in [0, 2**32), got -1"),
    ("seed_too_large", "--seed: must lie in [0, 2**32), got 4294967296"),
    ("device_mps", "--device mps: the book runs on cpu or cuda, not mps"),
    ("device_meta", "--device meta: the book runs on cpu or cuda, not meta"),
    ("no_metadata", "has no metadata, so how it was trained is unknown"),
    ("unknown_prediction", "unknown prediction type 'x0'"),
    ("no_schedule", "its metadata lacks schedule, needed to sample"),
    ("img_size_64", "its model config disagrees with its weights: img_size 64 in the config but 32 in the weights"),
    ("depth_3", "depth 3 in the config but 2 in the weights"),
    ("inf_weights", "holds NaN or Inf in ['patch_embed.weight']"),
    ("truncated", "is not a readable checkpoint"),
    ("guidance_for_ddpm", "carries no guide for autoguidance, so 1 (the model alone) is its only scale"),
    ("flow_sampler_for_ddpm", "--sampler heun: ddpm models sample with ddpm, ddim"),
])
def test_bad_infer_requests_are_one_line_and_write_nothing(capsys, tmp_path, tiny_checkpoint, broken_checkpoints,
                                                           problem, message):
    out = tmp_path / "grid.png"
    extra = {
        "steps_too_many": ["--steps", "1001"], "steps_with_ddpm": ["--sampler", "ddpm", "--steps", "5"],
        "seed_negative": ["--seed", "-1"], "seed_too_large": ["--seed", str(2**32)],
        "device_mps": ["--device", "mps"], "device_meta": ["--device", "meta"],
        "guidance_for_ddpm": ["--guidance_scale", "2"], "flow_sampler_for_ddpm": ["--sampler", "heun"],
    }.get(problem, [])
    if problem == "output_is_a_directory":
        out = tmp_path / "looks_like_an_image.png"
        out.mkdir()
    ckpt = broken_checkpoints.get(problem, tiny_checkpoint)
    code, err = main_exit(capsys, "infer", "ddpm", "--ckpt", ckpt, "--output", out, "--num_images", "1", *extra)
    assert_refused(code, err, *([message] if isinstance(message, str) else message))
    assert out.is_dir() if problem == "output_is_a_directory" else not out.exists()


def test_infer_samples_with_the_scheduler_the_checkpoint_was_trained_with(capsys, tmp_path, tiny_checkpoint,
                                                                          monkeypatch):
    """Schedule, step count and prediction come from the metadata, not from defaults."""
    from course_lib import ddpm

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["metadata"].update(schedule="cosine", prediction="eps", num_timesteps=500)
    ckpt = tmp_path / "cosine.pt"
    torch.save(payload, ckpt)
    seen = {}

    def spy(model, scheduler, noise, labels=None, *, num_steps, **kwargs):
        seen.update(schedule=scheduler.schedule, T=scheduler.num_timesteps, steps=num_steps, **kwargs)
        return torch.zeros_like(noise)

    monkeypatch.setattr(ddpm, "sample_ddim", spy)
    code, err = main_exit(capsys, "infer", "ddpm", "--ckpt", ckpt, "--output", tmp_path / "g.png",
                          "--num_images", "1", "--steps", "7", "--device", "cpu")
    assert code == 0, err
    assert (seen["schedule"], seen["T"], seen["steps"], seen["prediction"]) == ("cosine", 500, 7, "eps")
    code, err = main_exit(capsys, "infer", "ddpm", "--ckpt", ckpt, "--output", tmp_path / "h.png",
                          "--steps", "501", "--device", "cpu")
    assert_refused(code, err, "--steps 501: DDIM takes at most", "500 steps")


def test_the_console_script_names_itself_in_subcommand_errors(tmp_path):
    script = Path(sys.executable).with_name("simplest-diffusion")
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    result = subprocess.run([str(script), "train", "ddpm", "--seed", "-1", "--save_dir", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("simplest-diffusion train: error: argument --seed")
    assert "python -m course_lib" not in result.stderr
