"""The shipped class-conditional flow model (checkpoints/flow_cfg.pt) loads, is small, and draws the asked digit."""

import torch

from course_lib import cli, config, evaluation, flow, guidance

FLOW_PATH = config.CHECKPOINT_DIR / "flow_cfg.pt"
SEVENS = config.pick(50, 20)  # samples of the digit 7
# Measured on the shipped flow_cfg.pt of 15:00 UTC (preset learner, 5,628 CPU steps, recommended guidance 3):
# 20 of 20 sevens in fast mode and 50 of 50 in default mode, for each of the seeds 0-5; the guidance sweep
# (RESULTS.md) reads 99.9 % of 1000 mixed digits right at this setting. An untrained DiT scores 0 (its samples
# are the starting noise, which the judge reads as 8s). The threshold allows one miss in 20 (two in 50),
# so a checkpoint that draws 7s only most of the time fails. Remeasure when the file changes.
MIN_SEVEN_RATE = 0.95


def test_shipped_flow_checkpoint_is_small_and_documented():
    """Guards: the optimiser state shipped (size), a checkpoint without the command that made it or its quality."""
    assert FLOW_PATH.stat().st_size <= 12 * 2**20
    payload = torch.load(FLOW_PATH, weights_only=True)
    assert payload["kind"] == "flow" and "training" not in payload
    assert payload["model_config"]["cross_attention"] and payload["model_config"]["cond_tokens"] >= 2
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train flow")
    assert meta["step"] > 0 and meta["time_sampling"] in flow.TIME_SAMPLINGS and 0 < meta["p_uncond"] < 1
    assert guidance.check_guidance_scale(meta["guidance_scale"]) >= 1.0  # a recommended scale is recorded
    assert meta["quality"]  # measured quality is recorded beside the recipe


def test_shipped_flow_draws_sevens_at_8_nfe():
    """Heun with 4 steps (8 network evaluations) at the recommended guidance: the judge reads 7s.

    Guards: a checkpoint whose weights, time convention or label tokens are broken; sampling with the
    time running the wrong way (t = 0 -> 1) gives noise, which the judge does not read as 7s.
    """
    model, payload = cli.load_model(FLOW_PATH, "flow", torch.device("cpu"))
    labels = torch.full((SEVENS,), 7)
    samples = flow.sample_ode(model, (SEVENS, 1, 32, 32), 4, "heun", labels, payload["metadata"]["guidance_scale"],
                              torch.Generator().manual_seed(0))
    assert evaluation.class_accuracy(samples.clamp(-1, 1), labels) >= MIN_SEVEN_RATE
