"""The shipped class-conditional DDPM (checkpoints/ddpm_cfg.pt) loads, is small, and draws the asked digit."""

import torch

from course_lib import cli, config, ddpm, evaluation, guidance

CFG_PATH = config.CHECKPOINT_DIR / "ddpm_cfg.pt"
# Measured on the shipped file of 26 Nov 15:00 UTC (preset learner, 5,628 CPU steps, recommended guidance 2):
# the judge read 20 of 20 fours as 4 for each of the seeds 0-5, with DDIM 20 (fast mode) and with DDIM 50; the
# guidance sweep (RESULTS.md) reads 99.5 % of 1000 mixed digits right at this setting. A model that ignored the
# label would score about 10 %. The threshold allows one miss in 20, so a model that draws 4s only most of
# the time fails. Remeasure when the file changes.
MIN_FOUR_RATE = 0.95


def test_shipped_cfg_checkpoint_is_small_and_documented():
    assert CFG_PATH.stat().st_size <= 12 * 2**20
    payload = torch.load(CFG_PATH, weights_only=True)
    assert payload["kind"] == "cfg" and "training" not in payload
    assert payload["model_config"]["cross_attention"] and payload["model_config"]["cond_tokens"] >= 2
    meta = payload["metadata"]
    assert meta["recipe"].startswith("python -m course_lib train cfg")
    assert meta["step"] > 0 and meta["prediction"] in ddpm.PREDICTIONS and 0 < meta["p_uncond"] < 1
    assert guidance.check_guidance_scale(meta["guidance_scale"]) >= 1.0  # a recommended scale is recorded
    assert meta["quality"]  # measured quality is recorded beside the recipe


def test_shipped_cfg_draws_fours_when_asked():
    model, payload = cli.load_model(CFG_PATH, "cfg", torch.device("cpu"))
    meta = payload["metadata"]
    scheduler = ddpm.NoiseScheduler(num_steps=meta["num_steps"], schedule=meta["schedule"])
    labels = torch.full((20,), 4)
    samples = ddpm.sample_ddim(model, scheduler, (20, 1, 32, 32), config.pick(50, 20), labels=labels,
                               guidance_scale=meta["guidance_scale"], generator=torch.Generator().manual_seed(0),
                               prediction=meta["prediction"])
    assert evaluation.class_accuracy(samples.clamp(-1, 1), labels) >= MIN_FOUR_RATE
