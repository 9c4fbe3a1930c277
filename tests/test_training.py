"""The training loop: learning, checkpoints, resume, NaN handling."""

import math
from pathlib import Path

import pytest
import torch

from course_lib import checkpoint, ddpm, dit, training


def toy_data(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=gen) * 2 - 1, torch.randint(0, 10, (n,), generator=gen)


SCHEDULER = ddpm.NoiseScheduler()


def ddpm_loss(scheduler=SCHEDULER):
    return lambda model, batch, gen: ddpm.loss(model, batch[0], None, scheduler, gen, "eps")


def resumed_path(resume) -> Path:
    """Where a resumed run that names no checkpoint of its own writes: beside the one it continues."""
    path = resume.path if isinstance(resume, training.ResumePoint) else Path(resume)
    return path.with_name(f"{path.stem}_resumed.pt")


def run(cfg, path=None, resume=None, loss_fn=None, data=None):
    """A tiny DDPM run on the toy data; it writes checkpoints to ``path`` (a resumed run: always, as resume needs
    them), else nothing."""
    torch.manual_seed(cfg.seed)  # same initial weights for runs that should match
    model = dit.DiT(dit.preset("tiny"))
    images, labels = data if data is not None else toy_data()
    path = resumed_path(resume) if path is None and resume is not None else path
    checkpoints = None if path is None else training.Checkpoints(path, "ddpm", model.cfg.to_dict())
    return training.train(model, loss_fn or ddpm_loss(), (images, labels), cfg, "cpu", checkpoints=checkpoints,
                          resume=resume, progress=False)


def test_overfitting_one_small_batch_halves_the_loss():
    """The DDPM loss on one batch with fixed steps and noise must halve within 150 steps."""
    images, labels = toy_data(16)

    def fixed_draws_loss(model, batch, gen):
        return ddpm.loss(model, batch[0], None, SCHEDULER, torch.Generator().manual_seed(0), "eps")

    cfg = training.TrainConfig(epochs=150, batch_size=16, lr=3e-3, warmup_steps=10)
    result = run(cfg, loss_fn=fixed_draws_loss, data=(images, labels))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.5 * first


def test_checkpoint_round_trip_is_exact(tmp_path):
    path = tmp_path / "ckpt.pt"
    result = run(training.TrainConfig(epochs=1, batch_size=32), path)
    payload = checkpoint.load_checkpoint(path, kind="ddpm")
    assert "training" not in payload  # the slim file: weights and metadata only
    assert checkpoint.resume_path(path).is_file()
    model = checkpoint.load_weights(dit.DiT(dit.DiTConfig(**payload["model_config"])), payload["state_dict"])
    for name, tensor in result.ema.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert payload["metadata"]["step"] == 2 and payload["metadata"]["epoch"] == 1
    assert payload["metadata"]["train_config"]["batch_size"] == 32


def test_resume_continues_the_same_run(tmp_path):
    straight = run(training.TrainConfig(epochs=2, batch_size=32, seed=5))
    first_half = tmp_path / "half.pt"
    run(training.TrainConfig(epochs=1, batch_size=32, seed=5), first_half)
    resumed = run(training.TrainConfig(epochs=2, batch_size=32, seed=5), resume=first_half)
    assert resumed.step == straight.step == 4 and resumed.epoch == straight.epoch == 2
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    before = path.read_bytes(), checkpoint.resume_path(path).read_bytes()
    calls = {"n": 0}

    def poisoned(model, batch, gen):
        calls["n"] += 1
        value = ddpm_loss()(model, batch, gen)
        return value * float("nan") if calls["n"] == 2 else value  # mid-epoch: nothing saved yet

    with pytest.raises(training.TrainingDiverged, match="loss became nan at step 1"):
        run(training.TrainConfig(epochs=3, batch_size=32), path, loss_fn=poisoned)
    assert (path.read_bytes(), checkpoint.resume_path(path).read_bytes()) == before


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "kind": "ddpm"})
    good = path.read_bytes()

    def crash(obj, f):
        open(f, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "kind": "ddpm", "x": 1})
    assert path.read_bytes() == good


def test_bad_checkpoints_are_refused_with_a_reason(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load_checkpoint(corrupt)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a SimplestDiffusion checkpoint"):
        checkpoint.load_checkpoint(foreign)
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    with pytest.raises(checkpoint.CheckpointError, match="holds a 'ddpm' model, expected 'flow'"):
        checkpoint.load_checkpoint(path, kind="flow")
    payload = checkpoint.load_checkpoint(path)
    with pytest.raises(checkpoint.CheckpointError, match="wrong shapes"):
        checkpoint.load_weights(dit.DiT(dit.preset("tiny", dim=32)), payload["state_dict"])
    bigger = dit.DiT(dit.preset("tiny", depth=3))
    with pytest.raises(checkpoint.CheckpointError, match="missing"):
        checkpoint.load_weights(bigger, payload["state_dict"])


def test_max_steps_inside_an_epoch_counts_whole_epochs_and_cannot_be_resumed(tmp_path):
    path = tmp_path / "partial.pt"
    result = run(training.TrainConfig(epochs=2, batch_size=32, max_steps=3), path)  # 2 steps per epoch
    assert result.step == 3 and result.epoch == 1
    assert checkpoint.load_checkpoint(path)["metadata"]["step"] == 3
    with pytest.raises(checkpoint.CheckpointError, match="stopped inside epoch 2"):
        run(training.TrainConfig(epochs=3, batch_size=32), resume=path)


def test_resume_refuses_a_different_model(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    model = dit.DiT(dit.preset("tiny", depth=3))
    images, labels = toy_data()
    # the field is named: a direct train(resume=...) call gets the command line's check
    with pytest.raises(checkpoint.CheckpointError, match="cannot resume .*differ from the saved one in depth 2 -> 3"):
        training.train(model, ddpm_loss(), (images, labels), training.TrainConfig(epochs=2, batch_size=32), "cpu",
                       checkpoints=training.Checkpoints(tmp_path / "deeper.pt", "ddpm", model.cfg.to_dict()),
                       resume=path, progress=False)
    assert not (tmp_path / "deeper.pt").exists()


def test_resume_needs_checkpoints_and_without_them_nothing_is_written(tmp_path):
    """A toy in a notebook trains with no kind or model config and writes nothing; a resume needs checkpoints."""
    images, labels = toy_data()
    model = dit.DiT(dit.preset("tiny"))
    result = training.train(model, ddpm_loss(), (images, labels), training.TrainConfig(epochs=1, batch_size=32),
                            progress=False)
    assert result.step == 2 and list(tmp_path.iterdir()) == []
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    with pytest.raises(ValueError, match="resume needs checkpoints"):
        training.train(model, ddpm_loss(), (images, labels), training.TrainConfig(epochs=2, batch_size=32),
                       resume=path, progress=False)


def test_bad_train_config_raises():
    with pytest.raises(ValueError, match="positive"):
        training.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr_decay_rate"):
        training.TrainConfig(lr_decay_rate=1.5)


def test_weights_holding_nan_or_inf_are_refused_with_their_names(tmp_path):
    """A diverged run's weights must not load silently: sampling would return NaN images."""
    model = dit.DiT(dit.preset("tiny"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["blocks.1.mlp.0.weight"][3, 4] = float("nan")
    state["final.linear.bias"][0] = float("-inf")
    with pytest.raises(checkpoint.CheckpointError, match=r"holds NaN or Inf in \['blocks.1.mlp.0.weight', "
                                                         r"'final.linear.bias'\]"):
        checkpoint.load_weights(dit.DiT(dit.preset("tiny")), state, "broken.pt")


def test_a_config_that_contradicts_the_weights_is_named_field_by_field():
    """img_size 64 with 32-pixel position embeddings (and other shape-visible fields) are caught by name."""
    weights = dit.DiT(dit.preset("book")).state_dict()
    claims = dit.preset("book", img_size=64, depth=4, dim=64, conv_head=False, skip=False)
    found = checkpoint.config_disagreements(claims, weights)
    assert found == ["dim 64 in the config but 128 in the weights", "img_size 64 in the config but 32 in the weights",
                     "depth 4 in the config but 6 in the weights", "skip False in the config but True in the weights",
                     "conv_head False in the config but True in the weights"]
    assert checkpoint.config_disagreements(dit.preset("book"), weights) == []


def test_cosine_schedule_warms_up_then_follows_the_closed_form_to_zero():
    # guards: a cosine that restarts each epoch, ends above 0, or skips the warm-up
    cfg = training.TrainConfig(epochs=3, batch_size=10, lr_schedule="cosine", warmup_steps=10)
    total, per_epoch = 110, 40
    factors = [training.lr_multiplier(cfg, s, per_epoch, total) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[8] == pytest.approx(0.9)
    assert factors[9] == pytest.approx(1.0)
    for s in (30, 59, 80):  # mid-run values, across epoch borders: 0.5 (1 + cos(pi (s+1-10) / 100))
        assert factors[s] == pytest.approx(0.5 * (1 + math.cos(math.pi * (s + 1 - 10) / 100)))
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))


def test_step_schedule_halves_at_each_decay_epoch():
    cfg = training.TrainConfig(epochs=6, batch_size=10, lr_decay_step=2, lr_decay_rate=0.5, warmup_steps=1)
    assert [training.lr_multiplier(cfg, s, 5, 30) for s in (0, 9, 10, 19, 20)] == [1, 1, 0.5, 0.5, 0.25]


def test_unknown_lr_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule"):
        training.TrainConfig(lr_schedule="linear")


# ---------------------------------------------------------------------------- resume called from Python
@pytest.mark.parametrize("change, named", [
    (dict(lr=2e-3), "lr 0.001 -> 0.002"),
    (dict(batch_size=16), "batch_size 32 -> 16"),
    (dict(seed=3), "seed 0 -> 3"),
    (dict(lr_schedule="cosine"), "lr_schedule 'step' -> 'cosine'"),
    (dict(lr=2e-3, seed=3), "lr 0.001 -> 0.002, seed 0 -> 3"),
])
def test_train_refuses_a_resume_with_other_settings_and_names_each(tmp_path, change, named):
    """Guards: a direct call of train(resume=...) that silently continues with another lr, batch or seed."""
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    before = path.read_bytes(), checkpoint.resume_path(path).read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match="this run would differ from the saved one in " + named):
        run(training.TrainConfig(**{"epochs": 2, "batch_size": 32, **change}), resume=path)
    assert (path.read_bytes(), checkpoint.resume_path(path).read_bytes()) == before


def test_train_compares_the_metadata_settings_it_is_given(tmp_path):
    """prediction, schedule, p_uncond ... live in the metadata, not in TrainConfig: compared when passed."""
    path = tmp_path / "ckpt.pt"
    images, labels = toy_data()

    def call(metadata, epochs, resume=None):
        torch.manual_seed(0)
        model = dit.DiT(dit.preset("tiny"))
        checkpoints = training.Checkpoints(path, "ddpm", model.cfg.to_dict(), metadata)
        return training.train(model, ddpm_loss(), (images, labels), training.TrainConfig(epochs=epochs, batch_size=32),
                              "cpu", checkpoints=checkpoints, resume=resume, progress=False)

    call({"prediction": "eps", "schedule": "linear"}, 1)
    with pytest.raises(checkpoint.CheckpointError, match="prediction 'eps' -> 'v'"):
        call({"prediction": "v", "schedule": "linear"}, 2, resume=path)
    assert call({"prediction": "eps", "schedule": "linear"}, 2, resume=path).epoch == 2


def test_train_refuses_to_resume_a_finished_run(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=1, batch_size=32), path)
    with pytest.raises(checkpoint.CheckpointError, match="already finished 1 epoch"):
        run(training.TrainConfig(epochs=1, batch_size=32), resume=path)


def test_a_cosine_run_cannot_change_its_epochs_on_resume(tmp_path):
    path = tmp_path / "ckpt.pt"
    run(training.TrainConfig(epochs=2, batch_size=32, lr_schedule="cosine", max_steps=2), path)
    with pytest.raises(checkpoint.CheckpointError, match=r"epochs 2 -> 3 \(a cosine schedule ends"):
        run(training.TrainConfig(epochs=3, batch_size=32, lr_schedule="cosine"), resume=path)


def test_a_checked_resume_point_is_not_read_again(tmp_path, monkeypatch):
    """The command line checks the resume before loading data; train() then reuses the state in memory."""
    path = tmp_path / "half.pt"
    run(training.TrainConfig(epochs=1, batch_size=32, seed=5), path)
    cfg = training.TrainConfig(epochs=2, batch_size=32, seed=5)
    model_config = dit.preset("tiny").to_dict()
    point = training.check_resume(path, "ddpm", model_config, cfg, num_images=64)
    monkeypatch.setattr(training, "load_checkpoint", lambda *a, **k: pytest.fail("loaded twice"))
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("loaded twice"))
    resumed = run(cfg, resume=point)
    assert resumed.epoch == 2 and resumed.step == 4
