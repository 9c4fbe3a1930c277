"""The SDE sampler of the flow model: score from the velocity, marginals kept, γ = 0 is Euler, seeding.

Closed form (docs/conventions.md, "Closed forms for checks"): for data x0 ~ N(MU, S²) in every pixel,
x_t = t·x1 + (1 - t)·x0 is N(m_t, V_t) with m_t = (1 - t)·MU and V_t = (1 - t)²·S² + t², so the exact
score is -(x - m_t) / V_t
and ``flow.gaussian_velocity(MU, S)`` is the exact velocity. Any sampler driven by it must end at
N(MU, S²); Euler–Maruyama misses by a discretisation error that shrinks like 1/steps.
"""

import math

import pytest
import torch

from course_lib import config, evaluation, flow

MU, S = 0.5, 0.3


def marginal(t: float) -> tuple[float, float]:
    """Mean and standard deviation of x_t for N(MU, S²) data."""
    return (1 - t) * MU, math.sqrt((1 - t) ** 2 * S**2 + t**2)


def exact_score(x: torch.Tensor, t: float) -> torch.Tensor:
    mean, std = marginal(t)
    return -(x - mean) / std**2


def sde(shape, num_steps, gamma, seed=0, x_1=None, **kwargs):
    """The SDE sampler from ``x_1``, or from noise drawn first from the seed's generator; its step noise
    comes from that generator."""
    generator = torch.Generator().manual_seed(seed)
    noise = config.randn(shape, generator) if x_1 is None else x_1
    return flow.sample_sde(flow.gaussian_velocity(MU, S), noise, num_steps=num_steps, gamma=gamma,
                           generator=generator, **kwargs)


def labelled_model(x_t, t, labels):
    """A toy conditional velocity: depends on x_t, t and the label (NULL_LABEL = 10 included)."""
    shift = labels.float().view(-1, 1, 1, 1) / 10  # (B, 1, 1, 1)
    t = torch.as_tensor(t).float().expand(x_t.shape[0]).view(-1, 1, 1, 1)
    return x_t * (0.5 + t) - shift


# ---------------------------------------------------------------------------- the score
@pytest.mark.parametrize("t", [0.05, 0.3, 0.5, 0.8, 1.0])
def test_score_from_the_exact_velocity_is_the_exact_gaussian_score(t):
    """Guards: score = -noise_hat / t with the wrong sign, without the 1/t, or with t for (1 - t)."""
    mean, std = marginal(t)
    x = mean + std * torch.randn(2000, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = flow.gaussian_velocity(MU, S)(x, t)
    torch.testing.assert_close(flow.velocity_to_score(v, x, t), exact_score(x, t), rtol=1e-9, atol=1e-9)


def test_score_takes_one_time_per_sample():
    times = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)  # (B,)
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    score = flow.velocity_to_score(flow.gaussian_velocity(MU, S)(x, times), x, times)
    for b, t in enumerate(times.tolist()):
        torch.testing.assert_close(score[b], exact_score(x[b], t), rtol=1e-9, atol=1e-9)


def test_score_at_t_zero_is_refused():
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="undefined at t = 0"):
        flow.velocity_to_score(torch.zeros_like(x), x, 0.0)


def test_the_score_points_from_x_t_towards_the_likely_region():
    """The score of N(m_t, V_t) points back to the mean: one small step along it raises the density."""
    t = 0.6
    mean, std = marginal(t)
    x = torch.tensor([mean - 2 * std, mean + 2 * std]).view(2, 1, 1, 1)
    score = flow.velocity_to_score(flow.gaussian_velocity(MU, S)(x, t), x, t)
    assert score[0].item() > 0 > score[1].item()


# ---------------------------------------------------------------------------- the marginals are kept
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_sde_with_the_exact_velocity_returns_the_data_gaussian(gamma):
    """Tolerance from measurement (200,000 values, seed 0): |std - S| · steps ≈ 0.41, 0.29, 0.16 at
    γ = 0.5, 1, 2 (and 0.56 for the Euler ODE), so 256 steps leave a bias below 0.0016. With 40,000
    values the standard errors are 0.0015 (mean) and 0.0011 (std); 0.01 is the bias plus about 5
    standard errors. Guards: the drift sign flipped (v + ½σ²·score), the score without its 1/t or
    with the wrong sign, noise scaled by h instead of sqrt(h)."""
    out = sde((40_000, 1, 1, 1), 256, gamma)
    assert out.mean().item() == pytest.approx(MU, abs=0.01)
    assert out.std().item() == pytest.approx(S, abs=0.01)


def test_sde_error_shrinks_like_one_over_steps():
    """Measured at γ = 1 (200,000 values): std 0.2793 at 16 steps, 0.2955 at 64, 0.2989 at 256 (S = 0.3):
    Euler–Maruyama is first-order, so too few steps shrink the spread, and 4× the steps cut the gap ~4×."""
    gaps = [S - sde((100_000, 1, 1, 1), steps, 1.0).std().item() for steps in (16, 64)]
    assert 0.014 < gaps[0] < 0.028  # 0.33 / 16 ≈ 0.021
    assert gaps[1] < gaps[0] / 2.5  # ≈ 0.0045


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_sde_chain_passes_through_the_exact_marginal_at_t_one_half(gamma):
    """x at t = 0.5 along the chain is N(m_t, V_t): measured std 0.5228 (γ = 1) and 0.5236 (γ = 2)
    against 0.5220 at 256 steps. With 40,000 values the standard errors are 0.0026 (mean) and 0.0018
    (std); 0.012 is about 4.5 of them. Guards: the drift sign, the score without its 1/t, noise
    scaled by h instead of sqrt(h). (A constant σ² = γ is no bug here: every σ(t) keeps the marginals
    in continuous time; only the by-hand replay below pins σ² = γ·t.)"""
    generator = torch.Generator().manual_seed(0)
    states = dict(flow.sde_steps(flow.gaussian_velocity(MU, S), config.randn((40_000, 1, 1, 1), generator),
                                 num_steps=256, gamma=gamma, generator=generator))
    assert 0.5 in states
    mean, std = marginal(0.5)
    assert states[0.5].mean().item() == pytest.approx(mean, abs=0.012)
    assert states[0.5].std().item() == pytest.approx(std, abs=0.012)


def test_sde_steps_yield_each_time_down_to_zero():
    times = [t for t, _ in flow.sde_steps(flow.gaussian_velocity(MU, S), torch.zeros(3, 1, 2, 2), num_steps=8,
                                          gamma=1.0, generator=torch.Generator().manual_seed(0))]
    assert times == pytest.approx([1 - k / 8 for k in range(1, 9)])
    assert times[-1] == 0.0


# ---------------------------------------------------------------------------- the update itself
def test_two_steps_by_hand_match_the_sampler():
    """Replays Euler–Maruyama with the same draws: x ← x - h·(v - ½σ²·score) + σ·sqrt(h)·z, σ² = γ·t at
    the start of the step, no z on the last step. Guards: σ² not ∝ t, noise on the last step, the
    drift sign, the score without its 1/t, the noise scaled by h instead of sqrt(h)."""
    gamma, h = 1.5, 0.5
    model = flow.gaussian_velocity(MU, S)
    replay = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, 2, 2, generator=replay)  # x_1, the first draw
    out = sde((5, 1, 2, 2), 2, gamma, seed=3)
    for t in (1.0, 0.5):
        v = model(x, t)
        score = -(x + (1 - t) * v) / t
        x = x - h * (v - 0.5 * gamma * t * score)
        if t > h:  # not the last step
            x = x + math.sqrt(gamma * t * h) * torch.randn(x.shape, generator=replay)
    torch.testing.assert_close(out, x)


def test_one_step_sde_is_deterministic_given_x_1():
    """A single step is the last step, which adds no noise. Guards: noise on the last step."""
    x_1 = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    runs = [sde(x_1.shape, 1, 1.0, seed=seed, x_1=x_1) for seed in (1, 2)]
    assert torch.equal(runs[0], runs[1])


def test_gamma_zero_is_the_euler_ode_bit_for_bit():
    model = flow.gaussian_velocity(MU, S)
    for num_steps in (1, 7, 32):
        noise = config.randn((6, 1, 4, 4), torch.Generator().manual_seed(4))
        ode = flow.sample_ode(model, noise, num_steps=num_steps, method="euler")
        sde_out = flow.sample_sde(model, noise, num_steps=num_steps, gamma=0.0,
                                  generator=torch.Generator().manual_seed(4))
        assert torch.equal(ode, sde_out)


def test_gamma_zero_with_guidance_is_the_guided_euler_ode_bit_for_bit():
    labels = torch.tensor([0, 3, 7, 9])
    x_1 = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    ode = flow.sample_ode(labelled_model, x_1, labels, num_steps=6, method="euler", guidance_scale=3.0)
    sde_out = flow.sample_sde(labelled_model, x_1, labels, num_steps=6, gamma=0, guidance_scale=3.0)
    assert torch.equal(ode, sde_out)
    unguided = flow.sample_ode(labelled_model, x_1, labels, num_steps=6, method="euler")
    assert not torch.allclose(ode, unguided)  # guidance did change the path


# ---------------------------------------------------------------------------- randomness
def test_same_seed_same_samples_other_seed_other_samples():
    runs = [sde((8, 1, 4, 4), 16, 1.0, seed=seed) for seed in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_one_initial_noise_gives_one_answer_at_gamma_zero_and_many_above(gamma):
    """The notes' fun fact: the ODE maps one noise to one result; the SDE maps it to many."""
    x_1 = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)).expand(8, 1, 4, 4)
    out = sde(x_1.shape, 16, gamma, seed=1, x_1=x_1)
    spread = (out - out[:1]).abs().amax().item()
    if gamma == 0:
        assert spread == 0.0
    else:
        assert spread > 0.1


def test_the_sde_noise_is_drawn_from_the_generator_not_the_global_seed():
    x_1 = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    first = sde(x_1.shape, 8, 1.0, seed=11, x_1=x_1)
    torch.manual_seed(1)
    second = sde(x_1.shape, 8, 1.0, seed=11, x_1=x_1)
    assert torch.equal(first, second)


# ---------------------------------------------------------------------------- bad input
# a value of the wrong type is a TypeError since the redesign (issue 23: plain ValueError/TypeError naming it)
@pytest.mark.parametrize("gamma, error", [(-0.1, ValueError), (-1, ValueError), (float("nan"), ValueError),
                                          (float("inf"), ValueError), (-float("inf"), ValueError), (True, TypeError),
                                          (False, TypeError), ("1", TypeError), (None, TypeError)])
def test_bad_gamma_is_refused_with_a_clear_message(gamma, error):
    with pytest.raises(error, match="gamma"):
        sde((2, 1, 2, 2), 4, gamma)


@pytest.mark.parametrize("gamma", [0, 0.0, 1, 2.5])
def test_good_gamma_is_accepted(gamma):
    assert config.check_number("gamma", gamma) == float(gamma)
    assert torch.isfinite(sde((2, 1, 2, 2), 2, gamma)).all()


@pytest.mark.parametrize("num_steps, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_step_count_is_refused(num_steps, error):
    with pytest.raises(error, match="num_steps"):
        sde((2, 1, 2, 2), num_steps, 1.0)


def test_the_step_noise_takes_the_start_noises_shape_and_labels_must_fit_it():
    """Guards: one step noise broadcast over the batch (every sample would then get the same noise).

    Before issue 23 the sampler took ``shape`` and ``x_1`` and refused an ``x_1`` of another shape; now the
    noise is the one source of the shape, so what is left to refuse is labels for another batch size."""
    x_1 = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0)).expand(8, 1, 2, 2)
    out = sde(x_1.shape, 4, 1.0, x_1=x_1)
    assert out.shape == (8, 1, 2, 2) and len({tuple(row.flatten().tolist()) for row in out}) == 8
    with pytest.raises(ValueError, match="labels"):
        flow.sample_sde(labelled_model, x_1, torch.tensor([1, 2]), num_steps=4, generator=torch.Generator())


def test_nfe_of_the_sde_is_one_per_step():
    calls = []

    def counting(x_t, t, labels=None):
        calls.append(1)
        return torch.zeros_like(x_t)

    flow.sample_sde(counting, torch.zeros(2, 1, 2, 2), num_steps=12, gamma=1.0,
                    generator=torch.Generator().manual_seed(0))
    assert len(calls) == flow.nfe("sde", 12) == 12


# ---------------------------------------------------------------------------- the γ slider and figures
def _suptitle(explorer) -> str:
    return " ".join(text.get_text() for text in explorer.figure.texts)  # fig.suptitle is one of them


def test_noise_level_explorer_shows_one_answer_at_gamma_zero_and_variety_above():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import widgets

    explorer = widgets.noise_level_explorer(labelled_model, labels=[1, 7], guidance_scale=2.0, num_samples=4,
                                            num_steps=6, gamma=0.0, seed=0)
    assert explorer.images.shape == (8, 1, 32, 32)
    rows = explorer.images.view(2, 4, 1, 32, 32)
    assert torch.equal(rows[:, :1].expand_as(rows), rows)  # γ = 0: each row is one image repeated
    assert "γ = 0" in _suptitle(explorer)
    slider = explorer.controls["gamma"]
    assert (slider.min, slider.max) == (0.0, 3.0)
    slider.value = 2.0  # moving the slider redraws from the same noise
    rows = explorer.images.view(2, 4, 1, 32, 32)
    assert (rows - rows[:, :1]).abs().amax().item() > 0.1
    assert "γ = 2" in _suptitle(explorer)
    again = widgets.noise_level_explorer(labelled_model, labels=[1, 7], guidance_scale=2.0, num_samples=4,
                                         num_steps=6, gamma=2.0, seed=0)
    assert torch.equal(again.images, explorer.images)  # the same γ always shows the same picture


def test_noise_level_explorer_wants_one_noise_per_label():
    from course_lib import widgets

    with pytest.raises(ValueError, match="one per label"):
        widgets.noise_level_explorer(labelled_model, labels=[1, 2, 3], noise=torch.randn(2, 1, 8, 8))


def test_sde_figures_draw():
    from course_lib import plotting

    times = torch.linspace(1, 0, 9)
    fig = plotting.paths_1d(times, {"ODE": torch.randn(9, 5), "SDE": torch.randn(9, 5)}, MU, S)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlim() == (1.0, 0.0)
    fig = plotting.same_noise_grid({"a": torch.zeros(3, 1, 8, 8), "b": torch.zeros(2, 1, 8, 8)}, "t")
    assert len(fig.axes) == 6
    fig = plotting.quality_against({"Euler": [(8, 0.9, 50.0), (16, 0.95, 40.0)]}, "NFE", floor=10.0, log_x=True)
    assert [ax.get_ylabel() for ax in fig.axes] == ["class accuracy (%)", "Fréchet distance"]
    fig = plotting.quality_against({"SDE": [(0.0, 0.5, 50.0), (1.0, 0.9, 40.0)]}, "γ", n=100)
    bars = fig.axes[0].containers[0]  # the error bars: the Wilson interval at z = 1, in percent
    ends = [end for segment in bars.lines[2][0].get_segments() for end in (segment[0, 1], segment[1, 1])]
    wilson = [*evaluation.wilson_interval(0.5, 100), *evaluation.wilson_interval(0.9, 100)]
    assert ends == pytest.approx([100 * end for end in wilson])
