"""make_sampler: one choice of sampler for infer and the benchmarks, from the checkpoint's own settings."""

import pytest
import torch

from course_lib import checkpoint, config, ddpm, flow
from course_lib.cli import sampling


def payload(kind, **meta):
    return {"kind": kind, "metadata": meta}


DDPM = payload("ddpm", prediction="eps", schedule="cosine", num_timesteps=500)


def test_ddpm_samples_with_the_checkpoints_schedule_t_and_prediction(monkeypatch):
    """Guards: a benchmark that builds NoiseScheduler() and assumes eps, whatever the checkpoint says."""
    seen = {}

    def spy(model, scheduler, noise, labels=None, *, num_steps, **kwargs):
        seen.update(schedule=scheduler.schedule, T=scheduler.num_timesteps, steps=num_steps, **kwargs)
        return torch.zeros_like(noise)

    monkeypatch.setattr(ddpm, "sample_ddim", spy)
    sample = sampling.make_sampler(lambda x, t, y: x, DDPM, steps=7)
    sample((2, 1, 4, 4))
    assert (seen["schedule"], seen["T"], seen["steps"], seen["prediction"]) == ("cosine", 500, 7, "eps")
    assert (sample.name, sample.nfe, sample.guidance_scale, sample.conditional) == ("ddim", 7, None, False)


def test_a_checkpoint_without_its_prediction_is_refused_not_guessed():
    with pytest.raises(checkpoint.CheckpointError, match="lacks prediction"):
        sampling.make_sampler(lambda x, t, y: x, payload("ddpm", schedule="linear", num_timesteps=1000))


def test_defaults_come_from_the_library():
    flow_payload = payload("flow", guidance_scale=3.0)
    sample = sampling.make_sampler(flow.gaussian_velocity(0.0, 1.0), flow_payload)
    assert (sample.name, sample.steps, sample.nfe, sample.guidance_scale) == ("euler", flow.ODE_STEPS, 8, 3.0)
    heun = sampling.make_sampler(flow.gaussian_velocity(0.0, 1.0), payload("flow"), "heun")
    assert heun.steps == 4 and heun.nfe == 8 and heun.guidance_scale == 2.0  # the documented default guidance
    sde = sampling.make_sampler(flow.gaussian_velocity(0.0, 1.0), payload("flow"), "sde")
    assert (sde.steps, sde.gamma) == (flow.SDE_STEPS, flow.SDE_GAMMA)
    assert sde.describe() == f"sde, {flow.SDE_STEPS} steps, guidance 2"


def test_it_draws_what_the_sampler_itself_draws():
    model, labels = flow.gaussian_velocity(0.5, 0.2), torch.tensor([1, 2])
    sample = sampling.make_sampler(model, payload("flow", guidance_scale=1.0), "heun", 3)
    direct = flow.sample_ode(model, config.randn((2, 1, 2, 2), torch.Generator().manual_seed(4)), labels, num_steps=3,
                             method="heun", guidance_scale=1.0)
    assert torch.equal(sample((2, 1, 2, 2), labels, torch.Generator().manual_seed(4)), direct)


# (kind, options, what the ValueError names: the command line's option and the value refused)
BAD_CHOICES = [
    ("flow", dict(sampler="ddim"), ("--sampler ddim", "flow models sample with euler")),
    ("flow", dict(sampler="euler", gamma=0.5), ("--gamma", "--sampler sde")),
    ("ddpm", dict(sampler="ddpm", steps=5), ("--steps", "--sampler ddpm")),
    ("ddpm", dict(guidance_scale=2.0), ("--guidance_scale 2", "carries no guide")),
    ("ddpm", dict(steps=501), ("--steps 501", "500")),
]


@pytest.mark.parametrize("kind, kwargs, named", BAD_CHOICES)
def test_bad_choices_are_named_in_the_command_lines_words(kind, kwargs, named):
    """make_sampler serves the command line and the benchmarks: its ValueError names their options.

    (Before issue 23 the error rendered itself either way, ``steps`` or ``--steps``; that framework is gone.)"""
    meta = DDPM["metadata"] if kind == "ddpm" else {}
    with pytest.raises(ValueError) as caught:
        sampling.make_sampler(lambda x, t, y: x, payload(kind, **meta), **kwargs)
    assert all(part in str(caught.value) for part in named), caught.value
    assert "\n" not in str(caught.value)
