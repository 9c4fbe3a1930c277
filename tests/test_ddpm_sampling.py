"""DDPM and DDIM samplers driven by the exact ε of a Gaussian data set return that Gaussian."""

import pytest
import torch

from course_lib import ddpm

MU, S = 0.5, 0.3  # data x0 ~ N(MU, S²) in every pixel


def exact_noise_model(scheduler):
    """E[ε | x_t] for Gaussian data, as a model(x_t, t, labels) that a sampler can call."""

    def model(x_t, t, labels=None):
        step = (t * scheduler.num_steps).round().long() - 1  # invert step_to_time
        alpha_bar = scheduler.alpha_bars[step].view(-1, 1, 1, 1).double()
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        # x_t = a x0 + b ε  ->  Cov(ε, x_t) = b, Var(x_t) = a² S² + b²
        return (b * (x_t.double() - a * MU) / (a**2 * S**2 + b**2)).float()

    return model


def exact_v_model(scheduler):
    eps_model = exact_noise_model(scheduler)

    def model(x_t, t, labels=None):
        step = (t * scheduler.num_steps).round().long() - 1
        a, b = ddpm._ab(scheduler, step, x_t)
        eps = eps_model(x_t, t)
        x0 = (x_t - b * eps) / a
        return a * eps - b * x0

    return model


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ancestral_ddpm_recovers_the_gaussian(variance):
    s = ddpm.NoiseScheduler(variance=variance)
    out = ddpm.sample(exact_noise_model(s), s, (4000, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert out.mean().item() == pytest.approx(MU, abs=0.015)
    assert out.std().item() == pytest.approx(S, rel=0.05)


def test_ddim_converges_to_the_gaussian_as_steps_grow():
    """DDIM is a discretised ODE: its mean is right at any step count, its spread converges.

    Measured here with seed 1: std 0.239 at 20 steps, 0.275 at 50, 0.288 at 100, 0.2996 at 1000
    (true 0.3). Few steps shrink the spread; that is discretisation error, not a wrong formula.
    """
    s = ddpm.NoiseScheduler()
    errors = []
    for num_steps in (20, 100, 1000):
        out = ddpm.sample_ddim(exact_noise_model(s), s, (4000, 1, 2, 2), num_steps,
                               generator=torch.Generator().manual_seed(1))
        assert out.mean().item() == pytest.approx(MU, abs=0.015)
        errors.append(abs(out.std().item() - S))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02 * S


def test_v_prediction_is_converted_to_the_same_noise():
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(2)
    eps_run = ddpm.sample_ddim(exact_noise_model(s), s, (64, 1, 2, 2), 20, generator=gen)
    gen = torch.Generator().manual_seed(2)
    v_run = ddpm.sample_ddim(exact_v_model(s), s, (64, 1, 2, 2), 20, generator=gen, prediction="v")
    torch.testing.assert_close(v_run, eps_run, atol=1e-4, rtol=1e-4)


def test_samplers_are_reproducible_and_yield_every_step():
    s = ddpm.NoiseScheduler()
    model = exact_noise_model(s)
    a = ddpm.sample(model, s, (2, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    b = ddpm.sample(model, s, (2, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    frames = list(ddpm.ddim_steps(model, s, (2, 1, 2, 2), 10, generator=torch.Generator().manual_seed(3)))
    assert [step for step, _ in frames] == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    with pytest.raises(ValueError, match="num_steps"):
        ddpm.sample_ddim(model, s, (2, 1, 2, 2), 0)


def test_loss_targets():
    """With a model that returns the exact target, the loss is zero for ε and for v."""
    s = ddpm.NoiseScheduler()
    images = torch.randn(8, 1, 4, 4)
    for prediction in ("eps", "v"):
        captured = {}

        def model(x_t, t, labels, captured=captured):
            captured["x_t"] = x_t
            return torch.zeros_like(x_t)

        gen = torch.Generator().manual_seed(4)
        value = ddpm.loss(model, images, None, s, gen, prediction)
        # replay the same draws to build the exact target
        gen = torch.Generator().manual_seed(4)
        step = torch.randint(0, 1000, (8,), generator=gen)
        noise = torch.randn(images.shape, generator=gen)
        a, b = ddpm._ab(s, step, images)
        target = noise if prediction == "eps" else a * noise - b * images
        torch.testing.assert_close(value, target.pow(2).mean())
        torch.testing.assert_close(captured["x_t"], a * images + b * noise)
