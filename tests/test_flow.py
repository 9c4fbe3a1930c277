"""Rectified flow, ODE and training half: the path, the loss target, conversions, ODE samplers, guidance.

Closed form (docs/conventions.md, "Closed forms for checks"): for data x0 ~ N(MU, S²) in every pixel
and noise x1 ~ N(0, 1), the path point x_t = t·x1 + (1 - t)·x0 is N(m_t, V_t) with m_t = (1 - t)·MU
and V_t = (1 - t)²·S² + t², and
``flow.gaussian_velocity(MU, S)`` is the exact E[x1 - x0 | x_t]. That velocity is affine in x_t, so
every ODE step is an affine map x -> A·x + B per pixel, and so is the whole sampler: running it on the
two starting points x_1 = 0 and x_1 = 1 gives B and A + B, hence the exact mean (B) and standard
deviation (|A|) of its output for Gaussian noise, free of Monte Carlo error. The tests compare those
numbers with MU and S; the tolerances come from the discretisation errors measured this way (listed
in each test) and a test fails if a sampler's error grows past about twice its measured value.

Each test names the bug it guards against; every one was injected once and seen to fail.
"""

import math

import pytest
import torch

from course_lib import config, ddpm, flow, guidance
from course_lib.data import NULL_LABEL

MU, S = 0.5, 0.3  # data x0 ~ N(MU, S²) in every pixel
GEN = torch.Generator


def seeded(seed: int) -> torch.Generator:
    return GEN().manual_seed(seed)


def affine_output(method: str, num_steps: int, mean: float = MU, std: float = S, **kwargs) -> tuple[float, float]:
    """Exact (mean, std) of the sampler's output for N(0, 1) noise, from the two starts x_1 = 0 and 1."""
    starts = torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1, 1)
    out = flow.sample_ode(flow.gaussian_velocity(mean, std), starts, num_steps=num_steps, method=method,
                          **kwargs).flatten()
    return out[0].item(), abs((out[1] - out[0]).item())


def std_error(method: str, num_steps: int) -> float:
    return affine_output(method, num_steps)[1] - S


# ---------------------------------------------------------------------------- the path
def test_interpolate_is_the_image_at_t0_and_the_noise_at_t1():
    """Guards: t and 1 - t swapped (the time direction of Lipman et al. instead of the book's)."""
    images = torch.rand(4, 1, 8, 8, generator=seeded(0)) * 2 - 1
    noise = torch.randn(images.shape, generator=seeded(1))
    assert torch.equal(flow.interpolate(images, noise, 0.0), images)
    assert torch.equal(flow.interpolate(images, noise, 1.0), noise)
    torch.testing.assert_close(flow.interpolate(images, noise, 0.25), 0.25 * noise + 0.75 * images)


def test_interpolate_takes_one_time_per_sample():
    """Guards: a (B,) time tensor broadcast along the wrong axis (e.g. over image rows)."""
    images = torch.rand(3, 1, 3, 3, generator=seeded(0))
    noise = torch.randn(images.shape, generator=seeded(1))
    times = torch.tensor([0.0, 0.5, 1.0])
    x_t = flow.interpolate(images, noise, times)
    for b, t in enumerate(times.tolist()):
        torch.testing.assert_close(x_t[b], t * noise[b] + (1 - t) * images[b])
    with pytest.raises(ValueError, match="shape"):
        flow.interpolate(images, noise[:, :, :2], 0.5)


def test_ddpm_state_is_a_rescaled_flow_state():
    """A DDPM state a·x0 + b·ε divided by (a + b) is the flow state at t = b / (a + b) (docs/conventions.md,
    "DDPM ↔ flow").

    Notebooks 04 and 05 rely on this identity. Guards a wrong statement of it in the book, e.g.
    t = a / (a + b) (image and noise swapped) or no rescaling (a² + b² = 1 is not a + b = 1).
    """
    scheduler = ddpm.NoiseScheduler()
    images = torch.rand(5, 1, 4, 4, generator=seeded(0), dtype=torch.float64) * 2 - 1
    noise = torch.randn(images.shape, generator=seeded(1), dtype=torch.float64)
    for step in (0, 100, 500, 999):
        alpha_bar = scheduler.alpha_bars[step].double()
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        ddpm_state = a * images + b * noise
        torch.testing.assert_close(ddpm_state / (a + b), flow.interpolate(images, noise, b / (a + b)))


# ---------------------------------------------------------------------------- the loss
def path_aware_model(images: torch.Tensor, offset: float = 0.0):
    """Knows the clean images, so it can return x1 - x0 = (x_t - x0) / t exactly (plus ``offset``)."""
    def model(x_t, t, labels):
        t = t.view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - images) / t + offset
    return model


@pytest.mark.parametrize("time_sampling", flow.TIME_SAMPLINGS)
def test_loss_target_is_noise_minus_images(time_sampling):
    """A model returning exactly x1 - x0 scores 0; one off by the constant c scores c².

    Guards: target images - noise (the other time direction: loss 4·E[(x1 - x0)²] ≈ 4·(1 + E[x0²])
    instead of 0), the target x1 alone, or the mean taken over the wrong quantity.
    """
    images = (torch.rand(64, 1, 4, 4, generator=seeded(0), dtype=torch.float64) * 2 - 1)
    labels = torch.zeros(64, dtype=torch.long)
    exact = flow.loss(path_aware_model(images), images, labels, seeded(1), time_sampling)
    assert exact.item() == pytest.approx(0.0, abs=1e-18)
    off = flow.loss(path_aware_model(images, offset=0.3), images, labels, seeded(1), time_sampling)
    assert off.item() == pytest.approx(0.09, rel=1e-9)


def test_loss_passes_the_labels_and_is_seeded():
    """Guards: labels dropped before the model (CFG could never learn the condition) and unseeded noise."""
    images = torch.rand(8, 1, 4, 4, generator=seeded(0))
    labels = torch.arange(8)
    seen = []

    def model(x_t, t, labels):
        seen.append(labels)
        return torch.zeros_like(x_t)

    first = flow.loss(model, images, labels, seeded(3))
    second = flow.loss(model, images, labels, seeded(3))
    assert torch.equal(seen[0], labels)
    assert first.item() == second.item()
    assert flow.loss(model, images, labels, seeded(4)).item() != first.item()


def test_time_sampling_laws():
    """Uniform: P(t < 0.25) = 0.25; logit-normal: t = sigmoid(z), so P(t < sigmoid(1)) = Φ(1) = 0.8413.

    Guards: logit_normal silently returning uniform times (or the reverse) and times outside (0, 1).
    With n = 40,000 the standard error of a share is at most 0.0025; the tolerance is 0.01.
    """
    n = 40_000
    uniform = flow.sample_time(n, "uniform", seeded(0))
    logit = flow.sample_time(n, "logit_normal", seeded(0))
    for t in (uniform, logit):
        assert t.shape == (n,) and t.min() > 0 and t.max() < 1
    assert (uniform < 0.25).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert (logit < 0.25).float().mean().item() == pytest.approx(0.1360, abs=0.01)  # Φ(logit(0.25)) = Φ(-1.0986)
    assert (logit < 1 / (1 + math.exp(-1))).float().mean().item() == pytest.approx(0.8413, abs=0.01)
    with pytest.raises(ValueError, match="time_sampling"):
        flow.sample_time(4, "cosine")


# ---------------------------------------------------------------------------- conversions
def test_conversions_recover_image_and_noise_from_the_true_velocity():
    """With v = x1 - x0, x0_hat = x_t - t·v and noise_hat = x_t + (1 - t)·v are the image and noise.

    Guards: a sign error or t in place of 1 - t in either conversion.
    """
    images = torch.rand(6, 1, 4, 4, generator=seeded(0), dtype=torch.float64) * 2 - 1
    noise = torch.randn(images.shape, generator=seeded(1), dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.4, 0.5, 0.9, 1.0], dtype=torch.float64)
    x_t = flow.interpolate(images, noise, t)
    v = noise - images
    torch.testing.assert_close(flow.velocity_to_x0(v, x_t, t), images, rtol=0, atol=1e-14)
    torch.testing.assert_close(flow.velocity_to_noise(v, x_t, t), noise, rtol=0, atol=1e-14)


def test_conversions_are_inverses_of_interpolation():
    """From any (x_t, v, t): interpolating x0_hat and noise_hat gives back x_t, and their difference is v.

    Guards: conversions that are right only for the true velocity (e.g. x0_hat = x_t - v).
    """
    x_t = torch.randn(5, 1, 4, 4, generator=seeded(2), dtype=torch.float64)
    v = torch.randn(x_t.shape, generator=seeded(3), dtype=torch.float64)
    t = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95], dtype=torch.float64)
    x0_hat, noise_hat = flow.velocity_to_x0(v, x_t, t), flow.velocity_to_noise(v, x_t, t)
    torch.testing.assert_close(flow.interpolate(x0_hat, noise_hat, t), x_t, rtol=0, atol=1e-14)
    torch.testing.assert_close(noise_hat - x0_hat, v, rtol=0, atol=1e-14)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_gaussian_velocity_gives_the_closed_form_posterior_means(t):
    """E[x0 | x_t] = MU + (1-t)·S²/V_t·(x_t - m_t) and E[x1 | x_t] = t/V_t·(x_t - m_t) (Gaussian conditioning).

    Guards: an error in the test oracle ``gaussian_velocity`` itself (e.g. variance t instead of t²),
    which every sampler test below relies on.
    """
    m, var = (1 - t) * MU, (1 - t) ** 2 * S**2 + t**2
    x_t = torch.linspace(-2, 2, 9, dtype=torch.float64).view(9, 1, 1, 1)
    v = flow.gaussian_velocity(MU, S)(x_t, t)
    torch.testing.assert_close(flow.velocity_to_x0(v, x_t, t), MU + (1 - t) * S**2 / var * (x_t - m))
    torch.testing.assert_close(flow.velocity_to_noise(v, x_t, t), t / var * (x_t - m))


def test_gaussian_velocity_is_the_regression_of_x1_minus_x0_on_x_t():
    """Monte Carlo: fitting x1 - x0 ≈ slope·x_t + intercept on 200,000 pairs recovers the oracle's line.

    Guards: the oracle and the Gaussian closed form agreeing on a shared mistake. Standard errors of the
    fitted slope and intercept are about 0.003 here; the tolerance is 0.015.
    """
    n, t = 200_000, 0.6
    x0 = MU + S * torch.randn(n, generator=seeded(5), dtype=torch.float64)
    x1 = torch.randn(n, generator=seeded(6), dtype=torch.float64)
    x_t = t * x1 + (1 - t) * x0
    design = torch.stack([x_t, torch.ones_like(x_t)], dim=1)  # (n, 2)
    slope, intercept = torch.linalg.lstsq(design, (x1 - x0)[:, None]).solution.flatten().tolist()
    oracle = flow.gaussian_velocity(MU, S)
    at_zero = oracle(torch.zeros(1, 1, 1, 1, dtype=torch.float64), t).item()
    at_one = oracle(torch.ones(1, 1, 1, 1, dtype=torch.float64), t).item()
    assert slope == pytest.approx(at_one - at_zero, abs=0.015)
    assert intercept == pytest.approx(at_zero, abs=0.015)


# ---------------------------------------------------------------------------- ODE samplers
@pytest.mark.parametrize("method, num_steps, tolerance", [
    ("euler", 1000, 0.0012),  # measured std error -0.00058
    ("heun", 32, 0.0008),  # measured +0.00037
    ("midpoint", 16, 0.0001),  # measured -0.000046
    ("heun_euler_last", 128, 0.0002),  # measured -0.000081
])
def test_ode_samplers_return_the_data_distribution(method, num_steps, tolerance):
    """Driven by the exact velocity, each sampler ends at N(MU, S²) up to its discretisation error.

    The mean is exact for every method and step count (the mean path x = m_t is a straight line, on which
    v = -MU is constant), so its tolerance is rounding only. Guards: a step taken the wrong way
    (x + h·v), a step of the wrong size, a grid that does not end at t = 0, the corrector of Heun or
    the midpoint evaluated at the wrong time.
    """
    mean, std = affine_output(method, num_steps)
    assert mean == pytest.approx(MU, abs=1e-12)
    assert std == pytest.approx(S, abs=tolerance)


def test_sampling_gaussian_noise_gives_the_data_statistics():
    """The same with real random noise (Heun, 32 steps, 40,000 pixels): the generator path, end to end.

    Standard errors: mean 0.0015, std 0.0011; the tolerances are 0.006 and 0.005 (plus the 0.0004 bias).
    Guards: noise drawn with the wrong shape or scale inside the sampler.
    """
    out = flow.sample_ode(flow.gaussian_velocity(MU, S), config.randn((10_000, 1, 2, 2), seeded(0)), num_steps=32,
                          method="heun")
    assert out.mean().item() == pytest.approx(MU, abs=0.006)
    assert out.std().item() == pytest.approx(S, abs=0.005)


@pytest.mark.parametrize("mean, std", [(-0.3, 0.5), (0.0, 1.0), (0.2, 2.0)])
def test_samplers_work_for_other_gaussians(mean, std):
    """Heun and midpoint at 64 steps return N(mean, std²) within 0.5 % (measured below 0.05 %).

    Guards: a sampler tuned to the MU, S of the other tests (e.g. a constant in place of the velocity).
    """
    for method in ("heun", "midpoint"):
        got_mean, got_std = affine_output(method, 64, mean, std)
        assert got_mean == pytest.approx(mean, abs=1e-12)
        assert got_std == pytest.approx(std, rel=0.005)


def test_heun_beats_euler_at_equal_steps_and_at_equal_evaluations():
    """Measured std errors: Euler 16 steps -0.034, Heun 16 steps +0.0014, Heun 8 steps (16 NFE) +0.0045.

    Guards: Heun silently reduced to Euler (corrector dropped), which would make the errors equal.
    """
    for steps in (2, 4, 8, 16, 32, 64):
        assert abs(std_error("heun", steps)) < abs(std_error("euler", steps)) / 3
        assert abs(std_error("heun", steps)) < abs(std_error("euler", 2 * steps)) / 3  # same NFE


def test_heun_euler_last_is_heun_until_its_last_step_which_never_calls_the_network_at_t0():
    """Every state but the last is Heun's, bit for bit; the last is one Euler step from Heun's state there.

    Guards: the network evaluated at t = 0 (plain Heun again, the cause of notebook 05's speckle), an
    Euler step taken earlier than the last, or a last step of the wrong size.
    """
    seen_times = []

    def model(x_t, t, labels=None):
        seen_times.append(float(t))
        return flow.gaussian_velocity(MU, S)(x_t, t, labels)

    x_1 = torch.randn(3, 1, 2, 2, generator=seeded(0), dtype=torch.float64)
    heun = [x for _, x in flow.ode_steps(model, x_1, num_steps=5, method="heun")]
    assert 0.0 in seen_times
    seen_times.clear()
    mixed = [x for _, x in flow.ode_steps(model, x_1, num_steps=5, method="heun_euler_last")]
    assert 0.0 not in seen_times and len(seen_times) == flow.nfe("heun_euler_last", 5) == 9
    for ours, theirs in zip(mixed[:-1], heun[:-1], strict=True):
        assert torch.equal(ours, theirs)
    t_last = torch.linspace(1.0, 0.0, 6).tolist()[-2]  # 0.2 as the sampler's grid has it (float32)
    euler_from_there = heun[-2] - t_last * flow.gaussian_velocity(MU, S)(heun[-2], heun[-2].new_tensor(t_last))
    torch.testing.assert_close(mixed[-1], euler_from_there, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method, ratio_range", [("euler", (1.9, 2.1)), ("heun", (3.6, 4.4)),
                                                 ("midpoint", (3.6, 8.5)), ("heun_euler_last", (3.6, 4.4))])
def test_convergence_order(method, ratio_range):
    """Doubling the steps from 64 to 128 divides the error by ~2 (Euler, first order) or ~4 (Heun, second).

    Measured ratios: Euler 1.985, Heun 3.92, midpoint 8.0 (its leading error term vanishes for this
    linear field), Heun with an Euler last step 4.06 (one Euler step adds an O(h²) error: still second
    order). Guards: a corrector with the wrong weight (e.g. v + v_end without the ½, or the
    midpoint at t - h instead of t - h/2), which leaves a method first order or worse.
    """
    low, high = ratio_range
    assert low < std_error(method, 64) / std_error(method, 128) < high


def test_trajectory_follows_the_marginals():
    """Every state the sampler yields has the marginal std sqrt((1-t)²S² + t²) of its time, within 0.002.

    The trajectory API yields (t, x_t) after each step, times falling from 1 to exactly 0. Guards: the
    yielded time being the start of the step instead of its end, or a grid that stops short of t = 0.
    """
    starts = torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1, 1)
    steps = list(flow.ode_steps(flow.gaussian_velocity(MU, S), starts, num_steps=32, method="heun"))
    assert len(steps) == 32
    times = [t for t, _ in steps]
    assert times == sorted(times, reverse=True) and times[-1] == 0.0 and times[0] == pytest.approx(1 - 1 / 32)
    for t, x in steps:
        x = x.flatten()
        assert x[0].item() == pytest.approx((1 - t) * MU, abs=1e-12)
        assert (x[1] - x[0]).item() == pytest.approx(math.sqrt((1 - t) ** 2 * S**2 + t**2), abs=0.002)


def count_calls(model):
    calls = []

    def counted(x_t, t, labels=None):
        calls.append(x_t.shape[0])
        return model(x_t, t, labels)

    return counted, calls


@pytest.mark.parametrize("method", flow.ODE_METHODS)
def test_network_evaluations_match_nfe(method):
    """Sequential evaluations per image are ``flow.nfe``; with guidance each is ONE batched pass of 2B.

    Guards: an NFE table that miscounts (Heun costs 2 per step) and guidance done as two separate passes.
    """
    model, calls = count_calls(lambda x, t, labels: torch.zeros_like(x))
    noise = config.randn((3, 1, 2, 2), seeded(0))
    flow.sample_ode(model, noise, num_steps=5, method=method)
    assert len(calls) == flow.nfe(method, 5) and set(calls) == {3}
    calls.clear()
    flow.sample_ode(model, noise, torch.tensor([1, 2, 3]), num_steps=5, method=method, guidance_scale=2.0)
    assert len(calls) == flow.nfe(method, 5) and set(calls) == {6}


# ---------------------------------------------------------------------------- guidance
def labelled_model(x_t, t, labels):
    """A toy conditional velocity that depends on x_t, t and the label (NULL_LABEL = 10 included)."""
    shift = labels.to(x_t.dtype).view(-1, 1, 1, 1) / 10  # (B, 1, 1, 1)
    t = torch.as_tensor(t, dtype=x_t.dtype).expand(x_t.shape[0]).view(-1, 1, 1, 1)
    return x_t * (0.5 + t) - shift


@pytest.mark.parametrize("method", flow.ODE_METHODS)
def test_guidance_scale_0_is_unconditional_and_1_is_conditional(method):
    """Sampling with scale 0 equals sampling with the null label, scale 1 with the plain label.

    Scale 0 is bit for bit (0·d adds exactly 0); scale 1 computes u + (c - u), equal to c up to
    rounding (float32 here, like the DiT: guidance passes t on as float32). Guards: the formula with
    the roles of cond and uncond swapped, or ``w·cond + (1 - w)·uncond`` written with a sign error.
    """
    shape = (4, 1, 3, 3)
    x_1 = torch.randn(shape, generator=seeded(0))
    labels = torch.tensor([0, 3, 7, 9])
    run = lambda model, **kw: flow.sample_ode(model, x_1, num_steps=6, method=method, **kw)  # noqa: E731
    unconditional = run(lambda x, t, y: labelled_model(x, t, torch.full_like(labels, NULL_LABEL)))
    conditional = run(lambda x, t, y: labelled_model(x, t, labels))
    assert torch.equal(run(labelled_model, labels=labels, guidance_scale=0.0), unconditional)
    torch.testing.assert_close(run(labelled_model, labels=labels, guidance_scale=1.0), conditional,
                               rtol=0, atol=1e-5)
    guided = run(labelled_model, labels=labels, guidance_scale=3.0)
    assert not torch.allclose(guided, conditional)


def test_guided_velocity_follows_the_formula():
    """v = v_uncond + w·(v_cond - v_uncond) at one point. Guards: any other formula, e.g. w·v_cond."""
    x = torch.randn(4, 1, 2, 2, generator=seeded(1), dtype=torch.float64)
    labels = torch.tensor([1, 2, 3, 4])
    t = torch.tensor(0.4)
    cond, uncond = labelled_model(x, t, labels), labelled_model(x, t, torch.full_like(labels, NULL_LABEL))
    guided = guidance.maybe_guided(labelled_model, 2.5, labels)(x, t, labels)
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond))


# ---------------------------------------------------------------------------- inputs and determinism
@pytest.mark.parametrize("num_steps, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError),
                                              ("4", TypeError)])
def test_bad_step_counts_raise(num_steps, error):
    """Guards: 0 steps silently returning the noise, a float step count, True taken as 1.

    A count of the wrong type is a TypeError since the redesign (issue 23); it was a ValueError."""
    with pytest.raises(error, match="num_steps"):
        flow.sample_ode(flow.gaussian_velocity(MU, S), torch.zeros(2, 1, 2, 2), num_steps=num_steps, method="heun")


@pytest.mark.parametrize("method", ["rk4", "Euler", "", None])
def test_bad_methods_raise(method):
    """Guards: an unknown method falling through to one of the others."""
    with pytest.raises(ValueError, match="method"):
        flow.sample_ode(flow.gaussian_velocity(MU, S), torch.zeros(2, 1, 2, 2), num_steps=4, method=method)


def test_bad_labels_and_guidance_raise():
    """Guards: the null label or 11 accepted as a digit, a negative scale, guidance without labels."""
    model, noise = labelled_model, torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="labels"):
        flow.sample_ode(model, noise, torch.tensor([3, NULL_LABEL]), num_steps=2, guidance_scale=2.0)
    with pytest.raises(ValueError, match="labels"):
        flow.sample_ode(model, noise, torch.tensor([3, 11]), num_steps=2)  # unguided: 0-9 and NULL_LABEL only
    with pytest.raises(ValueError, match="guidance_scale"):
        flow.sample_ode(model, noise, torch.tensor([3, 4]), num_steps=2, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="labels"):
        flow.sample_ode(model, noise, num_steps=2, guidance_scale=2.0)


@pytest.mark.parametrize("method", flow.ODE_METHODS)
def test_same_seed_same_samples(method):
    """Guards: noise drawn from the global RNG instead of the generator (unreproducible samples).

    The ODE samplers take their noise from the caller; config.randn draws it from the generator alone."""
    shape = (3, 1, 4, 4)
    model = flow.gaussian_velocity(MU, S)

    def draw(seed):
        return flow.sample_ode(model, config.randn(shape, seeded(seed)), num_steps=4, method=method)

    first = draw(11)
    torch.manual_seed(123)  # the global state must not matter
    assert torch.equal(first, draw(11))
    assert not torch.equal(first, draw(12))
    x_1 = torch.randn(shape, generator=seeded(11))
    assert torch.equal(first, flow.sample_ode(model, x_1, num_steps=4, method=method))  # the same noise


# ---------------------------------------------------------------------------- figures and explorer of notebooks 04-05
def test_flow_steps_explorer_draws_the_ode_from_its_fixed_noise():
    """The slider spans 1-50 steps, the toggle the methods; each redraw is flow.sample_ode from the kept noise.

    Guards: an explorer that draws fresh noise on every redraw (the slider would mix two effects), or
    one whose title misstates the NFE.
    """
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import plotting, widgets

    model = flow.gaussian_velocity(MU, S)
    explorer = widgets.flow_steps_explorer(model, None, steps=3, method="euler",
                                           noise=torch.randn(4, 1, 8, 8, generator=seeded(0)))
    slider, toggle = explorer.controls["steps"], explorer.controls["method"]
    assert (slider.min, slider.max, slider.value) == (1, 50, 3)
    assert list(toggle.options) == ["euler", "heun", "heun_euler_last", "midpoint"]
    assert explorer.figure.axes[0].get_title().startswith("euler, 3 steps = 3 NFE")
    expected = flow.sample_ode(model, explorer.noise, num_steps=3, method="euler")
    torch.testing.assert_close(explorer.images, expected)
    first = explorer.images
    toggle.value = "heun"
    slider.value = 5
    assert explorer.figure.axes[0].get_title().startswith("heun, 5 steps = 10 NFE")
    torch.testing.assert_close(explorer.images, flow.sample_ode(model, explorer.noise, num_steps=5, method="heun"))
    toggle.value = "heun_euler_last"
    assert explorer.figure.axes[0].get_title().startswith("heun_euler_last, 5 steps = 9 NFE")
    toggle.value, slider.value = "euler", 3  # deterministic: the first picture comes back
    assert torch.equal(explorer.images, first)
    shown = torch.as_tensor(explorer.figure.axes[0].images[0].get_array().data)
    torch.testing.assert_close(shown, plotting.grid(first, nrow=4))


def test_flow_figures_draw_what_they_are_given():
    """One line per curve (plus the guides and floor markers), one panel per path set, the chord drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import plotting

    fig = plotting.loss_by_time([0.25, 0.75], {"a": [1.0, 0.5], "b": [2.0, 2.0]}, floors={"t=0": (0.0, 1.0)})
    assert len(fig.axes[0].lines) == 3
    fig = plotting.error_against_steps([1, 2, 4], {"euler": [-0.3, -0.2, -0.1], "heun": [0.2, 0.04, 0.01]})
    assert len(fig.axes[0].lines) == 4  # two methods, the 1/n and 1/n² guides
    paths = torch.cumsum(torch.randn(3, 5, 2, generator=seeded(0)), dim=1)  # (K, T, 2)
    fig = plotting.trajectories_2d({"one": paths, "two": paths[:2]})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3 * 4  # path, chord, start and end per path
    chord = fig.axes[0].lines[1]
    assert list(chord.get_xdata()) == [paths[0, 0, 0].item(), paths[0, -1, 0].item()]
    fig = plotting.wide_grid(torch.zeros(20, 1, 8, 8), "t", nrow=10)
    assert fig.axes[0].images[0].get_array().shape == (2 * 10 + 2, 10 * 10 + 2)
