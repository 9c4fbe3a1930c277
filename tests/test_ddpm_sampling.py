"""DDPM and DDIM samplers driven by the exact ε of a Gaussian data set return that Gaussian."""

import pytest
import torch

from course_lib import config, ddpm

MU, S = 0.5, 0.3  # data x0 ~ N(MU, S²) in every pixel


def exact_noise_model(scheduler):
    """E[ε | x_t] for Gaussian data, as a model(x_t, t, labels) that a sampler can call."""

    def model(x_t, t, labels=None):
        step = (t * scheduler.num_timesteps).round().long() - 1  # invert step_to_time
        alpha_bar = scheduler.alpha_bars[step].view(-1, 1, 1, 1).double()
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        # x_t = a x0 + b ε  ->  Cov(ε, x_t) = b, Var(x_t) = a² S² + b²
        return (b * (x_t.double() - a * MU) / (a**2 * S**2 + b**2)).float()

    return model


def exact_v_model(scheduler):
    eps_model = exact_noise_model(scheduler)

    def model(x_t, t, labels=None):
        step = (t * scheduler.num_timesteps).round().long() - 1
        a, b = ddpm._ab(scheduler, step, x_t)
        eps = eps_model(x_t, t)
        x0 = (x_t - b * eps) / a
        return a * eps - b * x0

    return model


@pytest.mark.parametrize("variance, final_var", [("posterior", 0.08777), ("beta", 0.09055)])
def test_ancestral_chain_has_the_forward_marginals_at_every_step(variance, final_var):
    """After the reverse step at ``step``, x is distributed as the forward x at ᾱ = alpha_bars_prev[step].

    The forward marginal of Gaussian data is N(sqrt(ᾱ) MU, ᾱ S² + 1 - ᾱ). With the exact ε the
    chain matches it up to the reverse kernel's approximation, computed exactly by propagating the
    mean and variance in float64: at the end the variance is 2.5 % low with β̃ (0.08777) and 0.6 %
    high with β (0.09055) instead of 0.09, and much closer earlier. Unlike the oracle of one known
    image, this catches any variance that is too large or too small by a few per cent.
    """
    s = ddpm.NoiseScheduler(variance=variance)
    n = 40_000  # one pixel each: standard error of a variance ≈ var * sqrt(2 / n) = 0.7 %
    checked = {}
    gen = torch.Generator().manual_seed(6)  # x_T, then each step's noise, from one stream
    for step, x in ddpm.ddpm_steps(exact_noise_model(s), s, config.randn((n, 1, 1, 1), gen), generator=gen):
        if step in (900, 500, 250, 100, 20, 0):
            checked[step] = x.flatten().double()
    for step, x in checked.items():
        alpha_bar = s.alpha_bars_prev[step].double()
        mean, var = alpha_bar.sqrt() * MU, alpha_bar * S**2 + 1 - alpha_bar
        assert x.mean().item() == pytest.approx(mean.item(), abs=0.01), step
        assert x.var().item() == pytest.approx(var.item(), rel=0.04), step
    assert checked[0].var().item() == pytest.approx(final_var, rel=0.025)  # 3.5 standard errors


def test_ddim_driven_by_the_true_noise_lands_on_the_image():
    """With the true ε of one known image, every DDIM update stays on that image's forward path.

    The last update must land on ᾱ = 1 (the clean estimate itself): landing on ᾱ = alpha_bars[0]
    would leave 0.01 ε of noise in the result.
    """
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(7)
    x0 = torch.rand(3, 1, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen)

    def true_noise(x_t, t, labels=None):  # the noise that makes x_t from x0
        step = (t * s.num_timesteps).round().long() - 1
        a, b = ddpm._ab(s, step, x_t)
        return (x_t - a * x0) / b

    for num_steps in (1, 2, 10):
        x_T, _ = s.noise_image(x0, 999, noise=noise)
        out = ddpm.sample_ddim(true_noise, s, x_T, num_steps=num_steps)
        torch.testing.assert_close(out, x0, atol=2e-4, rtol=0)


def test_one_step_ddim_returns_the_clean_estimate():
    """One DDIM step from step 999 is x̂0 = (x_T - sqrt(1 - ᾱ) ε̂) / sqrt(ᾱ), nothing re-noised."""
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(8)
    x_T, eps = torch.randn(2, 1, 3, 3, generator=gen), torch.randn(2, 1, 3, 3, generator=gen)
    out = ddpm.sample_ddim(lambda x_t, t, labels=None: eps, s, x_T, num_steps=1)
    alpha_bar = s.alpha_bars[999].double()
    expected = (x_T.double() - (1 - alpha_bar).sqrt() * eps.double()) / alpha_bar.sqrt()
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-5)


def test_ddim_converges_to_the_gaussian_as_steps_grow():
    """DDIM is a discretised ODE: its mean is right at any step count, its spread converges.

    Measured here with seed 1: std 0.239 at 20 steps, 0.275 at 50, 0.288 at 100, 0.2996 at 1000
    (true 0.3). Few steps shrink the spread; that is discretisation error, not a wrong formula.
    """
    s = ddpm.NoiseScheduler()
    errors = []
    for num_steps in (20, 100, 1000):
        out = ddpm.sample_ddim(exact_noise_model(s), s, config.randn((4000, 1, 2, 2), torch.Generator().manual_seed(1)),
                               num_steps=num_steps)
        assert out.mean().item() == pytest.approx(MU, abs=0.015)
        errors.append(abs(out.std().item() - S))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02 * S


def test_v_prediction_is_converted_to_the_same_noise():
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(2)
    eps_run = ddpm.sample_ddim(exact_noise_model(s), s, config.randn((64, 1, 2, 2), gen), num_steps=20)
    gen = torch.Generator().manual_seed(2)
    v_run = ddpm.sample_ddim(exact_v_model(s), s, config.randn((64, 1, 2, 2), gen), num_steps=20, prediction="v")
    torch.testing.assert_close(v_run, eps_run, atol=1e-4, rtol=1e-4)


def test_samplers_are_reproducible_and_yield_every_step():
    s = ddpm.NoiseScheduler()
    model = exact_noise_model(s)
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(3)
        runs.append(ddpm.sample(model, s, config.randn((2, 1, 2, 2), gen), generator=gen))
    torch.testing.assert_close(*runs)
    frames = list(ddpm.ddim_steps(model, s, config.randn((2, 1, 2, 2), torch.Generator().manual_seed(3)),
                                  num_steps=10))
    assert [step for step, _ in frames] == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    with pytest.raises(ValueError, match="num_steps"):
        ddpm.sample_ddim(model, s, torch.zeros(2, 1, 2, 2), num_steps=0)


def test_loss_targets():
    """``ddpm.loss`` regresses the right target on the right x_t, for ε and for v.

    The model returns zeros, so the loss must be the mean square of the target, replayed from the
    same generator draws; and the model must have been shown x_t = a x0 + b ε. A model that
    returns that replayed target must then score exactly zero.
    """
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
        exact = ddpm.loss(lambda x_t, t, labels, target=target: target, images, None, s,
                          torch.Generator().manual_seed(4), prediction)
        assert exact.item() == 0.0


def test_the_library_gaussian_model_is_the_regression_of_the_noise():
    """ddpm.gaussian_noise_model (used by the notebooks) against this file's float64 version."""
    s = ddpm.NoiseScheduler()
    steps = torch.tensor([0, 10, 500, 999])
    x_t = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(9))
    t = s.step_to_time(steps)
    torch.testing.assert_close(ddpm.gaussian_noise_model(s, MU, S)(x_t, t), exact_noise_model(s)(x_t, t),
                               atol=1e-5, rtol=1e-5)
