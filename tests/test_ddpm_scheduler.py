"""The noise scheduler against closed forms (BOOK_DESIGN §2)."""

import math

import pytest
import torch

from course_lib import ddpm


@pytest.fixture(params=["linear", "cosine"])
def scheduler(request):
    return ddpm.NoiseScheduler(schedule=request.param)


def test_linear_betas_match_the_ddpm_paper():
    s = ddpm.NoiseScheduler()
    assert s.betas.shape == (1000,)
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    # evenly spaced
    torch.testing.assert_close(s.betas[1:] - s.betas[:-1], torch.full((999,), (0.02 - 1e-4) / 999),
                               atol=1e-8, rtol=1e-4)


def test_alpha_bar_is_the_cumulative_product(scheduler):
    expected = 1.0
    checks = {}
    for i, beta in enumerate(scheduler.betas.double().tolist()):
        expected *= 1.0 - beta
        checks[i] = expected
    for i in (0, 1, 10, 500, 999):
        assert scheduler.alpha_bars[i].item() == pytest.approx(checks[i], rel=1e-5, abs=1e-9)
    torch.testing.assert_close(scheduler.alpha_bars_prev[1:], scheduler.alpha_bars[:-1])
    assert scheduler.alpha_bars_prev[0].item() == 1.0


def test_cosine_alpha_bar_follows_its_formula():
    s = ddpm.NoiseScheduler(schedule="cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for step in (0, 100, 500, 900):
        assert s.alpha_bars[step].item() == pytest.approx(f((step + 1) / 1000) / f(0), rel=1e-4)


def test_schedule_ends_near_pure_noise(scheduler):
    assert scheduler.alpha_bars[-1] < 1e-3
    assert scheduler.alpha_bars[0] > 0.99
    assert (scheduler.snr()[1:] < scheduler.snr()[:-1]).all()  # SNR strictly decreases


def test_noise_image_has_the_closed_form_mean_and_variance(scheduler):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.8, -0.5, 0.0]).view(1, 3, 1, 1).expand(200_000, 3, 1, 1)
    for step in (0, 99, 499, 999):
        x_t, noise = scheduler.noise_image(x0, step, generator=gen)
        a = scheduler.alpha_bars[step]
        torch.testing.assert_close(x_t.mean(0).flatten(), a.sqrt() * x0[0].flatten(), atol=0.01, rtol=0)
        torch.testing.assert_close(x_t.var(0).flatten(), (1 - a).expand(3), atol=0.01, rtol=0.02)
        # the returned noise is the one that was added
        torch.testing.assert_close(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise)


def test_stepwise_noising_matches_the_closed_form_in_distribution():
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.full((100_000, 1, 1, 1), 0.7)
    x = x0.clone()
    for step in range(300):  # x_t = sqrt(α_t) x_{t-1} + sqrt(β_t) z, one step at a time
        x = s.alphas[step].sqrt() * x + s.betas[step].sqrt() * torch.randn(x.shape, generator=gen)
    a = s.alpha_bars[299]
    assert x.mean().item() == pytest.approx((a.sqrt() * 0.7).item(), abs=0.01)
    assert x.var().item() == pytest.approx((1 - a).item(), abs=0.01)


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_reverse_step_uses_the_gaussian_posterior(variance):
    s = ddpm.NoiseScheduler(variance=variance)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 1, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([1, 10, 200, 700, 999])
    x_t, noise = s.noise_image(x0.float(), t, generator=gen)
    mean, var = s.posterior_mean_variance(x_t, t, noise)

    # q(x_{t-1} | x_t, x_0), written independently from the betas in float64
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    b, ab, abp = (v[t].view(-1, 1, 1, 1) for v in (betas, abar, abar_prev))
    true_mean = (abp.sqrt() * b / (1 - ab)) * x0 + ((1 - b).sqrt() * (1 - abp) / (1 - ab)) * x_t.double()
    true_var = b * (1 - abp) / (1 - ab) if variance == "posterior" else b
    torch.testing.assert_close(mean.double(), true_mean, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(var.double(), true_var.expand_as(var), atol=1e-9, rtol=1e-4)


def test_last_step_adds_no_noise():
    s = ddpm.NoiseScheduler()
    x_t = torch.randn(3, 1, 4, 4)
    eps = torch.randn(3, 1, 4, 4)
    a = s.sample_prev_image_distribution(x_t, 0, eps, generator=torch.Generator().manual_seed(0))
    b = s.sample_prev_image_distribution(x_t, 0, eps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    # per-sample steps: only the sample at step 0 is deterministic
    t = torch.tensor([0, 5, 0])
    a = s.sample_prev_image_distribution(x_t, t, eps, generator=torch.Generator().manual_seed(0))
    b = s.sample_prev_image_distribution(x_t, t, eps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]])
    assert not torch.allclose(a[1], b[1])


def test_oracle_noise_walks_back_to_the_image():
    """Driven by the true ε of a single known image, the reverse chain ends on that image."""
    s = ddpm.NoiseScheduler()
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 1, 8, 8, generator=gen) * 2 - 1
    x = torch.randn(x0.shape, generator=gen)
    for step in reversed(range(1000)):
        a = s.alpha_bars[step]
        true_noise = (x - a.sqrt() * x0) / (1 - a).sqrt()  # the ε that makes x from x0
        x = s.sample_prev_image_distribution(x, step, true_noise, generator=gen)
    torch.testing.assert_close(x, x0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("bad_t, error", [
    (-1, ValueError), (1000, ValueError), (torch.tensor([0, 1]), ValueError),
    (torch.tensor([[1, 2, 3]]), ValueError), (0.5, TypeError), (torch.tensor([0.5, 1.0, 2.0]), TypeError),
    ("3", TypeError),
])
def test_invalid_t_raises(bad_t, error):
    s = ddpm.NoiseScheduler()
    with pytest.raises(error, match="t must"):
        s.noise_image(torch.zeros(3, 1, 4, 4), bad_t)
    with pytest.raises(error, match="t must"):
        s.sample_prev_image_distribution(torch.zeros(3, 1, 4, 4), bad_t, torch.zeros(3, 1, 4, 4))


def test_bad_scheduler_arguments_raise():
    with pytest.raises(ValueError, match="schedule"):
        ddpm.NoiseScheduler(schedule="quadratic")
    with pytest.raises(ValueError, match="variance"):
        ddpm.NoiseScheduler(variance="big")
    with pytest.raises(ValueError, match="beta_start"):
        ddpm.NoiseScheduler(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="pred_noise"):
        ddpm.NoiseScheduler().sample_prev_image_distribution(torch.zeros(2, 1, 4, 4), 3, torch.zeros(2, 1, 4))
