"""The judge and its metrics behave as a measuring instrument should."""

import pytest
import torch
import torch.nn.functional as F

from course_lib import data, evaluation


@pytest.fixture(scope="module")
def test_split():
    return data.load_mnist(train=False, limit=10_000)


@pytest.fixture(scope="module")
def train_split():
    return data.load_mnist(train=True, limit=60_000)


def test_shipped_judge_reaches_99_percent(test_split):
    images, labels = test_split
    payload = torch.load(evaluation.JUDGE_PATH, weights_only=True)
    assert payload["kind"] == "judge" and payload["metadata"]["test_accuracy"] >= 0.99
    accuracy = evaluation.class_accuracy(images, labels)
    assert accuracy >= 0.99
    assert accuracy == pytest.approx(payload["metadata"]["test_accuracy"], abs=1e-4)


def test_shuffled_labels_score_chance(test_split):
    images, labels = test_split
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert evaluation.class_accuracy(images, shuffled) == pytest.approx(0.10, abs=0.02)


def test_real_distance_is_small_and_shrinks_with_n():
    floors = [evaluation.real_floor(n) for n in (200, 1000, 5000)]
    assert floors[0] > floors[1] > floors[2]
    assert floors[2] < 0.2 * floors[0]


def test_distance_rises_with_noise_and_blur(train_split):
    images = train_split[0][:2000]
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape, generator=gen)
    noisy = [evaluation.frechet_distance((images + s * noise).clamp(-1, 1)) for s in (0.0, 0.2, 0.4, 0.8)]
    assert noisy == sorted(noisy) and noisy[-1] > 5 * noisy[0]
    kernel = torch.ones(1, 1, 3, 3) / 9
    blurred, distances = images, [noisy[0]]
    for _ in range(3):
        blurred = F.conv2d(F.pad(blurred, (1, 1, 1, 1), value=-1), kernel)
        distances.append(evaluation.frechet_distance(blurred))
    assert distances == sorted(distances) and distances[-1] > 3 * distances[0]


def test_dropping_half_the_classes_raises_the_distance_sharply(train_split):
    images, labels = train_split
    full = evaluation.frechet_distance(images[:2000])
    half = evaluation.frechet_distance(images[labels < 5][:2000])
    assert half > 5 * full


def test_histogram_and_confidence_of_real_digits(test_split):
    images, labels = test_split
    hist = evaluation.class_histogram(images[:2000])
    torch.testing.assert_close(hist.sum(), torch.tensor(1.0))
    true = torch.bincount(labels[:2000], minlength=10).float() / 2000
    torch.testing.assert_close(hist, true, atol=0.01, rtol=0)
    assert evaluation.mean_confidence(images[:500]) > 0.95
    blank = -torch.ones(100, 1, 32, 32) + 0.05 * torch.randn(100, 1, 32, 32)
    assert evaluation.mean_confidence(blank.clamp(-1, 1)) < evaluation.mean_confidence(images[:100])


def test_nearest_train_distance_finds_copies(train_split):
    train_images = train_split[0]
    copies = train_images[:5]
    assert evaluation.nearest_train_distance(copies, train_images).max() == pytest.approx(0.0, abs=0.05)
    novel = torch.flip(train_images[:5], dims=[-1])
    assert evaluation.nearest_train_distance(novel, train_images).min() > 1.0


@pytest.mark.parametrize("bad", [
    torch.zeros(4, 32, 32), torch.zeros(4, 3, 32, 32), torch.zeros(0, 1, 32, 32),
    torch.full((4, 1, 32, 32), 255.0), torch.full((4, 1, 32, 32), float("nan")),
])
def test_bad_inputs_raise_a_clear_error(bad):
    with pytest.raises(ValueError, match="expected|NaN|must be in"):
        evaluation.frechet_distance(bad)
    with pytest.raises(ValueError):
        evaluation.class_accuracy(bad, torch.zeros(len(bad), dtype=torch.long))


def test_other_sizes_are_resized(test_split):
    images, labels = test_split
    small = F.interpolate(images[:500], size=(28, 28), mode="bilinear", align_corners=False)
    assert evaluation.class_accuracy(small, labels[:500]) > 0.95
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluation.class_accuracy(images[:10], labels[:9])


def test_frechet_formula_on_gaussians_with_known_answer():
    """For N(m1, C1) and N(m2, C2) with commuting diagonal covariances the distance is closed form."""
    mu1, mu2 = torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    c1, c2 = torch.diag(torch.tensor([1.0, 4.0, 9.0])).double(), torch.diag(torch.tensor([4.0, 1.0, 9.0])).double()
    expected = 1 + 4 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2) + 0
    assert evaluation.frechet_from_statistics(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    rotated = evaluation.frechet_from_statistics(rotation @ mu1, rotation @ c1 @ rotation.T,
                                                 rotation @ mu2, rotation @ c2 @ rotation.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_zero_one_images_are_refused_and_sampler_overshoot_is_accepted(test_split):
    """[0, 1] images fit inside [-1, 1] but have no black (-1) background, so the judge would misread
    them. Samples overshoot [-1, 1] (guided ones measured up to 3.3) and pass."""
    images, labels = test_split
    zero_one = (images[:200] + 1) / 2
    for fn in (lambda x: evaluation.class_accuracy(x, labels[:200]), evaluation.frechet_distance,
               evaluation.mean_confidence, evaluation.class_histogram):
        with pytest.raises(ValueError, match=r"must be in \[-1, 1\].*\[0, 1\] images with x \* 2 - 1"):
            fn(zero_one)
    assert evaluation.class_accuracy(zero_one * 2 - 1, labels[:200]) >= 0.99  # the suggested fix works
    overshoot = images[:200] * 1.25  # as far out as the unconditional DDPM's samples went, on both sides
    assert evaluation.class_accuracy(overshoot, labels[:200]) >= 0.99
    guided = images[:200].clone()
    guided[guided > 0.5] = 3.3  # strokes as bright as guidance 10 made them
    assert evaluation.class_accuracy(guided, labels[:200]) >= 0.99
    with pytest.raises(ValueError, match="x / 127.5 - 1"):
        evaluation.class_accuracy((images[:200] + 1) * 127.5, labels[:200])  # [0, 255] images
    for edge in (-1 - evaluation.RANGE_SLACK - 0.01, 1 + evaluation.RANGE_SLACK + 0.01):
        bad = images[:4].clone()
        bad[0, 0, 0, 0] = edge
        with pytest.raises(ValueError, match="must be in"):
            evaluation.mean_confidence(bad)


@pytest.mark.parametrize("accuracy, n, z", [(0.5, 100, 1.0), (0.9, 200, 1.0), (0.995, 1000, 2.0), (0.3, 7, 1.5)])
def test_wilson_interval_ends_lie_z_standard_errors_from_the_observed_share(accuracy, n, z):
    # the defining closed form: at each end p, |accuracy - p| = z sqrt(p (1 - p) / n); guards against the
    # textbook interval (standard error taken at the observed share) and a dropped z²/(4n²) term
    low, high = evaluation.wilson_interval(accuracy, n, z)
    assert low < accuracy < high
    for p in (low, high):
        assert abs(accuracy - p) == pytest.approx(z * (p * (1 - p) / n) ** 0.5, rel=1e-9)


def test_wilson_interval_keeps_a_width_at_0_and_100_percent():
    # 200 of 200 right: the true share could still be 200/201 (z = 1), not only 100 %
    assert evaluation.wilson_interval(1.0, 200) == pytest.approx((200 / 201, 1.0), abs=1e-12)
    assert evaluation.wilson_interval(0.0, 200, z=2.0) == pytest.approx((0.0, 4 / 204), abs=1e-12)
    for n in range(1, 300):  # the ends never cross the observed share, not even by rounding
        assert evaluation.wilson_interval(1.0, n)[1] == 1.0 and evaluation.wilson_interval(0.0, n)[0] == 0.0
    low, high = evaluation.wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.5 - 0.002525 ** 0.5 / 1.01, 0.5 + 0.002525 ** 0.5 / 1.01), abs=1e-12)


@pytest.mark.parametrize("accuracy, n", [(1.5, 10), (-0.1, 10), (0.5, 0)])
def test_wilson_interval_refuses_a_share_outside_0_1_or_no_trials(accuracy, n):
    with pytest.raises(ValueError, match="share in"):
        evaluation.wilson_interval(accuracy, n)


# ---------------------------------------------------------------------------- the Fréchet error bar
def _gaussian_features(n, generator, dim=8, shift=0.5):
    """Gaussian stand-ins for judge features: a shifted, correlated cloud (the 'samples')."""
    mixing = torch.eye(dim, dtype=torch.float64) + 0.3 * torch.ones(dim, dim, dtype=torch.float64) / dim
    return shift + torch.randn(n, dim, generator=generator, dtype=torch.float64) @ mixing


def test_bootstrap_error_matches_the_spread_over_independent_samples():
    # the bar must say how much the distance would move if the N samples were drawn again. Guards against
    # resampling without replacement (a permutation has the very same mean and covariance: error 0) and
    # against reporting the error of the bootstrap mean (the spread divided by sqrt(resamples))
    gen = torch.Generator().manual_seed(0)
    ref_mean, ref_cov = torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64)
    redraws = [evaluation.frechet_from_statistics(*evaluation.feature_statistics(_gaussian_features(200, gen)),
                                                  ref_mean, ref_cov) for _ in range(400)]
    spread = torch.tensor(redraws).std().item()
    for seed in range(5):
        features = _gaussian_features(200, gen)
        value, error = evaluation.frechet_bootstrap(features, ref_mean, ref_cov, resamples=100, seed=seed)
        assert value == pytest.approx(evaluation.frechet_from_statistics(
            *evaluation.feature_statistics(features), ref_mean, ref_cov), rel=1e-12)
        assert 0.6 * spread < error < 1.6 * spread, (error, spread)


def test_frechet_with_error_on_judge_features_at_n_200(train_split):
    # the regime of the notebooks: N = 200 images about four times the floor away (noisy real digits);
    # the bootstrap bar against the spread over 20 independent draws of 200 from the same pool
    images = train_split[0][:3000]
    noisy = (images + 0.15 * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    features = evaluation.judge_features(noisy)
    mean, cov = evaluation.reference_statistics()
    gen = torch.Generator().manual_seed(3)
    draws = [torch.randperm(len(noisy), generator=gen)[:200] for _ in range(20)]
    spread = torch.tensor([evaluation.frechet_from_statistics(*evaluation.feature_statistics(features[d]), mean, cov)
                           for d in draws]).std().item()
    value, error = evaluation.frechet_with_error(noisy[draws[0]])
    assert value == pytest.approx(evaluation.frechet_distance(noisy[draws[0]]), rel=1e-9)
    assert 0.7 * spread < error < 2.0 * spread, (error, spread)    # measured: see the docstring


def test_frechet_bootstrap_refuses_too_few_resamples():
    with pytest.raises(ValueError, match="at least 2 resamples"):
        evaluation.frechet_bootstrap(torch.randn(10, 3), torch.zeros(3), torch.eye(3), resamples=1)
