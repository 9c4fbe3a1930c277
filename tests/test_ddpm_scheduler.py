"""The noise scheduler against closed forms (docs/conventions.md, "DDPM steps and the schedule")."""

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


def test_step_index_convention():
    """``step`` is the paper's t minus one; step 0 is the first *noised* image (docs/conventions.md,
    "DDPM steps and the schedule").

    Guards against the off-by-one that writes "t = 0" for both the clean image and step 0.
    """
    s = ddpm.NoiseScheduler()
    assert s.alpha_bars[0].item() == pytest.approx(1 - 1e-4, abs=1e-7)  # ᾱ at step 0 = 1 - β₁ = 0.9999
    assert s.alpha_bars_prev[0].item() == 1.0  # the clean image x_0: ᾱ = 1, no step index of its own
    torch.testing.assert_close(s.alpha_bars_prev[1:], s.alpha_bars[:-1])
    # the network sees time (step + 1) / T: step 0 is t = 1/T, never the clean t = 0
    torch.testing.assert_close(s.step_to_time(torch.tensor([0, 499, 999])), torch.tensor([0.001, 0.5, 1.0]))
    # noising to step 0 adds noise of std sqrt(1 - 0.9999) = 0.01: step 0 is not the clean image
    x0 = torch.zeros(20_000, 1, 1, 1)
    x_t, _ = s.noise_image(x0, 0, generator=torch.Generator().manual_seed(0))
    assert x_t.std().item() == pytest.approx(0.01, rel=0.03)
    # the reverse step at step 0 is the one that lands on x_0: no noise is added there
    assert s.posterior_mean_variance(x_t[:2], 0, torch.zeros_like(x_t[:2]))[1].max().item() == 0.0


def test_cosine_betas_are_clipped_at_0_999():
    """Without the clip, β_T = 1 and ᾱ_T = 0 (infinite noise-to-signal at the last step)."""
    s = ddpm.NoiseScheduler(schedule="cosine")
    assert s.betas[-1].item() == pytest.approx(0.999, abs=1e-6)
    assert (s.betas[:-1] < 0.999).all()  # only the last step reaches the clip
    assert s.betas[-2].item() == pytest.approx(0.75, abs=1e-4)
    assert s.alpha_bars[-1].item() == pytest.approx(2.43e-9, rel=0.01)


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


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_reverse_step_draws_the_posterior_mean_plus_its_std_times_the_noise(variance):
    """The whole step, as the sampler runs it: x_{t-1} = mean + sqrt(variance) z, against float64.

    Guards against a variance scaled, shifted by one step or replaced inside the step itself.
    """
    s = ddpm.NoiseScheduler(variance=variance)
    gen = torch.Generator().manual_seed(5)
    t = torch.tensor([0, 1, 2, 50, 400, 998, 999])
    x_t = torch.randn(7, 1, 3, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(7, 1, 3, 3, generator=gen, dtype=torch.float64)
    z = torch.randn(7, 1, 3, 3, generator=gen, dtype=torch.float64)
    out = s.sample_prev_image_distribution(x_t.float(), t, eps.float(), noise=z.float())

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    b, ab, abp = (v[t].view(-1, 1, 1, 1) for v in (betas, abar, abar_prev))
    mean = (x_t - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()
    var = b * (1 - abp) / (1 - ab) if variance == "posterior" else b
    var = var * (t > 0).view(-1, 1, 1, 1)  # step 0 lands on x_0: no noise
    torch.testing.assert_close(out.double(), mean + var.sqrt() * z, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_last_step_adds_no_noise(variance):
    """With ``variance="beta"`` the table holds β₁ = 1e-4 > 0 at step 0, so only the mask keeps it clean."""
    s = ddpm.NoiseScheduler(variance=variance)
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
    """Driven by the true ε of a single known image, the reverse chain ends on that image.

    This checks the mean of the last step only: given the true ε, the noise-free step 0 maps any
    x at step 0 to x_0 by algebra, whatever the variances before it did. The variances are pinned by
    the float64 tests above and by the marginal test in test_ddpm_sampling.py.
    """
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
    ("3", TypeError), (True, TypeError), (torch.tensor([True, False, True]), TypeError),
    (torch.tensor(True), TypeError),
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


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (3, 1, 1, 1), (3, 1, 4), (4, 1, 4, 4)])
def test_a_noise_of_another_shape_is_refused(shape):
    """One noise broadcast over a batch would make every image share it: refuse, do not broadcast."""
    s = ddpm.NoiseScheduler()
    x = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="noise has shape"):
        s.noise_image(x, 5, noise=torch.zeros(shape))
    with pytest.raises(ValueError, match="noise has shape"):
        s.sample_prev_image_distribution(x, 5, torch.zeros_like(x), noise=torch.zeros(shape))


def test_num_timesteps_is_t_and_num_steps_is_no_longer_its_name():
    """T is ``num_timesteps``, the one name (issue 23): ``num_steps`` is a sampler's step count, never T."""
    scheduler = ddpm.NoiseScheduler(num_timesteps=100, schedule="cosine")
    assert scheduler.num_timesteps == 100 and scheduler.betas.shape == (100,)
    torch.testing.assert_close(scheduler.betas, ddpm.NoiseScheduler(100, "cosine").betas)
    assert not hasattr(scheduler, "num_steps")
    with pytest.raises(TypeError, match="num_steps"):
        ddpm.NoiseScheduler(num_steps=100)


def test_logit_normal_steps_follow_the_flow_models_time_distribution():
    """P(step <= k) = P(sigmoid(z) <= flow time of k) = Φ(logit(flow_times[k])), z ~ N(0, 1).

    Guards: steps drawn uniformly, or the table read backwards (ε-like noise levels for data-like ones).
    """
    scheduler = ddpm.NoiseScheduler()
    steps = ddpm.sample_steps(scheduler, 200_000, "logit_normal", torch.Generator().manual_seed(0))
    table = scheduler.flow_times().double()
    for k in (20, 100, 259, 500, 800):
        expected = torch.distributions.Normal(0.0, 1.0).cdf(torch.logit(table[k])).item()
        assert abs((steps <= k).double().mean().item() - expected) < 0.005, k
    # the flow time of each step is where the DDPM state, divided by a + b, sits on the straight path
    x0, noise = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    k = torch.tensor([300])
    a, b = scheduler.alpha_bars[k].sqrt(), (1 - scheduler.alpha_bars[k]).sqrt()
    t = table[k].float()
    torch.testing.assert_close((a * x0 + b * noise) / (a + b), t * noise + (1 - t) * x0)


def test_uniform_steps_cover_every_step_equally():
    scheduler = ddpm.NoiseScheduler(num_timesteps=10)
    steps = ddpm.sample_steps(scheduler, 100_000, "uniform", torch.Generator().manual_seed(0))
    shares = torch.bincount(steps, minlength=10).double() / 100_000
    assert (shares - 0.1).abs().max() < 0.005
