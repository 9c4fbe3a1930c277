"""The bad-input matrix: every wrong input gives one clear message, and no file is written or changed.

Command line (`train`/`infer` of ddpm, cfg and flow): exit status 2, one line on stderr naming the
problem, and every folder the command could touch is byte for byte what it was. Library: one
exception whose message names the problem, and nothing written either.
"""

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from cli_helpers import snapshot

from course_lib import checkpoint, cli, config, data, ddpm, dit, flow, guidance
from course_lib.cli.train import CHECKPOINT_NAMES

TINY = ["--preset", "tiny", "--epochs", "1", "--batch_size", "32", "--max_steps", "2", "--limit", "64",
        "--device", "cpu"]


def main(*args) -> int:
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as stopped:
        return stopped.code


class Bomb:
    """Unpickling this creates ``marker``: a stand-in for a checkpoint that runs code when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


# ---------------------------------------------------------------------------- fixtures: made once per module
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny checkpoints of the three kinds, broken checkpoints, and a data root with a corrupt IDX file."""
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {}
    for kind in cli.KINDS:
        folder = root / f"{kind}_run"
        extra = ["--time_sampling", "logit_normal"] if kind == "flow" else []
        assert main("train", kind, *TINY, "--save_dir", folder, *extra) == 0
        paths[kind] = folder / CHECKPOINT_NAMES[kind]
    broken = root / "broken"
    broken.mkdir()
    paths["truncated"] = broken / "truncated.pt"
    paths["truncated"].write_bytes(paths["ddpm"].read_bytes()[:4000])
    paths["random_bytes"] = broken / "random.pt"
    paths["random_bytes"].write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8,
                                                    generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    payload = torch.load(paths["ddpm"], weights_only=True)
    paths["other_config"] = broken / "depth3.pt"
    torch.save({**payload, "model_config": {**payload["model_config"], "depth": 3}}, paths["other_config"])
    # the pickle that would run code: its "metadata" unpickles to Path.touch(marker)
    paths["marker"] = root / "pwned"
    paths["bomb"] = broken / "bomb.pt"
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "kind": "cfg", "model_config": payload["model_config"],
                "state_dict": {}, "metadata": Bomb(paths["marker"])}, paths["bomb"])
    # MNIST with one corrupt file; the three good ones are links to the real data
    good = data.raw_dir(data.ensure_mnist(allow_fetch=False))
    raw = root / "corrupt_data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_MD5:
        if name == "train-labels-idx1-ubyte":
            corrupt = bytearray((good / name).read_bytes())
            corrupt[100] ^= 0xFF  # one flipped byte: same size, wrong MD5
            (raw / name).write_bytes(bytes(corrupt))
        else:
            (raw / name).symlink_to(good / name)
    paths["corrupt_data"] = root / "corrupt_data"
    return paths


def test_the_pickle_bomb_is_armed(world):
    """Unpickled without ``weights_only``, the checkpoint runs code; else its refusal below proves nothing."""
    with zipfile.ZipFile(world["bomb"]) as archive:
        source = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    try:
        pickle.loads(source)  # what torch.load(weights_only=False) would do with it
        assert world["marker"].exists()
    finally:
        world["marker"].unlink(missing_ok=True)


# ---------------------------------------------------------------------------- the command line
READ_ONLY_REASON = "root writes through chmod; the case uses /proc, where even root cannot create files"


def read_only_dir(tmp_path: Path) -> Path:
    """A folder nobody can create files in: chmod 555 for a normal user, /proc for root."""
    if os.geteuid() == 0:
        if not Path("/proc").is_dir():
            pytest.skip(f"running as root without /proc: {READ_ONLY_REASON}")
        return Path("/proc")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


# (case id, argv with placeholders, text the one-line message must contain: one string, or each of a tuple's)
CLI_CASES = [
    ("label_10", "infer cfg --ckpt {cfg} --output {out} --label 10", "--label: must be a digit 0-9, got 10"),
    ("label_-1", "infer flow --ckpt {flow} --output {out} --label -1", "--label: must be a digit 0-9, got -1"),
    ("label_four", "infer cfg --ckpt {cfg} --output {out} --label four", "--label: must be a digit 0-9, got 'four'"),
    ("label_for_ddpm", "infer ddpm --ckpt {ddpm} --output {out} --label 4", "--label applies to cfg/flow models"),
    ("guidance_nan", "infer flow --ckpt {flow} --output {out} --guidance_scale nan",
     "--guidance_scale: must be a finite number, got nan"),
    ("guidance_inf", "infer cfg --ckpt {cfg} --output {out} --guidance_scale inf",
     "--guidance_scale: must be a finite number, got inf"),
    ("guidance_negative", "infer cfg --ckpt {cfg} --output {out} --guidance_scale=-1",
     ("--guidance_scale", "must lie in [0, 20]", "-1.0")),
    ("guidance_huge", "infer flow --ckpt {flow} --output {out} --guidance_scale 25",
     ("--guidance_scale", "must lie in [0, 20]", "25.0")),
    ("steps_0", "infer ddpm --ckpt {ddpm} --output {out} --steps 0", "--steps: must be a positive integer, got 0"),
    ("steps_negative", "infer flow --ckpt {flow} --output {out} --steps=-3",
     "--steps: must be a positive integer, got -3"),
    ("steps_not_integer", "infer cfg --ckpt {cfg} --output {out} --steps 2.5",
     "--steps: must be a positive integer, got '2.5'"),
    ("patch_does_not_divide", "train flow --preset tiny --img_size 30 --save_dir {save}",
     "patch_size 4 does not divide img_size 30"),
    ("channels_3", "train cfg --channels 3 --save_dir {save}", "--channels 3: MNIST has 1 channel"),
    ("truncated_checkpoint", "infer ddpm --ckpt {truncated} --output {out}", "is not a readable checkpoint"),
    ("random_bytes_checkpoint", "infer flow --ckpt {random_bytes} --output {out}",
     "is not a readable checkpoint (not a torch.save file"),
    ("pickle_that_runs_code", "infer cfg --ckpt {bomb} --output {out}",
     "is not a readable checkpoint (loading it would call getattr, which weights_only=True refuses"),
    ("other_kind_flow_given_cfg", "infer flow --ckpt {cfg} --output {out}", "holds a 'cfg' model, expected 'flow'"),
    ("other_kind_cfg_given_ddpm", "infer cfg --ckpt {ddpm} --output {out}", "holds a 'ddpm' model, expected 'cfg'"),
    ("config_disagrees_with_weights", "infer ddpm --ckpt {other_config} --output {out}",
     "depth 3 in the config but 2 in the weights"),
    ("resume_with_other_config", "train flow " + " ".join(TINY) + " --time_sampling logit_normal --img_size 28 "
     "--save_dir {save} --resume {flow}", "this run would differ from the saved one in img_size 32 -> 28"),
    ("output_in_missing_dir", "infer ddpm --ckpt {ddpm} --output {missing}/grid.png",
     "does not exist"),
    ("output_in_read_only_dir", "infer flow --ckpt {flow} --output {read_only}/grid.png", "cannot create files in"),
    ("save_dir_read_only", "train ddpm --save_dir {read_only}/run", "cannot create files in"),
    ("corrupt_idx_file", "train cfg " + " ".join(TINY) + " --save_dir {save}",
     "train-labels-idx1-ubyte is corrupt"),
]


@pytest.mark.parametrize("case, argv, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_command_line_refuses_with_one_line_and_writes_nothing(world, tmp_path, capsys, monkeypatch,
                                                                   case, argv, message):
    if case == "corrupt_idx_file":
        monkeypatch.setenv("COURSE_DATA", str(world["corrupt_data"]))
    places = {**world, "out": tmp_path / "grid.png", "save": tmp_path / "run",
              "missing": tmp_path / "no" / "such"}
    if "{read_only}" in argv:
        places["read_only"] = read_only_dir(tmp_path)
    watched = [tmp_path, *{Path(world[k]).parent for k in cli.KINDS}, world["truncated"].parent,
               world["corrupt_data"]]
    before = snapshot(*watched)
    capsys.readouterr()
    code = main(*argv.format(**places).split())
    err = capsys.readouterr().err
    assert code == 2, err
    assert all(part in err for part in ([message] if isinstance(message, str) else message)), err
    assert err.count("\n") == 1 and err.count("error:") == 1 and "Traceback" not in err, err
    assert snapshot(*watched) == before
    assert not world["marker"].exists()


def test_the_matrix_has_at_least_20_cases_over_every_command():
    assert len(CLI_CASES) >= 20
    used = {tuple(argv.split()[:2]) for _, argv, _ in CLI_CASES}
    assert {("infer", "ddpm"), ("infer", "cfg"), ("infer", "flow"), ("train", "ddpm"), ("train", "cfg"),
            ("train", "flow")} <= used


# ---------------------------------------------------------------------------- the library
def toy_flow_model(x_t, t, labels=None):
    return flow.gaussian_velocity(0.0, 1.0)(x_t, t, labels)


def zero_noise(x_t, step, labels=None):
    return torch.zeros_like(x_t)


SHAPE = (2, 1, 8, 8)
NOISE = config.randn(SHAPE, torch.Generator().manual_seed(0))  # the samplers take their start noise from the caller
SCHEDULER = ddpm.NoiseScheduler()

# (case id, call, error type, what the message must name: the argument and the value refused)
LIBRARY_CASES = [
    ("labels_10", lambda w: guidance.check_labels(torch.tensor([3, 10])), ValueError, ("labels", "10")),
    ("labels_-1_in_a_sampler", lambda w: flow.sample_ode(toy_flow_model, NOISE, torch.tensor([-1, 3]), num_steps=2,
                                                         guidance_scale=2.0), ValueError, ("labels", "-1")),
    ("labels_float", lambda w: guidance.check_labels(torch.tensor([4.0])), TypeError, ("labels", "float")),
    ("guidance_nan", lambda w: flow.sample_ode(toy_flow_model, NOISE, torch.tensor([1, 2]), num_steps=2,
                                               guidance_scale=float("nan")), ValueError, ("guidance_scale", "nan")),
    ("guidance_negative", lambda w: ddpm.sample_ddim(zero_noise, SCHEDULER, NOISE, torch.tensor([1, 2]), num_steps=2,
                                                     guidance_scale=-1.0), ValueError, ("guidance_scale", "-1.0")),
    ("ode_steps_0", lambda w: flow.sample_ode(toy_flow_model, NOISE, num_steps=0), ValueError, ("num_steps", "0")),
    ("sde_steps_negative", lambda w: flow.sample_sde(toy_flow_model, NOISE, num_steps=-4), ValueError,
     ("num_steps", "-4")),
    # a wrong type is a TypeError since the redesign (issue 23: plain ValueError/TypeError naming the argument)
    ("ode_steps_not_integer", lambda w: flow.sample_ode(toy_flow_model, NOISE, num_steps=2.5), TypeError,
     ("num_steps", "2.5")),
    ("ddim_steps_0", lambda w: ddpm.sample_ddim(zero_noise, SCHEDULER, NOISE, num_steps=0), ValueError,
     ("num_steps", "[1, 1000]", "0")),
    ("patch_does_not_divide", lambda w: dit.preset("tiny", img_size=30), ValueError,
     ("patch_size 4 does not divide img_size 30",)),
    ("channels_3", lambda w: dit.DiT(dit.preset("tiny"))(torch.zeros(2, 3, 32, 32), torch.zeros(2)), ValueError,
     ("expected images (B, 1, 32, 32), got (2, 3, 32, 32)",)),
    ("pickle_that_runs_code", lambda w: checkpoint.load_checkpoint(w["bomb"]), checkpoint.CheckpointError,
     ("unpickling such a file can run any code",)),
    ("random_bytes", lambda w: checkpoint.load_checkpoint(w["random_bytes"]), checkpoint.CheckpointError,
     ("is not a readable checkpoint (not a torch.save file",)),
    ("other_kind", lambda w: checkpoint.load_model(w["cfg"], "flow", torch.device("cpu")), checkpoint.CheckpointError,
     ("holds a 'cfg' model, expected 'flow'",)),
    ("other_config", lambda w: checkpoint.load_model(w["other_config"], "ddpm", torch.device("cpu")),
     checkpoint.CheckpointError, ("depth 3 in the config but 2 in the weights",)),
    ("corrupt_idx_file", lambda w: data.load_mnist(root=w["corrupt_data"], limit=8), data.MNISTUnavailable,
     ("train-labels-idx1-ubyte is corrupt",)),
]


@pytest.mark.parametrize("call, error, named", [c[1:] for c in LIBRARY_CASES], ids=[c[0] for c in LIBRARY_CASES])
def test_the_library_raises_one_clear_error_and_writes_nothing(world, tmp_path, call, error, named):
    watched = [*{Path(world[k]).parent for k in cli.KINDS}, world["truncated"].parent, world["corrupt_data"]]
    before = snapshot(*watched)
    with pytest.raises(error) as caught:
        call(world)
    for part in named:
        assert part in str(caught.value), caught.value
    assert str(caught.value).count("\n") == 0, caught.value  # one line
    assert snapshot(*watched) == before
    assert not world["marker"].exists()


def test_labels_given_as_text_get_a_clear_message():
    """Guards: torch's "new(): invalid data type 'str'" reaching the learner instead of what labels must be."""
    with pytest.raises(TypeError, match="labels must be integers 0-9, got 'four'"):
        guidance.check_labels("four")


def test_ddim_steps_not_integer_get_a_clear_message():
    """Guards: a non-integer step count failing inside torch.linspace with a message about dtypes.

    Since the redesign a wrong type is a TypeError naming the argument (it was a ValueError)."""
    with pytest.raises(TypeError, match=r"num_steps .*2\.5"):
        ddpm.sample_ddim(zero_noise, SCHEDULER, NOISE, num_steps=2.5)
    with pytest.raises(TypeError, match="num_steps"):
        ddpm.sample_ddim(zero_noise, SCHEDULER, NOISE, num_steps=True)


def test_the_library_accepts_large_guidance_the_command_line_refuses():
    """By design: notebooks may explore scales past 20; only `infer` caps them (cli.MAX_GUIDANCE)."""
    assert guidance.check_guidance_scale(25.0) == 25.0 and cli.MAX_GUIDANCE == 20.0


def test_the_data_root_comes_from_course_data(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert config.data_root() == tmp_path
