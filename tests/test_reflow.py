"""Reflow against closed forms, on a 1-D Gaussian toy where the straight coupling is known.

Data N(m, s²), noise N(0, 1). The exact flow-matching field (:func:`flow.gaussian_velocity`) carries
noise x1 to m + s·x1 (the monotone, optimal coupling) along the curved paths X_t = (1-t)·m + σ_t·x1,
σ_t² = (1-t)²·s² + t², so its straightness is S = ∫ ((1 - s) - σ_t')² dt > 0 and one Euler step sends
every x1 to m (error s²). Reflow on its pairs must find the straight field, S ≈ 0 and one step exact.
"""

import types
from pathlib import Path

import pytest
import torch
from test_mutations import mutate

from course_lib import config, flow, reflow, training

M, S = 1.5, 0.3  # data mean and std: s far from 1 makes the base's paths visibly curved
BASE = flow.gaussian_velocity(M, S)


def closed_form_straightness(s: float = S) -> float:
    t = torch.linspace(0, 1, 200_001, dtype=torch.float64)[1:-1]
    sigma = torch.sqrt((1 - t) ** 2 * s**2 + t**2)
    return torch.trapezoid(((1 - s) - (t - (1 - t) * s**2) / sigma) ** 2, t).item()


def straight_field(x_t, t, labels=None):
    """The 2-rectified field of the toy: the chord's velocity x1 - x0 read off x_t = (t + (1-t)·s)·x1 + (1-t)·m."""
    t = flow._per_sample(t, x_t)
    return (1 - S) * (x_t - (1 - t) * M) / (t + (1 - t) * S) - M


def one_step_error(model, x_1) -> float:
    """Mean squared distance of one Euler step from the exact image m + s·x1 of each noise."""
    x_0 = flow.sample_ode(model, x_1, num_steps=1)
    return torch.mean((x_0 - (M + S * x_1)) ** 2).item()


def noise(n: int = 4000, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- pairs
def test_pairs_follow_the_base_ode_to_the_closed_form_coupling():
    """Guards: noise and images drawn or stored out of step (the coupling broken), or the ODE not started at x1."""
    x_1 = config.randn((1000, 1), torch.Generator().manual_seed(0))
    x_0 = reflow.make_pairs(BASE, x_1, num_steps=64, method="heun", progress=False, batch_size=300)
    assert x_1.shape == x_0.shape == (1000, 1)
    assert torch.allclose(x_0, M + S * x_1, atol=2e-3)


def test_pairs_draw_the_labels_asked_for_in_order():
    """Guards: labels consumed in a different order from the noise (a conditional coupling broken)."""
    def by_label(x_t, t, labels):  # an image of value `label` whatever the noise: x0 = label
        return (x_t - labels.view(-1, 1).float()) / flow._per_sample(t, x_t)  # x1 - x0 on the chord to x0

    labels = torch.arange(7) % 3
    x_0 = reflow.make_pairs(by_label, noise(7), labels, num_steps=4, batch_size=3, progress=False)
    assert torch.allclose(x_0.view(-1), labels.float(), atol=1e-5)
    with pytest.raises(ValueError, match="one label per pair"):
        reflow.make_pairs(by_label, noise(8), labels, progress=False)


def test_the_training_loop_keeps_each_pair_together_when_it_shuffles():
    """The pairs travel as ``(noise, images, labels)``, shuffled together: a batch never separates a pair.

    (Before issue 23 reflow packed noise and image along the channel axis, reflow.pack/unpack; now the loop
    takes any tuple of equally long tensors.)"""
    n = 40
    x_1 = torch.arange(n, dtype=torch.float32).view(n, 1)
    data = (x_1, 2 * x_1 + 1, torch.arange(n) % 10)
    seen = []

    def loss_fn(model, batch, generator):
        batch_noise, images, labels = batch
        assert torch.equal(images, 2 * batch_noise + 1) and torch.equal(labels, batch_noise.view(-1).long() % 10)
        seen.append(batch_noise.view(-1).long())
        return model(batch_noise, torch.zeros(len(batch_noise))).pow(2).mean()

    cfg = training.TrainConfig(epochs=2, batch_size=16, seed=0, warmup_steps=0)
    training.train(reflow.ToyVelocity(dim=1), loss_fn, data, cfg, progress=False)
    epoch = torch.cat(seen[:3])
    assert sorted(epoch.tolist()) == list(range(n)) and not torch.equal(epoch, torch.arange(n))  # all rows, shuffled
    with pytest.raises(ValueError, match="same length"):
        training.train(reflow.ToyVelocity(dim=1), loss_fn, (x_1, x_1[:-1]), cfg, progress=False)


def test_reflow_loss_is_zero_for_the_chord_velocity_and_positive_otherwise():
    """Guards: the target x1 - x0 built from fresh noise instead of the pair's (reflow.loss ignoring the coupling)."""
    x_1 = noise(512)
    x_0 = M + S * x_1
    generator = torch.Generator().manual_seed(0)
    assert reflow.loss(straight_field, x_1, x_0, None, generator).item() < 1e-10
    assert reflow.loss(BASE, x_1, x_0, None, generator).item() > 1e-3


# ---------------------------------------------------------------------------- straightness
def test_straightness_of_the_base_field_matches_the_closed_form_integral():
    """Guards: the chord taken the wrong way (x0 - x1), or the velocity compared to the chord at the wrong point."""
    expected = closed_form_straightness()
    measured = reflow.straightness(BASE, noise(), num_steps=400)
    assert expected == pytest.approx(0.1287, abs=1e-3)  # the curvature the toy is built to have
    assert measured == pytest.approx(expected, rel=0.02)


def test_the_straight_field_has_zero_straightness_and_one_euler_step_is_exact():
    x_1 = noise()
    assert reflow.straightness(straight_field, x_1, num_steps=50) < 1e-8
    assert one_step_error(straight_field, x_1) < 1e-10
    assert one_step_error(BASE, x_1) == pytest.approx(S**2, rel=0.06)  # one step sends every x1 to m


# ---------------------------------------------------------------------------- reflow straightens
def reflowed(module, shuffle: bool = False) -> torch.nn.Module:
    """Draw pairs with ``module.make_pairs`` from the exact base field, train a ToyVelocity on them with the loop."""
    x_1 = config.randn((3000, 1), torch.Generator().manual_seed(0))
    x_0 = module.make_pairs(BASE, x_1, num_steps=32, method="heun", progress=False)
    if shuffle:
        x_0 = x_0[torch.randperm(len(x_0), generator=torch.Generator().manual_seed(1))]
    torch.manual_seed(0)
    cfg = training.TrainConfig(epochs=25, batch_size=256, lr=3e-3, seed=0, lr_schedule="cosine", warmup_steps=20,
                               ema_decay=0.99)
    result = training.train(module.ToyVelocity(dim=1), lambda model, batch, g: module.loss(model, *batch, None, g),
                            (x_1, x_0), cfg, "cpu", progress=False)
    return result.ema


def assert_straightened(model) -> None:
    x_1 = noise()
    base_s, base_error = reflow.straightness(BASE, x_1), one_step_error(BASE, x_1)
    assert reflow.straightness(model, x_1) < 0.2 * base_s, "reflow did not straighten the paths"
    assert one_step_error(model, x_1) < 0.25 * base_error, "one Euler step is not better after reflow"


def test_reflow_straightens_the_paths_and_one_euler_step_lands_near_the_coupling():
    assert_straightened(reflowed(reflow))


def test_shuffled_pairs_are_not_straightened():
    """The control: pairs whose coupling is broken (independent, like flow matching's) teach a curved field again."""
    with pytest.raises(AssertionError, match="did not straighten|not better"):
        assert_straightened(reflowed(reflow, shuffle=True))


def test_the_straightening_test_fails_when_make_pairs_shuffles_its_images():
    """The planted bug of the issue, in the module's own source: images returned in another order than the noise.

    The target is found inside make_pairs (tests/test_mutations.py's mutate), not by its line in the file."""
    source = mutate(Path(reflow.__file__).read_text(), "make_pairs", "return torch.cat(images)",
                    "return torch.cat(images)[torch.randperm(len(noise))]")
    mutant = types.ModuleType("reflow_mutant")
    mutant.__dict__["__package__"] = "course_lib"
    exec(compile(source, "reflow_mutant.py", "exec"), mutant.__dict__)
    with pytest.raises(AssertionError):
        assert_straightened(reflowed(mutant))


# ---------------------------------------------------------------------------- the 2-D toy's exact field
def test_mixture_velocity_with_one_component_is_the_gaussian_field():
    """Guards: a wrong variance or mean in the mixture's per-component field."""
    x_t, t = torch.randn(50, 1), torch.rand(50)
    mixed = flow.mixture_velocity([[M]], S)(x_t, t)
    assert torch.allclose(mixed, BASE(x_t, t), atol=1e-5)


def test_mixture_ode_draws_each_component_with_its_weight_and_spread():
    """Guards: posterior weights wrong or ignored (components drawn 50/50 whatever the weights)."""
    means, std = torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.3
    model = flow.mixture_velocity(means, std, weights=[0.3, 0.7])
    x_0 = flow.sample_ode(model, config.randn((4000, 2), torch.Generator().manual_seed(0)), num_steps=100,
                          method="heun")
    left = x_0[:, 0] < 0
    assert left.float().mean().item() == pytest.approx(0.3, abs=0.025)  # 3 standard errors at N = 4000
    assert x_0[left, 0].mean().item() == pytest.approx(-2.0, abs=0.03)
    assert x_0[~left].std(dim=0).mean().item() == pytest.approx(std, rel=0.1)
