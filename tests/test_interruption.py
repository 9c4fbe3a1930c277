"""Interrupted training loses at most the unfinished epoch: SIGKILL, a kill mid-write, and Ctrl-C.

Resume continues exactly only from the end of an epoch (same data order, optimiser and schedule),
so what must survive an interruption is the last completed epoch. The in-process tests check that
the resumed run equals an uninterrupted one bit for bit; the subprocess tests send real signals.
"""

import signal
from pathlib import Path

import pytest
import torch
from cli_helpers import start_driver

from course_lib import checkpoint, cli, ddpm, dit, training
from course_lib.cli import checks as cli_checks
from course_lib.cli.train import CHECKPOINT_NAMES

STEPS_PER_EPOCH = 2  # 64 images, batch 32
SCHEDULER = ddpm.NoiseScheduler()


def toy_data(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=gen) * 2 - 1, torch.randint(0, 10, (n,), generator=gen)


def ddpm_loss(model, batch, generator):
    return ddpm.loss(model, batch[0], None, SCHEDULER, generator, "eps")


def stop_at(step_number):
    """An ``on_step`` hook that presses Ctrl-C right after optimiser step ``step_number``."""
    def on_step(step, loss):
        if step == step_number:
            raise KeyboardInterrupt
    return on_step


def run_with(cfg, path=None, resume=None, on_step=None):
    torch.manual_seed(cfg.seed)
    model = dit.DiT(dit.preset("tiny"))
    images, labels = toy_data()
    checkpoints = None if path is None else training.Checkpoints(path, "ddpm", model.cfg.to_dict())
    return training.train(model, ddpm_loss, (images, labels), cfg, "cpu", checkpoints=checkpoints, resume=resume,
                          on_step=on_step, progress=False)


def assert_same_run(a, b):
    assert (a.step, a.epoch) == (b.step, b.epoch)
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    for (name, x), y in zip(a.ema.state_dict().items(), b.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)


def files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------- Ctrl-C, in process
def test_ctrl_c_saves_the_last_unsaved_epoch_and_resume_equals_a_straight_run(tmp_path):
    """save_freq 3: nothing is on disk when Ctrl-C comes in epoch 3, so the end of epoch 2 is written.

    Guards: writing the live (half-epoch) state instead of the end-of-epoch copy (resume refused or
    different weights); keeping a shallow copy that the next epoch changes in place (different weights).
    """
    straight = run_with(training.TrainConfig(epochs=3, batch_size=32, seed=2))
    path = tmp_path / "ckpt.pt"
    cfg = training.TrainConfig(epochs=3, batch_size=32, seed=2, save_freq=3)
    with pytest.raises(training.TrainingInterrupted) as caught:
        run_with(cfg, path, on_step=stop_at(5))  # step 5 is the first step of epoch 3
    message = str(caught.value)
    assert message == (f"interrupted at step 5; saved the end of epoch 2 (step 4) in {path}: --resume {path} "
                       f"continues from there (it redoes the 1 step(s) of the unfinished epoch)")
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.epoch == 2
    saved = checkpoint.load_checkpoint(checkpoint.resume_path(path), kind="ddpm")
    assert (saved["training"]["epoch"], saved["training"]["step"]) == (2, 2 * STEPS_PER_EPOCH)
    assert checkpoint.load_checkpoint(path)["metadata"]["epoch"] == 2  # the slim file agrees
    assert_same_run(run_with(cfg, path, resume=path), straight)


def test_ctrl_c_keeps_an_end_of_epoch_checkpoint_already_on_disk(tmp_path):
    """save_freq 1: epoch 1 is on disk; Ctrl-C in epoch 2 leaves both files byte for byte as they were."""
    path = tmp_path / "ckpt.pt"
    cfg = training.TrainConfig(epochs=3, batch_size=32, seed=2)
    before = {}

    def remember_then_stop(step, loss):
        if step == 3:
            before.update(files(tmp_path))
            raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted, match=r"step 3; kept the end of epoch 1 \(step 2\)"):
        run_with(cfg, path, on_step=remember_then_stop)
    assert set(before) == {"ckpt.pt", "ckpt.resume.pt"} and files(tmp_path) == before


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(training.TrainingInterrupted, match="before the first epoch ended: nothing was saved"):
        run_with(training.TrainConfig(epochs=2, batch_size=32), path, on_step=stop_at(1))
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_a_resumed_run_points_at_the_file_it_resumed_from(tmp_path):
    first = tmp_path / "first.pt"
    run_with(training.TrainConfig(epochs=1, batch_size=32), first)
    second = tmp_path / "elsewhere" / "second.pt"
    with pytest.raises(training.TrainingInterrupted, match=f"kept the end of epoch 1 \\(step 2\\) in {first}"):
        run_with(training.TrainConfig(epochs=3, batch_size=32), second, resume=first, on_step=stop_at(3))
    assert not second.exists()


def test_ctrl_c_during_a_checkpoint_write_still_saves_that_epoch(tmp_path, monkeypatch):
    """Ctrl-C lands inside torch.save of epoch 2: no half file stays, and the files hold epoch 2.

    Guards: leaving the ``.partial`` file behind; forgetting the epoch whose write was cut.
    """
    straight = run_with(training.TrainConfig(epochs=3, batch_size=32, seed=4))
    path = tmp_path / "ckpt.pt"
    real_save, writes = torch.save, []

    def save_cut_once(obj, f):
        writes.append(Path(f).name)
        if len(writes) == 3:  # epoch 1 wrote .resume.pt and .pt; this is epoch 2's .resume.pt
            Path(f).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt
        return real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_cut_once)
    cfg = training.TrainConfig(epochs=3, batch_size=32, seed=4)
    with pytest.raises(training.TrainingInterrupted, match=r"at step 4; saved the end of epoch 2 \(step 4\)"):
        run_with(cfg, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.resume.pt"]
    assert checkpoint.load_checkpoint(path)["metadata"]["epoch"] == 2
    assert_same_run(run_with(cfg, path, resume=path), straight)


def test_a_failed_write_leaves_no_partial_file_and_the_old_checkpoint(tmp_path, monkeypatch):
    """A full disk (or Ctrl-C) inside torch.save: the half file is removed, the old checkpoint stays."""
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "kind": "ddpm", "n": 1})
    good = path.read_bytes()

    def disk_full(obj, f):
        Path(f).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "kind": "ddpm", "n": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"] and path.read_bytes() == good


def test_ctrl_c_on_a_full_disk_says_the_epoch_could_not_be_saved(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"

    def disk_full(obj, f):
        raise OSError(28, "No space left on device")

    def stop_on_a_full_disk(step, loss):
        if step == 5:
            monkeypatch.setattr(torch, "save", disk_full)
            raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted, match=f"at step 5; could not save epoch 2 to {path} "
                                                           r"\(No space left on device\)$"):
        run_with(training.TrainConfig(epochs=3, batch_size=32, save_freq=3), path, on_step=stop_on_a_full_disk)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- real signals, in a subprocess
# The driver (cli_helpers.DRIVER) runs the real command line with hooks that make the timing of a signal certain.

TRAIN = ["train", "ddpm", "--preset", "tiny", "--epochs", "3", "--batch_size", "32", "--limit", "64",
         "--device", "cpu"]
PLANNED_STEPS = 3 * STEPS_PER_EPOCH


def start_run(tmp_path, save_dir, extra=(), **hooks):
    return start_driver(tmp_path, [*TRAIN, *extra, "--save_dir", save_dir], **hooks)


def resume_to_the_end(capsys, save_dir, *extra):
    """Resume in this process (faster than a new interpreter) and return the final checkpoint."""
    path = save_dir / CHECKPOINT_NAMES["ddpm"]
    capsys.readouterr()
    code = cli.main([*TRAIN, "--save_dir", str(save_dir), *extra, "--resume", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"trained {PLANNED_STEPS} steps" in out
    final = checkpoint.load_checkpoint(path, kind="ddpm")
    assert (final["metadata"]["step"], final["metadata"]["epoch"]) == (PLANNED_STEPS, 3)
    assert not list(save_dir.glob("*.partial"))
    return final


def test_sigkill_during_training_keeps_the_last_checkpoint_and_resume_finishes(tmp_path, capsys):
    save_dir = tmp_path / "run"
    process, _ = start_run(tmp_path, save_dir, PAUSE_AT_LOSS=STEPS_PER_EPOCH + 2)  # inside epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    path = save_dir / CHECKPOINT_NAMES["ddpm"]
    checkpoint.load_model(path, "ddpm", torch.device("cpu"))  # the last complete checkpoint loads
    assert checkpoint.load_checkpoint(path)["metadata"]["epoch"] == 1
    resume_to_the_end(capsys, save_dir)


@pytest.mark.parametrize("write, on_disk_after", [
    (3, {"ddpm_uncond.pt": 1, "ddpm_uncond.resume.pt": 1}),  # killed while writing epoch 2's .resume.pt
    (4, {"ddpm_uncond.pt": 1, "ddpm_uncond.resume.pt": 2}),  # killed while writing epoch 2's slim .pt
])
def test_sigkill_during_a_checkpoint_write_keeps_complete_files_and_resume_finishes(tmp_path, capsys, write,
                                                                                    on_disk_after):
    """Guards the atomic write: without the rename, the half-written file would be the checkpoint."""
    save_dir = tmp_path / "run"
    process, where = start_run(tmp_path, save_dir, STALL_WRITE=write)
    assert where.endswith(".partial")  # the half file is the temporary one, beside the real one
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert len(list(save_dir.glob("*.partial"))) == 1
    for name, epoch in on_disk_after.items():
        assert checkpoint.load_checkpoint(save_dir / name, kind="ddpm")["metadata"]["epoch"] == epoch
    checkpoint.load_model(save_dir / "ddpm_uncond.pt", "ddpm", torch.device("cpu"))
    resume_to_the_end(capsys, save_dir)


def test_sigint_saves_the_last_completed_epoch_then_exits_130_with_one_line(tmp_path, capsys):
    """--save_freq 3: no checkpoint is on disk in epoch 2 until Ctrl-C writes epoch 1's."""
    save_dir = tmp_path / "run"
    process, _ = start_run(tmp_path, save_dir, ["--save_freq", "3"], PAUSE_AT_LOSS=STEPS_PER_EPOCH + 2)
    assert {p.name for p in save_dir.iterdir()} == {cli_checks.LOCK_FILE}  # the run's lock, and no checkpoint yet
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    path = save_dir / CHECKPOINT_NAMES["ddpm"]
    assert process.returncode == 130, err
    assert err == (f"python -m course_lib train: interrupted at step 3; saved the end of epoch 1 (step 2) in "
                   f"{path}: --resume {path} continues from there (it redoes the 1 step(s) of the unfinished "
                   f"epoch)\n")
    assert sorted(p.name for p in save_dir.iterdir()) == ["ddpm_uncond.pt", "ddpm_uncond.resume.pt"]
    resume_to_the_end(capsys, save_dir, "--save_freq", "3")

