"""`train flow` / `infer flow`: a tiny run works and is reproducible; bad inputs exit 2, say one line, write nothing."""

import pytest
import torch

from course_lib import cli, training


def run(*args):
    """Run the command line in this process (faster than a subprocess); return its exit status."""
    try:
        return cli.main([str(arg) for arg in args])
    except SystemExit as stopped:
        return stopped.code


def tiny_run(kind, folder, *extra):
    status = run("train", kind, "--preset", "tiny", "--epochs", "1", "--batch_size", "32", "--max_steps", "2",
                 "--limit", "64", "--save_dir", folder, "--device", "cpu", *extra)
    assert status == 0
    return folder / cli.CHECKPOINT_NAMES[kind]


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory):
    return tiny_run("flow", tmp_path_factory.mktemp("flow_run"), "--time_sampling", "logit_normal")


@pytest.fixture(scope="module")
def cfg_checkpoint(tmp_path_factory):
    return tiny_run("cfg", tmp_path_factory.mktemp("cfg_run"))


def one_line_error(capsys, status):
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.count("error:") == 1 and "Traceback" not in err
    return err


def test_train_flow_records_its_settings(flow_checkpoint):
    """Guards: --time_sampling or p_uncond lost on the way to the checkpoint (a resume could not check them)."""
    payload = training.load_checkpoint(flow_checkpoint, kind="flow")
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train flow --preset tiny")
    assert meta["time_sampling"] == "logit_normal" and meta["p_uncond"] == 0.1
    assert "prediction" not in meta and "schedule" not in meta  # DDPM settings mean nothing here
    assert payload["model_config"]["cross_attention"] is True


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


@pytest.mark.parametrize("args, message", [
    (["--sampler", "ddim"], "--sampler ddim: flow models sample with euler, heun, midpoint, heun_euler_last, sde"),
    (["--sampler", "rk4"], "--sampler rk4: flow models sample with euler, heun, midpoint, heun_euler_last, sde"),
    (["--gamma", "0.5"], "--gamma sets the noise of --sampler sde only"),
    (["--sampler", "euler", "--gamma", "0"], "--gamma sets the noise of --sampler sde only"),
    (["--sampler", "sde", "--gamma", "-1"], "--gamma -1.0: must lie in [0, 10]"),
    (["--sampler", "sde", "--gamma", "nan"], "must be a finite number"),
    (["--steps", "0"], "must be a positive integer, got 0"),
    (["--steps", "2.5"], "must be a positive integer, got '2.5'"),
    (["--label", "10"], "must be a digit 0-9, got 10"),
    (["--guidance_scale", "-1"], "--guidance_scale -1.0: must lie in [0, 20]"),
    (["--seed", "-3"], "must lie in [0, 2**32)"),
])
def test_bad_infer_options_exit_2_and_write_nothing(flow_checkpoint, tmp_path, capsys, args, message):
    """Guards: an option that is silently ignored (--gamma with an ODE sampler) or a crash with a traceback."""
    out = tmp_path / "grid.png"
    err = one_line_error(capsys, run("infer", "flow", "--ckpt", flow_checkpoint, "--output", out, *args))
    assert message in err
    assert not out.exists()


def test_checkpoints_of_the_other_kinds_are_refused(flow_checkpoint, cfg_checkpoint, tmp_path, capsys):
    """A cfg (DDPM) checkpoint sampled as a flow would draw garbage: its output is noise or v, not velocity."""
    out = tmp_path / "grid.png"
    err = one_line_error(capsys, run("infer", "flow", "--ckpt", cfg_checkpoint, "--output", out, "--label", "3"))
    assert "holds a 'cfg' model, expected 'flow'" in err
    err = one_line_error(capsys, run("infer", "cfg", "--ckpt", flow_checkpoint, "--output", out, "--label", "3"))
    assert "holds a 'flow' model, expected 'cfg'" in err
    err = one_line_error(capsys, run("infer", "flow", "--ckpt", tmp_path / "missing.pt", "--output", out))
    assert "does not exist" in err
    assert not out.exists()


def test_flow_checkpoint_without_cross_attention_is_refused(flow_checkpoint, tmp_path, capsys):
    payload = torch.load(flow_checkpoint, weights_only=True)
    payload["model_config"] = {**payload["model_config"], "cross_attention": False}
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    out = tmp_path / "grid.png"
    err = one_line_error(capsys, run("infer", "flow", "--ckpt", forged, "--output", out, "--label", "4"))
    assert "must use cross-attention" in err and not out.exists()


@pytest.mark.parametrize("kind, args, message", [
    ("ddpm", ["--time_sampling", "logit_normal"], "--time_sampling applies to flow models, not ddpm"),
    ("cfg", ["--time_sampling", "uniform"], "--time_sampling applies to flow models, not cfg"),
    ("flow", ["--prediction", "eps"], "--prediction applies to ddpm/cfg models, not flow"),
    ("flow", ["--schedule", "cosine"], "--schedule applies to ddpm/cfg models, not flow"),
    ("flow", ["--time_sampling", "cosine"], "invalid choice: 'cosine'"),
    ("flow", ["--p_uncond", "1"], "--p_uncond 1.0: must lie in [0, 1)"),
    ("flow", ["--lr", "0"], "must be positive, got 0.0"),
    ("flow", ["--ema_decay", "1"], "--ema_decay 1.0: must lie in (0, 1)"),
    ("flow", ["--channels", "3"], "--channels 3: MNIST has 1 channel"),
])
def test_bad_train_options_exit_2_and_write_nothing(tmp_path, capsys, kind, args, message):
    """Every check runs before data loading or training: the save directory is never created."""
    save_dir = tmp_path / "out"
    err = one_line_error(capsys, run("train", kind, "--save_dir", save_dir, "--max_steps", "1", *args))
    assert message in err
    assert not save_dir.exists()


def test_resume_with_another_time_sampling_is_refused(flow_checkpoint, tmp_path, capsys):
    """Guards: a resumed run that silently switches the time law half way through."""
    err = one_line_error(capsys, run("train", "flow", "--preset", "tiny", "--epochs", "2", "--batch_size", "32",
                                     "--limit", "64", "--save_dir", tmp_path / "out", "--time_sampling", "uniform",
                                     "--resume", flow_checkpoint, "--device", "cpu"))
    assert "time_sampling 'logit_normal' -> 'uniform'" in err
    assert not (tmp_path / "out").exists()
