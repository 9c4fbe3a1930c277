"""Same seed, same device (CPU) -> the same samples from every sampler and the same first training steps.

A sampler draws every random number from the ``torch.Generator`` it is given: the two runs below
start from different global RNG states, so a sampler that draws from the global RNG fails here.
Training seeds everything from ``--seed`` (``training.seed_everything``), the global RNG included.
"""

import pytest
import torch

from course_lib import checkpoint, cli, config, ddpm, dit, flow
from course_lib.cli.train import CHECKPOINT_NAMES

SHAPE = (3, 1, 32, 32)
LABELS = torch.tensor([1, 4, 7])
SCHEDULER = ddpm.NoiseScheduler(num_timesteps=100)  # a short chain keeps the full DDPM sampler quick


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return dit.DiT(dit.preset("tiny", cross_attention=True)).eval()


def noise(g):
    """The start noise, drawn from the sampler's generator (the samplers take it from their caller)."""
    return config.randn(SHAPE, g)


SAMPLERS = {
    "ddpm": lambda m, g: ddpm.sample(m, SCHEDULER, noise(g), LABELS, guidance_scale=2.0, generator=g),
    "ddim": lambda m, g: ddpm.sample_ddim(m, SCHEDULER, noise(g), LABELS, num_steps=5, guidance_scale=2.0),
    "euler": lambda m, g: flow.sample_ode(m, noise(g), LABELS, num_steps=4, method="euler", guidance_scale=2.0),
    "heun": lambda m, g: flow.sample_ode(m, noise(g), LABELS, num_steps=3, method="heun", guidance_scale=2.0),
    "midpoint": lambda m, g: flow.sample_ode(m, noise(g), LABELS, num_steps=3, method="midpoint", guidance_scale=2.0),
    "sde": lambda m, g: flow.sample_sde(m, noise(g), LABELS, num_steps=4, gamma=1.0, guidance_scale=2.0, generator=g),
}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_samples(model, sampler):
    with torch.no_grad():
        torch.manual_seed(1)  # two different global RNG states: they must play no part
        first = SAMPLERS[sampler](model, torch.Generator().manual_seed(7))
        torch.manual_seed(2)
        again = SAMPLERS[sampler](model, torch.Generator().manual_seed(7))
        other = SAMPLERS[sampler](model, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)  # the seed does reach the sampler


def first_steps(kind, folder, *extra):
    status = cli.main(["train", kind, "--preset", "tiny", "--epochs", "1", "--batch_size", "16", "--max_steps", "3",
                       "--limit", "64", "--save_dir", str(folder), "--device", "cpu", *extra])
    assert status == 0
    resume = checkpoint.load_checkpoint(checkpoint.resume_path(folder / CHECKPOINT_NAMES[kind]), kind=kind)
    return resume["training"]


@pytest.mark.parametrize("kind, extra", [("ddpm", []), ("cfg", []), ("flow", []),
                                         ("flow", ["--time_sampling", "logit_normal"])],
                         ids=["ddpm", "cfg", "flow_uniform", "flow_logit_normal"])
def test_same_seed_same_first_training_steps(tmp_path, kind, extra):
    torch.manual_seed(1)
    first = first_steps(kind, tmp_path / "a", *extra)
    torch.manual_seed(2)
    again = first_steps(kind, tmp_path / "b", *extra)
    other = first_steps(kind, tmp_path / "c", "--seed", "1", *extra)
    assert first["step"] == 3 and first["losses"] == again["losses"]
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, again["model"][name]), name
    assert torch.equal(first["generator"], again["generator"])
    assert first["losses"] != other["losses"]
