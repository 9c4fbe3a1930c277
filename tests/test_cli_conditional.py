"""`train`/`infer` of the class-conditional kinds (cfg, flow): tiny runs work and are reproducible; bad labels,
guidance scales, sampler options and checkpoints exit 2, say one line and write nothing."""

import pytest
import torch
from cli_helpers import TINY, assert_refused, call, main_exit, run, tiny_run

from course_lib import checkpoint, config


@pytest.fixture(scope="module")
def cfg_checkpoint(tmp_path_factory):
    return tiny_run("cfg", tmp_path_factory.mktemp("cfg_run"), "--p_uncond", "0.2", max_steps=3, subprocess_run=True)


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory):
    return tiny_run("flow", tmp_path_factory.mktemp("flow_run"), "--time_sampling", "logit_normal")


@pytest.fixture
def checkpoints(cfg_checkpoint, flow_checkpoint):
    return {"cfg": cfg_checkpoint, "flow": flow_checkpoint}


# ---------------------------------------------------------------------------- what training records
def test_train_cfg_records_p_uncond_and_uses_cross_attention(cfg_checkpoint):
    payload = checkpoint.load_checkpoint(cfg_checkpoint, kind="cfg")
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train cfg --preset tiny")
    assert meta["p_uncond"] == 0.2 and meta["prediction"] == "v"
    assert payload["model_config"]["cross_attention"] is True
    assert payload["model_config"]["cond_tokens"] >= 2
    assert payload["state_dict"]["label_tokens"].shape[0] == 11  # ten digits and NULL_LABEL


def test_train_flow_records_its_settings(flow_checkpoint):
    """Guards: --time_sampling or p_uncond lost on the way to the checkpoint (a resume could not check them)."""
    payload = checkpoint.load_checkpoint(flow_checkpoint, kind="flow")
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train flow --preset tiny")
    assert meta["time_sampling"] == "logit_normal" and meta["p_uncond"] == 0.1
    assert "prediction" not in meta and "schedule" not in meta  # DDPM settings mean nothing here
    assert payload["model_config"]["cross_attention"] is True


# ---------------------------------------------------------------------------- sampling
def test_infer_cfg_label_4_writes_a_grid(cfg_checkpoint, tmp_path):
    out = tmp_path / "four.png"
    result = call("infer", "cfg", "--ckpt", cfg_checkpoint, "--output", out, "--label", "4", "--num_images", "4",
                  "--steps", "2", "--guidance_scale", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "of digit 4" in result.stdout and "guidance 3" in result.stdout
    from PIL import Image
    assert Image.open(out).size == (2 * 34 + 2, 2 * 34 + 2)


@pytest.mark.parametrize("sampler, steps, nfe_words", [
    ("euler", 3, "euler, 3 steps"), ("heun", None, "heun, 4 steps"), ("midpoint", 2, "midpoint, 2 steps"),
    ("heun_euler_last", None, "heun_euler_last, 4 steps"), ("sde", 3, "sde, 3 steps")])
def test_infer_flow_writes_a_grid_with_each_sampler(flow_checkpoint, tmp_path, capsys, sampler, steps, nfe_words):
    out = tmp_path / "seven.png"
    args = ["infer", "flow", "--ckpt", flow_checkpoint, "--output", out, "--label", "7", "--num_images", "4",
            "--sampler", sampler, "--device", "cpu"]
    assert run(*args, *(["--steps", steps] if steps else [])) == 0
    printed = capsys.readouterr().out
    assert "of digit 7" in printed and nfe_words in printed and "guidance 2" in printed
    from PIL import Image
    assert Image.open(out).size == (2 * 34 + 2, 2 * 34 + 2)


def test_infer_flow_same_seed_same_image(flow_checkpoint, tmp_path):
    """Guards: sampling noise from an unseeded generator (the --seed option would be a lie)."""
    grids = []
    for seed, name in ((5, "a.png"), (5, "b.png"), (6, "c.png")):
        assert run("infer", "flow", "--ckpt", flow_checkpoint, "--output", tmp_path / name, "--num_images", "4",
                   "--steps", "2", "--seed", seed, "--device", "cpu") == 0
        grids.append((tmp_path / name).read_bytes())
    assert grids[0] == grids[1] and grids[0] != grids[2]


# ---------------------------------------------------------------------------- bad requests: one line, exit 2
FLOW_SAMPLERS = "euler, heun, midpoint, heun_euler_last, sde"
BAD_INFER = [  # (kind, options, what the message says: one string, or each of a tuple's); cfg runs with --steps 2
    ("cfg", ["--label", "10"], "must be a digit 0-9, got 10"),
    ("cfg", ["--label", "-1"], "must be a digit 0-9, got -1"),
    ("cfg", ["--label", "four"], "must be a digit 0-9, got 'four'"),
    ("cfg", ["--label", "4.5"], "must be a digit 0-9, got '4.5'"),
    ("cfg", ["--guidance_scale", "nan"], "must be a finite number"),
    ("cfg", ["--guidance_scale", "inf"], "must be a finite number"),
    ("cfg", ["--guidance_scale", "two"], "must be a number, got 'two'"),
    ("cfg", ["--guidance_scale", "-1"], ("--guidance_scale", "must lie in [0, 20]", "got -1.0")),
    ("cfg", ["--guidance_scale", "1e6"], ("--guidance_scale", "must lie in [0, 20]", "got 1000000.0")),
    ("flow", ["--sampler", "ddim"], f"--sampler ddim: flow models sample with {FLOW_SAMPLERS}"),
    ("flow", ["--sampler", "rk4"], f"--sampler rk4: flow models sample with {FLOW_SAMPLERS}"),
    ("flow", ["--gamma", "0.5"], "--gamma sets the noise of --sampler sde only"),
    ("flow", ["--sampler", "euler", "--gamma", "0"], "--gamma sets the noise of --sampler sde only"),
    ("flow", ["--sampler", "sde", "--gamma", "-1"], ("--gamma", "must lie in [0, 10]", "got -1.0")),
    ("flow", ["--sampler", "sde", "--gamma", "nan"], "must be a finite number"),
    ("flow", ["--steps", "0"], "must be a positive integer, got 0"),
    ("flow", ["--steps", "2.5"], "must be a positive integer, got '2.5'"),
    ("flow", ["--label", "10"], "must be a digit 0-9, got 10"),
    ("flow", ["--guidance_scale", "-1"], ("--guidance_scale", "must lie in [0, 20]", "got -1.0")),
    ("flow", ["--seed", "-3"], "must lie in [0, 2**32)"),
]


@pytest.mark.parametrize("kind, args, message", BAD_INFER)
def test_bad_infer_options_exit_2_and_write_nothing(checkpoints, tmp_path, capsys, kind, args, message):
    """Guards: an option that is silently ignored (--gamma with an ODE sampler) or a crash with a traceback."""
    out = tmp_path / "grid.png"
    steps = ["--steps", "2"] if kind == "cfg" else []
    code, err = main_exit(capsys, "infer", kind, "--ckpt", checkpoints[kind], "--output", out, *steps, *args)
    assert_refused(code, err, *([message] if isinstance(message, str) else message))
    assert not out.exists()


def test_unconditional_checkpoint_given_to_infer_cfg_exits_2(tmp_path):
    out = tmp_path / "grid.png"  # a real subprocess once, as a learner would run it
    result = call("infer", "cfg", "--ckpt", config.CHECKPOINT_DIR / "ddpm_uncond.pt", "--output", out,
                  "--label", "4", "--steps", "2")
    assert result.returncode == 2
    assert "holds a 'ddpm' model, expected 'cfg'" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_checkpoints_of_the_other_kinds_are_refused(checkpoints, tmp_path, capsys):
    """A cfg (DDPM) checkpoint sampled as a flow would draw garbage: its output is noise or v, not velocity."""
    out = tmp_path / "grid.png"
    code, err = main_exit(capsys, "infer", "flow", "--ckpt", checkpoints["cfg"], "--output", out, "--label", "3")
    assert_refused(code, err, "holds a 'cfg' model, expected 'flow'")
    code, err = main_exit(capsys, "infer", "cfg", "--ckpt", checkpoints["flow"], "--output", out, "--label", "3")
    assert_refused(code, err, "holds a 'flow' model, expected 'cfg'")
    code, err = main_exit(capsys, "infer", "flow", "--ckpt", tmp_path / "missing.pt", "--output", out)
    assert_refused(code, err, "does not exist")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["cfg", "flow"])
def test_a_conditional_checkpoint_without_cross_attention_is_refused(checkpoints, tmp_path, capsys, kind):
    """A checkpoint whose kind says cfg/flow but whose DiT has no cross-attention cannot be sampled with labels."""
    payload = torch.load(checkpoints[kind], weights_only=True)
    payload["model_config"] = {**payload["model_config"], "cross_attention": False}
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    out = tmp_path / "grid.png"
    code, err = main_exit(capsys, "infer", kind, "--ckpt", forged, "--output", out, "--label", "4")
    assert_refused(code, err, "must use cross-attention")
    assert not out.exists()


def test_a_label_is_refused_for_an_unconditional_model(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, err = main_exit(capsys, "infer", "ddpm", "--ckpt", config.CHECKPOINT_DIR / "ddpm_uncond.pt",
                          "--output", out, "--label", "4")
    assert_refused(code, err, "--label applies to cfg/flow models, not ddpm")
    assert not out.exists()


@pytest.mark.parametrize("kind, args, message", [
    ("ddpm", ["--time_sampling", "normal"], "invalid choice: 'normal'"),
    ("flow", ["--prediction", "eps"], "--prediction applies to ddpm/cfg models, not flow"),
    ("flow", ["--schedule", "cosine"], "--schedule applies to ddpm/cfg models, not flow"),
    ("flow", ["--loss_weighting", "min_snr"], "--loss_weighting applies to ddpm/cfg models, not flow"),
    ("cfg", ["--loss_weighting", "snr"], "invalid choice: 'snr'"),
    ("flow", ["--warmup_steps", "-5"], "warmup_steps must be >= 0, got -5"),
    ("flow", ["--lr_schedule", "linear"], "invalid choice: 'linear'"),
    ("flow", ["--time_sampling", "cosine"], "invalid choice: 'cosine'"),
    ("flow", ["--p_uncond", "1"], ("--p_uncond", "must lie in [0, 1)", "got 1.0")),
    ("cfg", ["--p_uncond", "1"], "p_uncond"),
    ("cfg", ["--p_uncond", "-0.1"], "p_uncond"),
    ("cfg", ["--p_uncond", "nan"], "p_uncond"),
    ("flow", ["--lr", "0"], "must be positive, got 0.0"),
    ("flow", ["--ema_decay", "1"], ("--ema_decay", "must lie in (0, 1)", "got 1.0")),
    ("flow", ["--channels", "3"], "--channels 3: MNIST has 1 channel"),
])
def test_bad_train_options_exit_2_and_write_nothing(tmp_path, capsys, kind, args, message):
    """Every check runs before data loading or training: the save directory is never created."""
    save_dir = tmp_path / "out"
    code, err = main_exit(capsys, "train", kind, "--save_dir", save_dir, "--max_steps", "1", *args)
    assert_refused(code, err, *([message] if isinstance(message, str) else message))
    assert not save_dir.exists()


def test_resume_with_another_time_sampling_is_refused(flow_checkpoint, tmp_path, capsys):
    """Guards: a resumed run that silently switches the time law half way through."""
    options = [*TINY, "--epochs", "2", "--save_dir", tmp_path / "out", "--time_sampling", "uniform"]
    code, err = main_exit(capsys, "train", "flow", *options, "--resume", flow_checkpoint)
    assert_refused(code, err, "time_sampling 'logit_normal' -> 'uniform'")
    assert not (tmp_path / "out").exists()


def test_ddpm_time_sampling_is_recorded_and_a_resume_cannot_switch_it(tmp_path, capsys):
    """Guards: --time_sampling ignored by ddpm/cfg, lost on the way to the checkpoint, or switched on --resume."""
    path = tiny_run("ddpm", tmp_path / "run", "--time_sampling", "logit_normal")
    assert torch.load(path, weights_only=True)["metadata"]["time_sampling"] == "logit_normal"
    options = [*TINY, "--epochs", "2", "--save_dir", tmp_path / "out", "--time_sampling", "uniform"]
    code, err = main_exit(capsys, "train", "ddpm", *options, "--resume", path)
    assert_refused(code, err, "time_sampling 'logit_normal' -> 'uniform'")


def test_min_snr_weighting_is_recorded_and_a_resume_cannot_drop_it(tmp_path, capsys):
    """Guards: --loss_weighting lost on the way to the checkpoint, or switched silently on --resume."""
    path = tiny_run("cfg", tmp_path / "run", "--loss_weighting", "min_snr")
    assert torch.load(path, weights_only=True)["metadata"]["loss_weighting"] == "min_snr"
    options = [*TINY, "--epochs", "2", "--save_dir", tmp_path / "out"]
    code, err = main_exit(capsys, "train", "cfg", *options, "--resume", path)
    assert_refused(code, err, "loss_weighting 'min_snr' -> 'uniform'")
    assert not (tmp_path / "out").exists()


def test_a_run_from_before_loss_weighting_existed_resumes_as_uniform(tmp_path):
    """Guards: every DDPM run saved before the option refused to resume (its metadata lacks the field)."""
    path = tiny_run("cfg", tmp_path / "run")
    state_path = checkpoint.resume_path(path)
    state = torch.load(state_path, weights_only=True)
    del state["metadata"]["loss_weighting"]
    checkpoint.save_checkpoint(state_path, state)
    assert run("train", "cfg", *TINY, "--epochs", "2", "--save_dir", tmp_path / "run", "--resume", path) == 0
