"""Training on several processes (DDP, gloo) as torchrun starts it: two CPU processes, a tiny model, a few steps.

The central check: two processes, each taking half of every global batch, end with the weights of one
process that takes the whole batch and computes the same per-process losses; it fails if the gradients
are not averaged or the shards overlap. The runs go through the real ``torchrun`` and the command line;
a driver script records every checkpoint write and can kill one process mid-run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_refused, main_exit

from course_lib import checkpoint, cli, data, distributed, dit, training
from course_lib.cli import train as cli_train

REPO = Path(__file__).resolve().parent.parent
PROCESSES, BATCH, IMAGES, SEED = 2, 32, 64, 3  # 2 steps per epoch, 16 images per process per step
TRAIN = ["train", "ddpm", "--preset", "tiny", "--batch_size", BATCH, "--limit", IMAGES, "--device", "cpu",
         "--seed", SEED, "--warmup_steps", 1]
DRIVER = """
import os, signal, sys
from pathlib import Path
from course_lib import checkpoint, cli, ddpm, flow

rank, log = os.environ["RANK"], Path(os.environ["WRITES_LOG"])
real_write, calls = checkpoint.write_atomically, {"loss": 0}

def write_atomically(path, write):  # every checkpoint file goes through here: note who wrote it
    with open(log, "a") as handle:
        handle.write(f"{rank} {Path(path).name}\\n")
    return real_write(path, write)

def killing(real_loss):  # the objective of either kind, with process KILL_RANK killed in its KILL_AT_LOSS-th call
    def loss(*args, **kwargs):
        calls["loss"] += 1
        if rank == os.environ.get("KILL_RANK") and calls["loss"] == int(os.environ["KILL_AT_LOSS"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_loss(*args, **kwargs)
    return loss

checkpoint.write_atomically, ddpm.loss, flow.loss = write_atomically, killing(ddpm.loss), killing(flow.loss)
sys.exit(cli.main(sys.argv[1:]))
"""


def torchrun(tmp_path: Path, save_dir: Path, *extra, kind: str = "ddpm", **env) -> tuple[subprocess.CompletedProcess,
                                                                                          list[str]]:
    """``torchrun --standalone --nproc_per_node=2`` of the command line through the driver; returns the
    finished process and the checkpoint writes as ``"rank name"`` lines."""
    driver, log = tmp_path / "driver.py", tmp_path / f"writes-{save_dir.name}.log"
    driver.write_text(DRIVER)
    log.unlink(missing_ok=True)
    environ = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true", "WRITES_LOG": str(log),
               **{k: str(v) for k, v in env.items()}}
    args = [kind if a == "ddpm" else str(a) for a in TRAIN] + [str(a) for a in extra]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={PROCESSES}", str(driver), *args, "--save_dir", str(save_dir)],
                            cwd=REPO, env=environ, capture_output=True, text=True, timeout=600)
    return result, log.read_text().split("\n")[:-1] if log.exists() else []


def two_process_run(tmp_path, name: str, epochs: int, *extra) -> Path:
    save_dir = tmp_path / name
    result, writes = torchrun(tmp_path, save_dir, "--epochs", epochs, *extra)
    assert result.returncode == 0, result.stderr
    assert (f"training on 2 processes: --batch_size {BATCH} is the global batch, {BATCH // 2} images per "
            f"process per step") in result.stdout
    assert result.stdout.count("trained ") == 1  # process 0 alone reports
    # process 0 alone writes: the slim file and the resume state once per epoch, nothing else anywhere
    assert writes == [f"0 {n}" for _ in range(epochs) for n in ("ddpm_uncond.resume.pt", "ddpm_uncond.pt")]
    assert sorted(p.name for p in save_dir.iterdir()) == ["ddpm_uncond.pt", "ddpm_uncond.resume.pt"]
    return save_dir / "ddpm_uncond.pt"


def one_process_reference(epochs: int) -> training.TrainResult:
    """What two processes must compute, in one process: the same global batches, each split as the two
    processes split it (process r takes every 2nd image from r), each half with process r's noise stream,
    the loss the mean of the halves'. The order is re-derived here, not taken from distributed.shard."""
    args = cli.build_parser().parse_args([*map(str, TRAIN), "--epochs", str(epochs)])
    model_cfg, train_cfg, settings = cli_train.check_train_options(args)
    images, labels = data.load_mnist(train=True, size=args.img_size, limit=IMAGES)
    loss_fn = cli_train.objective("ddpm", settings, torch.device("cpu"))
    training.seed_everything(SEED)  # as the command line: the initial weights come from the seed
    model = dit.DiT(model_cfg)
    run = training._Run.build(model, train_cfg, torch.device("cpu"), IMAGES, None)
    for epoch in range(epochs):
        order = torch.randperm(IMAGES, generator=torch.Generator().manual_seed(SEED + epoch))
        streams = [torch.Generator().manual_seed(distributed.noise_seed(SEED, epoch, r)) for r in range(PROCESSES)]

        def halves(net, batch, generator, streams=streams):
            x, y = batch
            return sum(loss_fn(net, (x[r::PROCESSES], y[r::PROCESSES]), streams[r]) for r in range(PROCESSES)) / 2

        for start in range(0, IMAGES, BATCH):
            batch = order[start:start + BATCH]
            run.step(halves, (images[batch], labels[batch]), None)
        run.result.epoch += 1
    return run.result


def training_state(path: Path) -> dict:
    return checkpoint.load_checkpoint(checkpoint.resume_path(path), kind="ddpm")["training"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """Two processes, two epochs (four steps): the run the other tests compare with."""
    tmp_path = tmp_path_factory.mktemp("straight")
    return two_process_run(tmp_path, "run", 2)


def test_two_processes_equal_one_process_over_the_same_global_batches(straight):
    """Guards: the gradients not averaged across processes (each steps on its half); overlapping shards
    (both take the same half); a global --batch_size taken per process (twice the images, half the steps)."""
    saved, reference = training_state(straight), one_process_reference(epochs=2)
    assert (saved["step"], saved["epoch"]) == (4, 2) and len(saved["losses"]) == 4
    assert saved["losses"] == pytest.approx(reference.losses, rel=1e-5)
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(saved["model"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    ema = {f"module.{k}": v for k, v in reference.ema.state_dict().items()}
    for name, tensor in ema.items():
        torch.testing.assert_close(saved["ema"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    meta = checkpoint.load_checkpoint(straight)["metadata"]
    assert (meta["processes"], meta["batch_per_process"], meta["train_config"]["batch_size"]) == (2, 16, BATCH)
    assert meta["recipe"].startswith("torchrun --nnodes=1 --nproc_per_node=2 -m course_lib train ddpm")


def test_resume_on_two_processes_continues_to_the_same_weights(straight, tmp_path):
    half = two_process_run(tmp_path, "half", 1)
    save_dir = half.parent
    result, writes = torchrun(tmp_path, save_dir, "--epochs", 2, "--resume", half)
    assert result.returncode == 0, result.stderr
    assert writes == ["0 ddpm_uncond.resume.pt", "0 ddpm_uncond.pt"]  # epoch 2 only
    resumed, uninterrupted = training_state(half), training_state(straight)
    assert resumed["losses"] == uninterrupted["losses"]
    for field in ("model", "ema"):
        for name, tensor in uninterrupted[field].items():
            assert torch.equal(resumed[field][name], tensor), f"{field}.{name}"


def test_a_resume_with_another_number_of_processes_is_refused(straight, tmp_path, capsys):
    """The shards and noise streams depend on the number of processes: one process cannot continue two's run."""
    code, err = main_exit(capsys, *TRAIN, "--epochs", 3, "--resume", straight, "--save_dir", tmp_path / "one")
    assert_refused(code, err, "this run would differ from the saved one in processes 2 -> 1")
    assert not (tmp_path / "one").exists()


def test_a_killed_process_ends_the_run_and_leaves_the_last_checkpoint_loadable(tmp_path):
    """Process 1 is killed (SIGKILL) in its 4th loss, inside epoch 2: process 0 stops with one line that says
    which epoch is kept, torchrun fails, and the epoch-1 checkpoint loads. A flow run: the third kind trains too."""
    save_dir = tmp_path / "killed"
    result, writes = torchrun(tmp_path, save_dir, "--epochs", 3, kind="flow", KILL_RANK=1, KILL_AT_LOSS=4)
    assert result.returncode != 0
    path = save_dir / "flow_cfg.pt"
    ours = [line for line in result.stderr.splitlines() if line.startswith("python -m course_lib train:")]
    assert len(ours) == 1, result.stderr  # process 0's line (process 1 was killed); torchrun's report follows
    # at step 3 (the 4th step waits for the killed process); which of gloo's error or torchrun's SIGTERM comes first
    # varies, and either way process 0 names the epoch it kept
    assert re.search(rf"interrupted at step [23]; kept the end of epoch 1 \(step 2\) in {re.escape(str(path))}: "
                     rf"--resume ", ours[0]), ours[0]
    assert writes == ["0 flow_cfg.resume.pt", "0 flow_cfg.pt"]
    assert sorted(p.name for p in save_dir.iterdir()) == ["flow_cfg.pt", "flow_cfg.resume.pt"]  # no lock, no .partial
    checkpoint.load_model(path, "flow", torch.device("cpu"))
    assert checkpoint.load_checkpoint(checkpoint.resume_path(path), kind="flow")["training"]["epoch"] == 1


# ---------------------------------------------------------------------------- bad launches: one line, exit 2
LAUNCH = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
          "MASTER_PORT": "29999"}


@pytest.fixture
def launch(monkeypatch):
    """The variables torchrun gives process 0 of two; init_process_group must not be reached."""
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: pytest.fail("training started"))
    return monkeypatch


@pytest.mark.parametrize("unset, named", [("MASTER_PORT", "MASTER_PORT is not set"),
                                          ("LOCAL_WORLD_SIZE", "LOCAL_WORLD_SIZE is not set")])
def test_a_launch_missing_a_rendezvous_variable_is_refused(launch, capsys, tmp_path, unset, named):
    launch.delenv(unset)
    code, err = main_exit(capsys, *TRAIN, "--save_dir", tmp_path / "run")
    assert_refused(code, err, f"{named}: start the run with torchrun")
    assert not (tmp_path / "run").exists()


def test_cuda_without_gpus_is_refused(launch, capsys, tmp_path):
    launch.setattr(torch.cuda, "is_available", lambda: False)
    args = [a if a != "cpu" else "cuda" for a in TRAIN]
    code, err = main_exit(capsys, *args, "--save_dir", tmp_path / "run")
    assert_refused(code, err, "--device cuda asked for CUDA, which is not available here")


def test_more_processes_than_gpus_is_refused(launch, capsys, tmp_path):
    launch.setattr(torch.cuda, "is_available", lambda: True)
    launch.setattr(torch.cuda, "device_count", lambda: 1)
    args = [a if a != "cpu" else "cuda" for a in TRAIN]
    code, err = main_exit(capsys, *args, "--save_dir", tmp_path / "run")
    assert_refused(code, err, "--device cuda: 2 processes on this machine but only 1 GPU; start at most "
                              "--nproc_per_node=1")
    code, err = main_exit(capsys, *[a if a != "cpu" else "cuda:0" for a in TRAIN], "--save_dir", tmp_path / "run")
    assert_refused(code, err, "--device cuda:0: under torchrun each process takes the GPU of its LOCAL_RANK")


def test_a_global_batch_that_does_not_divide_and_reflow_are_refused(launch, capsys, tmp_path):
    code, err = main_exit(capsys, *TRAIN, "--batch_size", 33, "--save_dir", tmp_path / "run")
    assert_refused(code, err, "--batch_size 33: the global batch must divide evenly among the 2 processes")
    code, err = main_exit(capsys, "train", "flow", "--reflow", tmp_path / "base.pt", "--save_dir", tmp_path / "run")
    assert_refused(code, err, "--reflow draws its pairs in one process")  # before the base is even read


def test_only_the_first_process_of_a_machine_reports_a_refusal(launch, capsys, tmp_path):
    launch.setenv("RANK", "1")
    launch.setenv("LOCAL_RANK", "1")
    code, err = main_exit(capsys, *TRAIN, "--batch_size", 33, "--save_dir", tmp_path / "run")
    assert (code, err) == (2, "")


def test_a_process_other_than_0_never_takes_the_lock_nor_checks_the_folder(launch, tmp_path):
    """It reaches the rendezvous without touching --save_dir (process 0 holds the lock and writes)."""
    launch.setenv("RANK", "1")
    launch.setenv("LOCAL_RANK", "1")
    reached = []

    def rendezvous(*args, **kwargs):
        reached.append(sorted(os.listdir(tmp_path)))
        raise KeyboardInterrupt  # stand in for torchrun stopping it

    launch.setattr(distributed.dist, "init_process_group", rendezvous)
    with pytest.raises(SystemExit) as stopped:
        cli.main([*map(str, TRAIN), "--save_dir", str(tmp_path / "run")])
    assert stopped.value.code == 130 and reached == [[]]
    assert not (tmp_path / "run").exists()


def test_a_plain_run_never_starts_a_process_group(monkeypatch, tmp_path):
    """No torchrun variables: the plain loop (bit for bit as before the distributed code)."""
    for name in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: pytest.fail("a process group"))
    monkeypatch.setattr(training, "DistributedDataParallel", lambda *a, **k: pytest.fail("DDP"))
    assert cli.main([*map(str, TRAIN), "--epochs", "1", "--max_steps", "1", "--save_dir", str(tmp_path)]) == 0
    assert checkpoint.load_checkpoint(tmp_path / "ddpm_uncond.pt")["metadata"]["processes"] == 1


def test_each_process_and_epoch_draws_its_own_noise_reproducibly():
    """The equality test takes its streams from noise_seed too, so this guards what it cannot: streams that
    repeat across processes or epochs (every process would noise its half alike)."""
    seeds = [distributed.noise_seed(SEED, epoch, rank) for epoch in range(3) for rank in range(4)]
    assert len(set(seeds)) == len(seeds) and seeds == [distributed.noise_seed(SEED, e, r) for e in range(3)
                                                       for r in range(4)]
    draws = [torch.randn(4, generator=torch.Generator().manual_seed(distributed.noise_seed(SEED, 0, r)))
             for r in (0, 1)]
    assert not torch.equal(*draws)
