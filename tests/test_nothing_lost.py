"""The reliability matrix: nothing a user points the tools at is ever lost or silently corrupted.

Each case runs a tool (``train``, ``infer`` or a benchmark) the way a careless or unlucky user would:
into a folder that holds a run, onto the checkpoint, into a folder another run writes, with absurd
sizes, malformed checkpoints, resume files and pair caches, or a full disk. Each must end with exit
status 2 and one line on stderr, before any sampling where it can be found before, and leave every
file that was there byte for byte as it was. Apart from the matrix: two runs into one folder at once,
a kill while an image is written, and the pair cache keyed by its base's content.
"""

import fcntl
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, run, snapshot, start_driver, tiny_run

from benchmarks import ddpm_recipes, quality, sweep
from course_lib import checkpoint, cli, data, evaluation, plotting
from course_lib.cli import checks as cli_checks
from course_lib.cli import reflow as cli_reflow
from course_lib.cli import sampling

TRAIN = ["--preset", "tiny", "--batch_size", "32", "--limit", "64", "--device", "cpu"]
RESUME = ["train", "ddpm", *TRAIN, "--epochs", "2"]
REFLOW = ["train", "flow", "--reflow", "{flow}", "--num_pairs", "8", "--epochs", "1", "--batch_size", "4",
          "--max_steps", "2", "--limit", "64", "--device", "cpu"]


def save_variant(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def broken_resume(root: Path, name: str, run_checkpoint: Path, change) -> Path:
    """A copy of a run whose .resume.pt ``change(state)`` broke; returns the slim checkpoint's path."""
    folder = root / "broken_resume" / name
    folder.mkdir(parents=True)
    slim = folder / run_checkpoint.name
    slim.write_bytes(run_checkpoint.read_bytes())
    state = torch.load(checkpoint.resume_path(run_checkpoint), weights_only=True)
    change(state["training"])
    torch.save(state, checkpoint.resume_path(slim))
    return slim


# ---------------------------------------------------------------------------- fixtures: made once per module
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("nothing_lost")
    places = {"ddpm": tiny_run("ddpm", root / "ddpm_run"), "ddpm_b": tiny_run("ddpm", root / "ddpm_b"),
              "cfg": tiny_run("cfg", root / "cfg_run"), "flow": tiny_run("flow", root / "flow_run")}
    places["ddpm_dir"] = places["ddpm"].parent
    images = root / "images"
    images.mkdir()
    places["grid"] = images / "grid.png"  # a grid infer wrote: it may replace it
    assert run("infer", "ddpm", "--ckpt", places["ddpm"], "--output", places["grid"], "--num_images", 4,
               "--steps", 2, "--device", "cpu") == 0
    places["foreign"] = images / "photo.png"  # someone else's image
    from PIL import Image
    Image.new("L", (8, 8), 128).save(places["foreign"])
    places["notes"] = images / "notes.png"  # not an image at all
    places["notes"].write_text("my notes, named .png by mistake")
    places["ckpt_png"] = images / "model.png"  # a checkpoint under an image's name
    places["ckpt_png"].write_bytes(places["ddpm"].read_bytes())
    places["link_png"] = images / "link.png"
    places["link_png"].symlink_to(places["ddpm"])

    payload = torch.load(places["ddpm"], weights_only=True)
    broken = root / "broken"
    meta = payload["metadata"]
    variants = {
        "no_model_config": {k: v for k, v in payload.items() if k != "model_config"},
        "no_state_dict": {k: v for k, v in payload.items() if k != "state_dict"},
        "state_dict_list": {**payload, "state_dict": list(payload["state_dict"].values())},
        "state_dict_text": {**payload, "state_dict": {**payload["state_dict"], "pos_embed": "weights"}},
        "model_config_text": {**payload, "model_config": "tiny"},
        "guide_without_weights": {**payload, "guide": {"model_config": payload["model_config"]}},
        "num_timesteps_text": {**payload, "metadata": {**meta, "num_timesteps": "1000"}},
        "guidance_scale_text": {**payload, "metadata": {**meta, "guidance_scale": "high"}},
        "schedule_unknown": {**payload, "metadata": {**meta, "schedule": "quadratic"}},
    }
    nan = dict(payload["state_dict"])
    nan["patch_embed.weight"] = nan["patch_embed.weight"].clone().fill_(float("nan"))
    variants["nan_weights"] = {**payload, "state_dict": nan}
    for name, variant in variants.items():
        places[name] = save_variant(broken / f"{name}.pt", variant)

    def drop(field):
        return lambda training: training.pop(field)

    def poison(field):
        def change(training):
            tensors = training[field]["state"][0] if field == "optimizer" else training[field]
            name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim())
            tensors[name] = torch.full_like(tensors[name], float("nan"))
        return change

    def fewer_parameters(training):
        training["optimizer"]["param_groups"][0]["params"].pop()

    def wrong_moment_shape(training):
        training["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3, 3)

    def step_text(training):
        training["step"] = "2"

    for name, change in {"resume_no_optimizer": drop("optimizer"), "resume_nan_ema": poison("ema"),
                         "resume_nan_optimizer": poison("optimizer"), "resume_nan_model": poison("model"),
                         "resume_foreign_optimizer": fewer_parameters, "resume_moment_shape": wrong_moment_shape,
                         "resume_step_text": step_text}.items():
        places[name] = broken_resume(root, name, places["ddpm"], change)

    reflow_dir = root / "reflow_run"
    assert run(*[str(places["flow"]) if a == "{flow}" else a for a in REFLOW], "--save_dir", reflow_dir) == 0
    pairs = torch.load(reflow_dir / cli_reflow.PAIRS_FILE, weights_only=True)
    places["reflow_dir"] = reflow_dir
    places["pairs_no_labels"] = root / "pairs_no_labels"
    places["pairs_no_labels"].mkdir()
    for name in ("flow_reflow.pt", "flow_reflow.resume.pt"):
        (places["pairs_no_labels"] / name).write_bytes((reflow_dir / name).read_bytes())
    torch.save({k: v for k, v in pairs.items() if k != "labels"}, places["pairs_no_labels"] / cli_reflow.PAIRS_FILE)
    places["pairs_nan"] = root / "pairs_nan"
    places["pairs_nan"].mkdir()
    torch.save({**pairs, "images": pairs["images"] * float("nan")}, places["pairs_nan"] / cli_reflow.PAIRS_FILE)
    places["root"] = root
    return places


def hold_lock(folder: Path) -> int:
    """Take ``folder``'s run lock as another run would, with its line: pid 4242."""
    handle = os.open(folder / cli_checks.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(handle, b"pid 4242: python -m course_lib train ddpm")
    return handle


def disk_full(*args):
    raise OSError(28, "No space left on device")


# (case id, tool, argv with {placeholders}, text the one line must contain (or each of a tuple's texts), setup).
# Tools: the command line ("cli") or a benchmark's main. Setups: "late" lets data and sampling run (the fault
# comes later), "locked" holds the folder's lock, "full_disk" fails every flush to disk.
MATRIX = [
    # no silent overwrite
    ("train_into_a_folder_holding_that_run", "cli", "train ddpm {train} --max_steps 2 --save_dir {ddpm_dir}",
     "already holds a run (ddpm_uncond.pt); continue it with --resume", ""),
    ("resume_another_run_into_a_folder_holding_one", "cli", "{resume} --save_dir {ddpm_dir} --resume {ddpm_b}",
     "already holds a run (ddpm_uncond.pt)", ""),
    ("infer_output_is_the_checkpoint", "cli", "infer ddpm --ckpt {ckpt_png} --output {ckpt_png} --overwrite",
     "is the checkpoint --ckpt", ""),
    ("infer_output_links_to_the_checkpoint", "cli", "infer ddpm --ckpt {ddpm} --output {link_png} --overwrite",
     "is the checkpoint --ckpt", ""),
    ("infer_output_not_an_image", "cli", "infer ddpm --ckpt {ddpm} --output {notes} --overwrite",
     "exists and is not a PNG or JPEG image", ""),
    ("infer_output_someone_elses_image", "cli", "infer ddpm --ckpt {ddpm} --output {foreign}",
     "exists and is not a grid infer wrote; replace it with --overwrite", ""),
    # one writer per folder
    ("train_into_a_folder_another_run_writes", "cli",
     "train ddpm {train} --max_steps 2 --overwrite --save_dir {ddpm_dir}",
     "another run is writing into it (pid 4242: python -m course_lib train ddpm)", "locked"),
    ("resume_while_the_run_still_writes", "cli", "{resume} --save_dir {ddpm_dir} --resume {ddpm}",
     "another run is writing into it (pid 4242", "locked"),
    # bounds
    ("infer_flow_steps_10_million", "cli", "infer flow --ckpt {flow} --output {new_png} --steps 10000000",
     ("--steps", "must be at most 1,000", "got 10,000,000"), ""),
    ("infer_sde_steps_5000", "cli", "infer flow --ckpt {flow} --output {new_png} --sampler sde --steps 5000",
     ("--steps", "must be at most 1,000", "got 5,000"), ""),
    ("infer_num_images_50000", "cli", "infer ddpm --ckpt {ddpm} --output {new_png} --num_images 50000",
     "--num_images: must be at most 1,024", ""),
    ("train_img_size_1024", "cli", "train ddpm {train} --img_size 1024 --save_dir {new_dir}",
     "--img_size: must be at most 64", ""),
    ("train_patch_size_1", "cli", "train ddpm {train} --patch_size 1 --save_dir {new_dir}",
     "--patch_size 1: 1024 patches per 32-pixel image, at most 256", ""),
    ("train_batch_size_10_million", "cli", "train ddpm {train} --batch_size 10000000 --save_dir {new_dir}",
     "--batch_size: must be at most 4,096", ""),
    ("reflow_num_pairs_10_million", "cli", "{reflow} --num_pairs 10000000 --save_dir {new_dir}",
     "--num_pairs: must be at most 120,000", ""),
    ("reflow_pair_steps_1_million", "cli", "{reflow} --pair_steps 1000000 --save_dir {new_dir}",
     "--pair_steps: must be at most 1,000", ""),
    # malformed checkpoints
    ("checkpoint_without_model_config", "cli", "infer ddpm --ckpt {no_model_config} --output {new_png}",
     "no_model_config.pt: field model_config is missing", ""),
    ("checkpoint_without_state_dict", "cli", "infer ddpm --ckpt {no_state_dict} --output {new_png}",
     "no_state_dict.pt: field state_dict is missing", ""),
    ("checkpoint_state_dict_a_list", "cli", "infer ddpm --ckpt {state_dict_list} --output {new_png}",
     "field state_dict must be a dict, got list", ""),
    ("checkpoint_weight_not_a_tensor", "cli", "infer ddpm --ckpt {state_dict_text} --output {new_png}",
     "field state_dict['pos_embed'] must be a tensor, got str", ""),
    ("checkpoint_model_config_text", "cli", "infer ddpm --ckpt {model_config_text} --output {new_png}",
     "field model_config must be a dict, got str", ""),
    ("checkpoint_guide_without_weights", "cli", "infer ddpm --ckpt {guide_without_weights} --output {new_png}",
     "field guide.state_dict is missing", ""),
    ("checkpoint_num_timesteps_text", "cli", "infer ddpm --ckpt {num_timesteps_text} --output {new_png}",
     "field metadata.num_timesteps must be an integer in [1, 10000], got '1000'", ""),
    ("checkpoint_guidance_scale_text", "cli", "infer ddpm --ckpt {guidance_scale_text} --output {new_png}",
     "field metadata.guidance_scale must be a finite number >= 0, got 'high'", ""),
    ("checkpoint_unknown_schedule", "cli", "infer ddpm --ckpt {schedule_unknown} --output {new_png}",
     "field metadata.schedule must be one of", ""),
    ("checkpoint_nan_weights", "cli", "infer ddpm --ckpt {nan_weights} --output {new_png}",
     "holds NaN or Inf in ['patch_embed.weight']", ""),
    ("init_without_state_dict", "cli", "train ddpm {train} --max_steps 1 --save_dir {new_dir} --init {no_state_dict}",
     "--init: ", ""),
    # malformed resume files
    ("resume_without_optimizer", "cli", "{resume} --save_dir {new_dir} --resume {resume_no_optimizer}",
     "ddpm_uncond.resume.pt: field training.optimizer is missing", ""),
    ("resume_nan_in_ema", "cli", "{resume} --save_dir {new_dir} --resume {resume_nan_ema}",
     "field training.ema['module.", ""),
    ("resume_nan_in_raw_weights", "cli", "{resume} --save_dir {new_dir} --resume {resume_nan_model}",
     "field training.model[", ""),
    ("resume_nan_in_optimizer", "cli", "{resume} --save_dir {new_dir} --resume {resume_nan_optimizer}",
     "field training.optimizer.state[0]", ""),
    ("resume_foreign_optimizer", "cli", "{resume} --save_dir {new_dir} --resume {resume_foreign_optimizer}",
     "it belongs to another model", ""),
    ("resume_optimizer_moment_of_another_shape", "cli", "{resume} --save_dir {new_dir} --resume {resume_moment_shape}",
     "training.optimizer.state[0].exp_avg has shape (3, 3)", ""),
    ("resume_step_text", "cli", "{resume} --save_dir {new_dir} --resume {resume_step_text}",
     "field training.step must be a int, got str", ""),
    # malformed pair caches (found after the data are loaded: the cache is read where it is used)
    ("pair_cache_without_labels", "cli", "{reflow} --save_dir {pairs_no_labels} --overwrite",
     "reflow_pairs.pt: field labels must be a tensor", "late"),
    ("pair_cache_with_nan", "cli", "{reflow} --save_dir {pairs_nan}",
     "reflow_pairs.pt: field images must hold finite numbers", "late"),
    # a full disk: the write fails, the files there before stay
    ("full_disk_while_training", "cli", "train ddpm {train} --max_steps 2 --overwrite --save_dir {ddpm_dir}",
     "No space left on device; the file there before (if any) is unchanged", "late full_disk"),
    ("full_disk_while_writing_the_grid", "cli", "infer ddpm --ckpt {ddpm} --output {grid} --num_images 4 --steps 2",
     "could not write " + "{grid}: No space left on device", "late full_disk"),
    # the benchmarks
    ("sweep_choose_from_20_images", "sweep", "guidance --ckpt {cfg} --kind cfg --choose --n 20 --no-record",
     "--n 20: --choose needs at least 500 images per row", ""),
    ("sweep_json_in_a_missing_folder", "sweep", "guidance --ckpt {cfg} --kind cfg --json {new_dir}/rows.json",
     "does not exist", ""),
    ("sweep_json_over_a_file", "sweep", "uncond --ckpt {ddpm} --json {notes} --no-record",
     "--json", ""),
    ("sweep_choose_for_nfe", "sweep", "nfe --flow {flow} --cfg {cfg} --choose --no-record",
     "--choose stores a recommended scale: it applies to guidance and autoguidance, not nfe", ""),
    ("sweep_without_its_checkpoint", "sweep", "sde --no-record", "sde needs --ckpt", ""),
    ("sweep_steps_10_million", "sweep", "guidance --ckpt {cfg} --kind cfg --steps 10000000",
     "--steps: must be at most 1,000", ""),
    ("sweep_guide_of_another_kind", "sweep", "autoguidance --ckpt {ddpm} --guide {cfg} --no-record",
     "holds a 'cfg' model, expected 'ddpm'", ""),
    ("sweep_guidance_for_ddpm_without_a_guide", "sweep", "guidance --ckpt {ddpm} --no-record",
     "carries no guide for autoguidance", ""),
    ("sweep_choose_into_a_folder_another_run_writes", "sweep",
     "guidance --ckpt {ddpm} --choose --n 500 --no-record", "another run is writing into it (pid 4242", "locked"),
    ("sweep_broken_checkpoint", "sweep", "uncond --ckpt {no_state_dict} --no-record", "field state_dict is missing",
     ""),
    ("quality_into_a_missing_checkpoint", "quality", "--ckpt {new_dir}/x.pt --into-checkpoint --no-record",
     "does not exist", ""),
    ("quality_steps_5000", "quality", "--ckpt {ddpm} --steps 20 5000 --no-record", "--steps: must be at most 1,000",
     ""),
    ("quality_other_kind", "quality", "--ckpt {cfg} --no-record", "holds a 'cfg' model, expected 'ddpm'", ""),
    ("quality_both_sources", "quality", "--ckpt {ddpm} --stand-in real --no-record",
     "give exactly one of --ckpt and --stand-in", ""),
    ("recipes_second_checkpoint_broken", "ddpm_recipes", "{ddpm} {nan_weights} --n 20 --no-record",
     "holds NaN or Inf", ""),
]
TOOLS = {"sweep": sweep.main, "quality": quality.main, "ddpm_recipes": ddpm_recipes.main,
         "cli": lambda argv: cli.main(argv)}


def run_tool(tool: str, argv: list[str]) -> int:
    try:
        return TOOLS[tool](argv)
    except SystemExit as stopped:
        return stopped.code


@pytest.mark.parametrize("case, tool, argv, message, setup", MATRIX, ids=[c[0] for c in MATRIX])
def test_the_matrix_refuses_in_one_line_and_every_file_stays(world, tmp_path, capsys, monkeypatch, case, tool, argv,
                                                             message, setup):
    if "late" not in setup:  # found before any data are loaded or any sample drawn
        monkeypatch.setattr(data, "load_mnist", lambda *a, **k: pytest.fail("data loaded before the refusal"))
        monkeypatch.setattr(evaluation, "measure_quality", lambda *a, **k: pytest.fail("sampled before the refusal"))
        monkeypatch.setattr(sampling.Sampler, "__call__", lambda *a, **k: pytest.fail("sampled before the refusal"))
    places = {k: str(v) for k, v in world.items()}
    places.update(new_dir=str(tmp_path / "new"), new_png=str(tmp_path / "new.png"), train=" ".join(TRAIN),
                  resume=" ".join(RESUME), reflow=" ".join(REFLOW).replace("{flow}", places["flow"]))
    argv = argv.format(**places).split()
    messages = [part.format(**places) for part in ([message] if isinstance(message, str) else message)]
    held = None
    if "locked" in setup:
        folder = Path(argv[argv.index("--save_dir") + 1] if "--save_dir" in argv else places["ddpm_dir"])
        held = hold_lock(folder)
    watched = [world["root"], tmp_path]
    before = snapshot(*watched)
    if "full_disk" in setup:
        monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    capsys.readouterr()
    try:
        code = run_tool(tool, argv)
        monkeypatch.undo()
        after = snapshot(*watched)
    finally:
        monkeypatch.undo()
        if held is not None:  # the other run's lock, still its own
            os.close(held)
            (folder / cli_checks.LOCK_FILE).unlink()
    err = capsys.readouterr().err
    assert code == 2, err
    assert all(part in err for part in messages), err
    assert err.count("\n") == 1 and err.count("error:") == 1 and "Traceback" not in err, err
    assert after == before  # byte for byte, and no file added: no temporary, no lock of its own left
    assert not (tmp_path / "new").exists()


def test_the_matrix_covers_every_tool_and_class():
    assert len(MATRIX) >= 50 and len({c[0] for c in MATRIX}) == len(MATRIX)
    assert {c[1] for c in MATRIX} == set(TOOLS)
    assert {c[2].split()[0] for c in MATRIX if c[1] == "cli"} >= {"train", "infer", "{resume}", "{reflow}"}


# ---------------------------------------------------------------------------- what the refusals leave possible
def test_overwrite_replaces_a_run_and_resume_continues_the_one_there(world, tmp_path):
    folder = tmp_path / "run"
    first = tiny_run("ddpm", folder)
    old = first.read_bytes()
    assert run("train", "ddpm", *TRAIN, "--epochs", "2", "--save_dir", folder, "--resume", first) == 0  # the run there
    resumed = first.read_bytes()
    assert resumed != old
    assert run("train", "ddpm", *TINY, "--max_steps", "1", "--save_dir", folder, "--overwrite") == 0
    assert first.read_bytes() != resumed and torch.load(first, weights_only=True)["metadata"]["step"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["ddpm_uncond.pt", "ddpm_uncond.resume.pt"]  # no lock left


def test_infer_replaces_its_own_grid_and_with_overwrite_another_image(world, tmp_path):
    grid, foreign = tmp_path / "grid.png", tmp_path / "photo.jpg"
    common = ["--ckpt", world["ddpm"], "--num_images", 4, "--steps", 2, "--device", "cpu"]
    assert run("infer", "ddpm", *common, "--output", grid) == 0
    assert plotting.grid_file_kind(grid) == "grid"
    assert run("infer", "ddpm", *common, "--output", grid, "--seed", 3) == 0  # its own grid: replaced
    from PIL import Image
    Image.new("RGB", (8, 8)).save(foreign)
    assert plotting.grid_file_kind(foreign) == "image"
    assert run("infer", "ddpm", *common, "--output", foreign, "--overwrite") == 0
    assert plotting.grid_file_kind(foreign) == "grid"  # a JPEG grid carries the tag in its comment
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "photo.jpg"]  # no temporary left


def test_a_stale_temporary_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    folder = tmp_path / "run"
    checkpoint_path = tiny_run("ddpm", folder)
    stale = folder / "ddpm_uncond.pt.k1ll3d.partial"
    stale.write_bytes(b"half a checkpoint")
    assert run("train", "ddpm", *TINY, "--max_steps", 2, "--save_dir", folder, "--overwrite") == 0
    assert not stale.exists() and checkpoint_path.is_file()


def test_write_atomically_uses_a_unique_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    """Guards: a fixed temporary name two writers share; a temporary left after a failed write."""
    path = tmp_path / "f.txt"
    checkpoint.write_text_atomically(path, "old")
    names = []

    def write(temporary):
        names.append(temporary.name)
        temporary.write_text("half")
        raise KeyboardInterrupt

    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            checkpoint.write_atomically(path, write)
    assert names[0] != names[1] and all(n.startswith("f.txt.") and n.endswith(".partial") for n in names)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_the_pair_cache_is_keyed_by_the_base_checkpoints_content(world, tmp_path, capsys):
    """Guards: pairs reused after the base file was replaced by another model at the same path."""
    base = tmp_path / "base" / "flow_cfg.pt"
    base.parent.mkdir()
    base.write_bytes(world["flow"].read_bytes())
    argv = [a.replace("{flow}", str(base)) for a in REFLOW] + ["--save_dir", str(tmp_path / "re")]
    assert run(*argv) == 0
    first = torch.load(tmp_path / "re" / cli_reflow.PAIRS_FILE, weights_only=True)
    other = torch.load(world["flow"], weights_only=True)
    other["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    torch.save(other, base)  # another model, same path
    capsys.readouterr()
    code = run(*argv, "--resume", tmp_path / "re" / "flow_reflow.pt", "--epochs", "2")
    err = capsys.readouterr().err
    assert code == 2 and "reflow_sha256" in err and err.count("\n") == 1  # a resume cannot switch bases
    assert run(*argv, "--overwrite") == 0
    assert "drawing them again" in capsys.readouterr().out
    second = torch.load(tmp_path / "re" / cli_reflow.PAIRS_FILE, weights_only=True)
    assert second["key"]["reflow_sha256"] == checkpoint.file_sha256(base) != first["key"]["reflow_sha256"]
    assert torch.equal(first["noise"], second["noise"])  # the same seed: the same noise ...
    assert not torch.equal(first["images"], second["images"])  # ... carried elsewhere by the other base


# ---------------------------------------------------------------------------- real processes, real signals
# The driver (cli_helpers.DRIVER): PAUSE_AT_LOSS=n sleeps inside the n-th training loss; STALL_IMAGE=1 writes
# half of the image's temporary file, flushes it and sleeps there. Either writes MARKER first.


def test_two_runs_into_one_folder_the_second_is_refused_at_once_naming_the_first(tmp_path, capsys):
    """Guards: both runs writing one folder (torn checkpoints, one run dying on a vanished temporary)."""
    folder = tmp_path / "run"
    first, _ = start_driver(tmp_path, ["train", "ddpm", *TINY, "--save_dir", folder], PAUSE_AT_LOSS=1)
    try:
        before = snapshot(folder)
        assert set(before) == {folder / cli_checks.LOCK_FILE}
        capsys.readouterr()
        started = time.monotonic()
        code = run("train", "ddpm", *TINY, "--save_dir", folder)
        err = capsys.readouterr().err
        assert code == 2 and f"another run is writing into it (pid {first.pid}: " in err, err
        assert err.count("\n") == 1 and time.monotonic() - started < 60
        assert snapshot(folder) == before
    finally:
        first.send_signal(signal.SIGTERM)  # handled as Ctrl-C: says what it kept, removes its lock
        out, err = first.communicate(timeout=120)
    assert first.returncode == 130 and "before the first epoch ended: nothing was saved" in err, err
    assert not folder.exists()  # the folder it made, empty: removed with its lock
    assert run("train", "ddpm", *TINY, "--max_steps", 2, "--save_dir", folder) == 0  # the folder is free again


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_while_the_image_is_written_leaves_the_old_image(world, tmp_path, signum):
    """Guards: writing the image in place (a kill left a 0-byte or half file where the old image was)."""
    grid = tmp_path / "grid.png"
    grid.write_bytes(world["grid"].read_bytes())
    old = grid.read_bytes()
    argv = ["infer", "ddpm", "--ckpt", world["ddpm"], "--output", grid, "--num_images", 4, "--steps", 2, "--seed", 9,
            "--device", "cpu"]
    process, where = start_driver(tmp_path, argv, STALL_IMAGE=1)
    assert where.startswith(f"writing {tmp_path}/grid.png.") and where.endswith(".partial")
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert grid.read_bytes() == old
    temporaries = [p.name for p in tmp_path.glob("grid.png.*.partial")]
    if signum == signal.SIGKILL:  # nothing runs after SIGKILL: the half temporary stays beside the intact image
        assert process.returncode == -signal.SIGKILL and len(temporaries) == 1
    else:
        assert process.returncode == 130 and temporaries == []
        assert err == (f"python -m course_lib infer: interrupted before {grid} was written: the file there before "
                       f"is unchanged; run the same command again to draw the grid\n")


def test_the_gif_writer_writes_through_the_atomic_helper(tmp_path, monkeypatch):
    """Guards: the GIF written in place, so a failed write leaves half a file where the old GIF was."""
    frames = [torch.zeros(4, 1, 8, 8), torch.ones(4, 1, 8, 8)]
    path = tmp_path / "chain.gif"
    assert plotting.reverse_animation_gif(frames, path=path) == path.read_bytes()
    old = path.read_bytes()
    monkeypatch.setattr(checkpoint.os, "fsync", disk_full)
    with pytest.raises(checkpoint.WriteError, match=f"No space left on device: '{path}'"):
        plotting.reverse_animation_gif(frames[::-1], path=path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["chain.gif"]
