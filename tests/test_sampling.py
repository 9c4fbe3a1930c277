"""make_sampler: one choice of sampler for infer and the benchmarks, from the checkpoint's own settings."""

import pytest
import torch

from course_lib import checkpoint, ddpm, flow, sampling
from course_lib.inputs import ChoiceError, InputError


def payload(kind, **meta):
    return {"kind": kind, "metadata": meta}


DDPM = payload("ddpm", prediction="eps", schedule="cosine", num_steps=500)


def test_ddpm_samples_with_the_checkpoints_schedule_t_and_prediction(monkeypatch):
    """Guards: a benchmark that builds NoiseScheduler() and assumes eps, whatever the checkpoint says."""
    seen = {}

    def spy(model, scheduler, shape, num_steps, **kwargs):
        seen.update(schedule=scheduler.schedule, T=scheduler.num_timesteps, steps=num_steps, **kwargs)
        return torch.zeros(shape)

    monkeypatch.setattr(ddpm, "sample_ddim", spy)
    sample = sampling.make_sampler(lambda x, t, y: x, DDPM, steps=7)
    sample((2, 1, 4, 4))
    assert (seen["schedule"], seen["T"], seen["steps"], seen["prediction"]) == ("cosine", 500, 7, "eps")
    assert (sample.name, sample.nfe, sample.guidance_scale, sample.conditional) == ("ddim", 7, None, False)


def test_a_checkpoint_without_its_prediction_is_refused_not_guessed():
    with pytest.raises(checkpoint.CheckpointError, match="lacks prediction"):
        sampling.make_sampler(lambda x, t, y: x, payload("ddpm", schedule="linear", num_steps=1000))


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
    direct = flow.sample_ode(model, (2, 1, 2, 2), 3, "heun", labels, 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(sample((2, 1, 2, 2), labels, torch.Generator().manual_seed(4)), direct)


@pytest.mark.parametrize("kind, kwargs, error, message, option_form", [
    ("flow", dict(sampler="ddim"), ChoiceError, "sampler ddim: flow models sample with euler",
     "--sampler ddim: flow models sample with euler"),
    ("flow", dict(sampler="euler", gamma=0.5), ChoiceError, "gamma sets the noise of sampler sde only",
     "--gamma sets the noise of --sampler sde only"),
    ("ddpm", dict(sampler="ddpm", steps=5), ChoiceError, "steps does not apply to sampler ddpm",
     "--steps does not apply to --sampler ddpm"),
    ("ddpm", dict(guidance_scale=2.0), ChoiceError, "guidance_scale 2: the checkpoint carries no guide",
     "--guidance_scale 2: the checkpoint carries no guide for autoguidance"),
    ("ddpm", dict(steps=501), InputError, "num_steps must lie in [1, 500], got 501",
     "--steps 501: DDIM takes at most the scheduler's 500 steps"),
])
def test_bad_choices_are_named_in_python_and_in_the_command_lines_words(kind, kwargs, error, message, option_form):
    meta = DDPM["metadata"] if kind == "ddpm" else {}
    with pytest.raises(error) as caught:
        sampling.make_sampler(lambda x, t, y: x, payload(kind, **meta), **kwargs)
    assert message in str(caught.value)
    shown = caught.value.for_option("--steps") if error is InputError else caught.value.for_options()
    assert shown.startswith(option_form)
