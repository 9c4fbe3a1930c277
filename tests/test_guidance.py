"""Classifier-free guidance: label dropout, the notes' formula, one batched forward, and samplers.

The closed form: if the conditional model is the exact ε of N(μ_c, S²) data and the unconditional
one the exact ε of N(μ_u, S²) (same S), the guided ε = ε_u + w (ε_c - ε_u) is linear in the means,
so it is exactly the ε of N(μ_u + w (μ_c - μ_u), S²): guided sampling must return that Gaussian.
"""

import argparse

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import cli, config, ddpm, dit, guidance  # noqa: E402
from course_lib.data import NULL_LABEL  # noqa: E402

S = 0.3
MEANS = {0: 0.5, 1: -0.3, NULL_LABEL: 0.1}  # per-pixel data mean of digit 0, digit 1, and "no label"
MEAN_TABLE = torch.tensor([MEANS.get(label, float("nan")) for label in range(NULL_LABEL + 1)], dtype=torch.float64)


def gaussian_class_model(scheduler):
    """model(x_t, t, labels): the exact ε for N(MEANS[label], S²) data, per sample."""

    def model(x_t, t, labels):
        step = (t * scheduler.num_timesteps).round().long() - 1  # invert step_to_time
        alpha_bar = scheduler.alpha_bars[step].view(-1, 1, 1, 1).double()
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        mu = MEAN_TABLE[labels].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return (b * (x_t.double() - a * mu) / (a**2 * S**2 + b**2)).float()

    return model


class Recorder:
    """A toy model: cond = label + t, uncond (NULL_LABEL) = -1 - t everywhere; it records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t, labels):
        self.calls.append((x_t.shape[0], labels.clone()))
        value = torch.where(labels == NULL_LABEL, -1.0 - t, labels.float() + t)  # (B,)
        return value.view(-1, 1, 1, 1).expand_as(x_t).clone()


# ---------------------------------------------------------------------------- label dropout
def test_drop_labels_rate_matches_p_uncond_and_keeps_the_rest():
    labels = torch.arange(200_000) % 10
    dropped = guidance.drop_labels(labels, guidance.P_UNCOND, torch.Generator().manual_seed(0))
    rate = (dropped == NULL_LABEL).float().mean().item()
    # binomial standard error sqrt(0.1 * 0.9 / 200,000) = 0.00067; 5 of them is 0.0034
    assert rate == pytest.approx(guidance.P_UNCOND, abs=0.0034)
    kept = dropped != NULL_LABEL
    assert torch.equal(dropped[kept], labels[kept])  # a label is kept as it was or replaced, nothing else
    for digit in range(10):  # every digit is dropped at the same rate (no class is favoured)
        assert (dropped[labels == digit] == NULL_LABEL).float().mean().item() == pytest.approx(0.1, abs=0.011)
    assert (guidance.drop_labels(labels, 0.0) == labels).all()
    assert (guidance.drop_labels(labels, 1.0) == NULL_LABEL).all()
    assert guidance.drop_labels(labels, 0.3, torch.Generator().manual_seed(0)).ne(labels).float().mean() \
        == pytest.approx(0.3, abs=0.005)


def test_drop_labels_is_reproducible_and_checks_p():
    labels = torch.arange(100) % 10
    first = guidance.drop_labels(labels, 0.5, torch.Generator().manual_seed(1))
    again = guidance.drop_labels(labels, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert guidance.drop_labels(labels, 0.5).data_ptr() != labels.data_ptr()  # a new tensor
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p_uncond"):
            guidance.drop_labels(labels, bad)


# ---------------------------------------------------------------------------- the formula
def test_scale_0_is_unconditional_1_conditional_and_w_the_notes_formula():
    model, x_t, t = Recorder(), torch.zeros(3, 1, 4, 4), torch.tensor([0.1, 0.5, 0.9])
    labels = torch.tensor([2, 7, 0])
    cond = (labels.float() + t).view(-1, 1, 1, 1).expand_as(x_t)
    uncond = (-1.0 - t).view(-1, 1, 1, 1).expand_as(x_t)
    assert torch.equal(guidance.guided_prediction(model, x_t, t, labels, 0.0), uncond)  # exactly
    # u + 1 * (c - u) equals c up to one rounding of c - u (it is not bitwise c in floating point)
    torch.testing.assert_close(guidance.guided_prediction(model, x_t, t, labels, 1.0), cond, rtol=1e-6, atol=1e-6)
    for w in (0.5, 2.0, 5.0):
        torch.testing.assert_close(guidance.guided_prediction(model, x_t, t, labels, w),
                                   uncond + w * (cond - uncond))
    # guidance extrapolates: at w = 3 the prediction lies 3 times as far from uncond as cond does
    torch.testing.assert_close(guidance.guided_prediction(model, x_t, t, labels, 3) - uncond, 3 * (cond - uncond))


def test_guided_prediction_is_one_batched_forward_of_cond_then_uncond():
    model = Recorder()
    guidance.guided_prediction(model, torch.zeros(3, 1, 4, 4), torch.rand(3), torch.tensor([4, 5, 6]), 2.0)
    assert len(model.calls) == 1
    batch, labels = model.calls[0]
    assert batch == 6
    assert labels.tolist() == [4, 5, 6, NULL_LABEL, NULL_LABEL, NULL_LABEL]


def _open_dit():
    """A tiny cross-attention DiT with its zero-initialised output paths randomised, so labels act."""
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny", cross_attention=True)).eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.cross.out.weight, std=0.1)
        torch.nn.init.normal_(block.ada[1].weight, std=0.02)
    torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    return model


def test_batched_guided_forward_equals_two_separate_forwards():
    model = _open_dit()
    x_t, t, labels = torch.randn(4, 1, 32, 32), torch.rand(4), torch.tensor([1, 4, 4, 9])
    with torch.no_grad():
        cond = model(x_t, t, labels)
        uncond = model(x_t, t, torch.full_like(labels, NULL_LABEL))
        guided = guidance.guided_prediction(model, x_t, t, labels, 3.0)
    assert (cond - uncond).abs().max() > 1e-3  # the label matters, so a swap would show
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_guided_wrapper_matches_guided_prediction_and_needs_labels():
    """Guided sampling without labels is refused where a sampler starts (maybe_guided), not at every step."""
    model = _open_dit()
    x_t, t, labels = torch.randn(2, 1, 32, 32), torch.rand(2), torch.tensor([3, 8])
    with torch.no_grad():
        torch.testing.assert_close(guidance.guided(model, 2.0)(x_t, t, labels),
                                   guidance.guided_prediction(model, x_t, t, labels, 2.0))
    assert guidance.maybe_guided(model, None, None) is model  # no scale: the model itself
    with pytest.raises(ValueError, match="needs labels"):
        guidance.maybe_guided(model, 2.0, None)
    with pytest.raises(ValueError, match="needs labels"):
        ddpm.sample_ddim(model, ddpm.NoiseScheduler(), x_t, num_steps=2, guidance_scale=2.0)


@pytest.mark.parametrize("bad, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-0.5, ValueError),
    ("2", TypeError), (True, TypeError), (None, TypeError),
])
def test_bad_guidance_scales_are_refused(bad, error):
    with pytest.raises(error, match="guidance_scale"):
        guidance.check_guidance_scale(bad)
    with pytest.raises(error, match="guidance_scale"):
        guidance.guided(Recorder(), bad)


@pytest.mark.parametrize("labels, error", [
    (torch.tensor([10]), ValueError), (torch.tensor([-1]), ValueError), (torch.tensor([2.0]), TypeError),
])
def test_sampling_labels_must_be_digits(labels, error):
    """Checked once where a guided sampler starts (guidance.for_sampling), not in the per-step formula."""
    noise = torch.zeros(1, 1, 4, 4)
    with pytest.raises(error, match="labels"):
        guidance.for_sampling(Recorder(), labels, noise, 1.0)
    with pytest.raises(error, match="labels"):
        ddpm.sample_ddim(Recorder(), ddpm.NoiseScheduler(), noise, labels, num_steps=2, guidance_scale=1.0)


def test_unguided_sampling_may_ask_for_the_null_label_and_labels_must_fit_the_batch():
    """Unguided, NULL_LABEL asks a conditional model for its unconditional prediction; guided, the sampler adds it."""
    noise = torch.zeros(2, 1, 4, 4)
    null = torch.full((2,), NULL_LABEL)
    model = Recorder()
    assert torch.equal(guidance.for_sampling(model, null, noise, None)[1], null)
    with pytest.raises(ValueError, match="labels"):
        guidance.for_sampling(model, null, noise, 2.0)
    with pytest.raises(ValueError, match="labels"):
        guidance.for_sampling(model, torch.tensor([1, 2, 3]), noise, None)  # three labels for two images
    assert guidance.for_sampling(model, None, noise, None) == (model, None)


# ---------------------------------------------------------------------------- samplers, closed form
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_ddim_returns_the_extrapolated_gaussian(w):
    scheduler = ddpm.NoiseScheduler()
    labels = torch.tensor([0, 1]).repeat_interleave(2000)
    noise = config.randn((4000, 1, 2, 2), torch.Generator().manual_seed(0))
    out = ddpm.sample_ddim(gaussian_class_model(scheduler), scheduler, noise, labels, num_steps=100, guidance_scale=w)
    for digit, half in ((0, out[:2000]), (1, out[2000:])):
        expected = MEANS[NULL_LABEL] + w * (MEANS[digit] - MEANS[NULL_LABEL])
        # DDIM's mean is right at any step count (tests/test_ddpm_sampling.py); 8000 values per half
        assert half.mean().item() == pytest.approx(expected, abs=0.015)


def test_guided_ancestral_ddpm_returns_the_extrapolated_gaussian():
    scheduler = ddpm.NoiseScheduler()
    labels = torch.full((2000,), 1)  # 8000 values: standard errors 0.0034 (mean) and 0.8 % (std)
    gen = torch.Generator().manual_seed(0)
    out = ddpm.sample(gaussian_class_model(scheduler), scheduler, config.randn((2000, 1, 2, 2), gen), labels,
                      guidance_scale=2.0, generator=gen)
    assert out.mean().item() == pytest.approx(MEANS[NULL_LABEL] + 2.0 * (MEANS[1] - MEANS[NULL_LABEL]), abs=0.015)
    assert out.std().item() == pytest.approx(S, rel=0.05)  # guidance moved the mean, not the spread


def test_sampler_without_guidance_scale_calls_the_model_once_per_step_with_the_labels():
    model = Recorder()
    labels = torch.tensor([3, 5])
    ddpm.sample_ddim(model, ddpm.NoiseScheduler(), torch.zeros(2, 1, 4, 4), labels, num_steps=5)
    assert len(model.calls) == 5 and all(torch.equal(lab, labels) for _, lab in model.calls)
    model.calls.clear()
    ddpm.sample_ddim(model, ddpm.NoiseScheduler(), torch.zeros(2, 1, 4, 4), labels, num_steps=5, guidance_scale=2.0)
    assert len(model.calls) == 5 and all(batch == 4 for batch, _ in model.calls)  # still one pass per step


# ---------------------------------------------------------------------------- figures and explorer of notebook 03
def test_guidance_grid_has_a_row_per_scale_and_a_column_per_digit():
    from course_lib import plotting

    images = {scale: torch.rand(10, 1, 32, 32) * 2 - 1 for scale in (0, 1, 2, 3, 5)}
    fig = plotting.guidance_grid(images)
    assert len(fig.axes) == 50
    assert [ax.get_title() for ax in fig.axes[:11]] == [f"digit {d}" for d in range(10)] + [""]  # first row only
    assert [fig.axes[10 * r].get_ylabel() for r in range(5)] == [f"guidance {s}" for s in (0, 1, 2, 3, 5)]
    shown = torch.as_tensor(fig.axes[10 * 3 + 4].images[0].get_array().data)  # guidance 3, digit 4
    torch.testing.assert_close(shown, (images[3][4, 0] + 1) / 2)


def test_attention_maps_draw_each_tokens_weights_on_the_patch_grid():
    from course_lib import plotting

    weights = torch.softmax(torch.randn(64, 4), dim=-1)  # (N, M)
    fig = plotting.attention_maps({"step 999": weights, "step 500": weights.flip(1)}, image=-torch.ones(1, 32, 32))
    maps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(maps) == 2 * 5
    torch.testing.assert_close(torch.as_tensor(maps[3].images[0].get_array().data), weights[:, 2].reshape(8, 8))
    torch.testing.assert_close(torch.as_tensor(maps[5 + 1].images[0].get_array().data), weights[:, 3].reshape(8, 8))


def test_guidance_explorer_draws_guided_ddim_from_fixed_noise_and_redraws():
    from course_lib import widgets

    model, scheduler = _open_dit(), ddpm.NoiseScheduler()
    explorer = widgets.guidance_explorer(model, scheduler, "v", digit=4, guidance_scale=2.0, num_images=4, steps=3)
    assert explorer.noise.shape == (4, 1, 32, 32)
    expected = ddpm.sample_ddim(model, scheduler, explorer.noise, torch.full((4,), 4), num_steps=3, guidance_scale=2.0,
                                prediction="v")
    torch.testing.assert_close(explorer.images, expected)
    assert explorer.figure.axes[0].get_title().startswith("digit 4, guidance 2: DDIM 3 steps")
    first = explorer.images
    explorer.controls["digit"].value = 7
    assert explorer.figure.axes[0].get_title().startswith("digit 7, guidance 2")
    assert (explorer.images - first).abs().max() > 1e-4  # another digit, another picture
    explorer.controls["guidance_scale"].value = 0.0  # unconditional: the digit no longer matters
    unconditional = explorer.images
    explorer.controls["digit"].value = 1
    torch.testing.assert_close(explorer.images, unconditional)


def test_p_uncond_is_checked_by_drop_labels_and_the_training_bound_by_the_command_line():
    """drop_labels takes [0, 1]; training a conditional model needs p_uncond < 1 (some labels must be seen),
    which the command line's argparse type enforces (issue 23 removed guidance.check_p_uncond)."""
    labels = torch.arange(10)
    assert (guidance.drop_labels(labels, 1.0) == NULL_LABEL).all()
    assert torch.equal(guidance.drop_labels(labels, 0), labels)
    for bad, error in ((float("nan"), ValueError), (1.5, ValueError), (-0.1, ValueError), ("0.1", TypeError)):
        with pytest.raises(error, match="p_uncond"):
            guidance.drop_labels(labels, bad)
    assert cli.p_uncond_value("0") == 0.0 and cli.p_uncond_value("0.1") == 0.1
    for text in ("1", "1.5", "nan", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.p_uncond_value(text)
    with pytest.raises(argparse.ArgumentTypeError, match=r"must lie in \[0, 1\)"):
        cli.p_uncond_value("1")


def test_the_command_line_caps_the_guidance_scale_the_library_does_not():
    """The cap of 20 is the command line's (its argparse type); the library takes any finite scale >= 0."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"must lie in \[0, 20\]") as caught:
        cli.guidance_value("25")
    assert "25" in str(caught.value)
    assert cli.guidance_value("20") == cli.MAX_GUIDANCE == 20.0
    assert guidance.check_guidance_scale(25.0) == 25.0


def test_labels_are_checked_once_per_sampler_call_not_per_step(monkeypatch):
    """A sampler checks its labels on entry; the guided model it calls at every step checks nothing."""
    calls, real = [], guidance.check_labels
    monkeypatch.setattr(guidance, "check_labels", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, labels = guidance.guided(Recorder(), 2.0), torch.tensor([1, 2])
    for _ in range(3):
        model(torch.zeros(2, 1, 4, 4), torch.rand(2), labels)
    assert calls == []
    recorder = Recorder()
    ddpm.sample_ddim(recorder, ddpm.NoiseScheduler(), torch.zeros(2, 1, 4, 4), labels, num_steps=4, guidance_scale=2.0)
    assert len(recorder.calls) == 4 and len(calls) == 1
