"""The checkpoints in checkpoints/ load safely, are small, and their samples are digits."""

import pytest
import torch

from course_lib import checkpoint, config, ddpm, evaluation
from course_lib.cli import sampling

DDPM_PATH = config.CHECKPOINT_DIR / "ddpm_uncond.pt"
# Measured on the shipped model with this test's seed (16 samples; 20 DDIM steps in fast mode, 50 otherwise):
# the model alone (w = 1) mean confidence 0.918 with 50 steps and 0.953 with 20, Fréchet distance at N = 16 of
# 780 and 810, 7 distinct digits; with its recommended autoguidance (w = 2) 0.946 and 0.934, 866 and 853,
# 8 digits (16 real test digits: 789; an untrained DiT: 30,861).
# Confidence alone cannot fail a broken model: the judge reads noise as an 8 with confidence 1.0 (an
# untrained DiT scores 1.0), so the distance and the digit count guard it too.
MIN_DDPM_CONFIDENCE = 0.8
MAX_DDPM_FRECHET_16 = 1500.0
MIN_DISTINCT_DIGITS = 5


def test_shipped_ddpm_checkpoint_is_small_and_documented():
    assert DDPM_PATH.stat().st_size <= 12 * 2**20  # the model and its guide together
    payload = torch.load(DDPM_PATH, weights_only=True)
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train ddpm")
    assert meta["seed"] == 0 and meta["step"] > 0 and meta["prediction"] in ddpm.PREDICTIONS
    assert "quality" in meta and "training" not in payload
    # autoguidance: the guide travels in the file, with the scale, sampler and steps infer uses by default
    assert meta["guide"]["recipe"].startswith("python -m course_lib train ddpm")
    assert meta["guidance_scale"] > 1 and meta["sampler"] == "ddim" and meta["steps"] > 0
    assert checkpoint.load_guide(payload) is not None


def shipped_samples(guidance_scale):
    model, payload = checkpoint.load_model(DDPM_PATH, "ddpm")
    sample = sampling.make_sampler(model, payload, "ddim", config.pick(50, 20), guidance_scale=guidance_scale)
    return sample((16, 1, 32, 32), None, torch.Generator().manual_seed(0)).clamp(-1, 1)


@pytest.mark.parametrize("guidance_scale", [1.0, None], ids=["model_alone", "recommended_autoguidance"])
def test_shipped_ddpm_samples_are_confident_digits(guidance_scale):
    samples = shipped_samples(guidance_scale)
    assert evaluation.mean_confidence(samples) > MIN_DDPM_CONFIDENCE
    assert evaluation.frechet_distance(samples) < MAX_DDPM_FRECHET_16
    assert (evaluation.class_histogram(samples) > 0).sum() >= MIN_DISTINCT_DIGITS


def test_judge_checkpoint_is_small():
    assert evaluation.JUDGE_PATH.stat().st_size <= 2 * 2**20
