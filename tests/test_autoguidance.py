"""Autoguidance (Karras et al. 2024): an unconditional model pushed away from a weaker version of itself.

The closed form: if the strong model is the exact ε of N(m, s²) data and the weak one the exact ε of
the wider N(m, S²), then at every step, with σ² = a²·var + b² the variance of x_t,

    ε_weak + w (ε_strong - ε_weak) = b (x_t - a m) · (w / σ_s² - (w - 1) / σ_S²),

the exact ε of a Gaussian x_t whose precision is w times the strong one's minus (w - 1) times the weak
one's: narrower than the strong model's for w > 1, the sharpening autoguidance is for.
"""

import pytest
import torch

from course_lib import checkpoint, config, ddpm, dit, guidance
from course_lib.cli import sampling

MEAN, STRONG_STD, WEAK_STD = 0.2, 0.3, 0.6


@pytest.mark.parametrize("w", [0.0, 1.0, 1.5, 2.0, 3.0])
def test_the_guided_eps_is_the_exact_eps_of_the_sharpened_gaussian(w):
    """Guards: weak and strong swapped, or the scale applied to the weak model (a sign or role error)."""
    scheduler = ddpm.NoiseScheduler(num_timesteps=100)
    strong = ddpm.gaussian_noise_model(scheduler, MEAN, STRONG_STD)
    weak = ddpm.gaussian_noise_model(scheduler, MEAN, WEAK_STD)
    step = torch.tensor([0, 10, 40, 99])
    x_t = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    a = scheduler.alpha_bars[step].sqrt().view(-1, 1, 1, 1)
    b = (1 - scheduler.alpha_bars[step]).sqrt().view(-1, 1, 1, 1)
    precision = w / (a**2 * STRONG_STD**2 + b**2) - (w - 1) / (a**2 * WEAK_STD**2 + b**2)
    expected = b * (x_t - a * MEAN) * precision
    got = guidance.autoguided(strong, weak, w)(x_t, scheduler.step_to_time(step))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_scale_is_checked_once_where_it_enters():
    with pytest.raises(ValueError, match="guidance_scale"):
        guidance.autoguided(lambda x, t, y: x, lambda x, t, y: x, -1.0)


def tiny_payload(seed: int) -> dict:
    torch.manual_seed(seed)
    model = dit.DiT(dit.preset("tiny", img_size=8, patch_size=4))
    with torch.no_grad():  # adaLN-Zero starts every DiT at output 0: move off it so two models differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {"format": checkpoint.CHECKPOINT_FORMAT, "kind": "ddpm", "model_config": model.cfg.to_dict(),
            "state_dict": model.state_dict(),
            "metadata": {"prediction": "v", "schedule": "linear", "num_timesteps": 50}}


def draw(payload, **kwargs):
    model = checkpoint.load_weights(dit.DiT(dit.DiTConfig(**payload["model_config"])), payload["state_dict"]).eval()
    sample = sampling.make_sampler(model, payload, **kwargs)
    return sample, sample((3, 1, 8, 8), None, torch.Generator().manual_seed(1))


def test_make_sampler_autoguides_with_the_guide_the_checkpoint_carries():
    """Guards: the guide ignored, scale 1 not the model alone, or the recommended settings not applied."""
    alone = tiny_payload(0)
    guided = checkpoint.with_guide(alone, tiny_payload(1), guidance_scale=2.0, sampler="ddim", steps=4)
    _, plain = draw(alone, sampler="ddim", steps=4)
    sample, images = draw(guided)  # the checkpoint's own recommendation: DDIM 4 at w = 2
    assert (sample.name, sample.steps, sample.guidance_scale) == ("ddim", 4, 2.0)
    assert sample.describe() == "ddim, 4 steps, autoguidance 2"
    assert not torch.allclose(images, plain)
    _, at_one = draw(guided, guidance_scale=1.0)
    assert torch.equal(at_one, plain)  # w = 1: the main model alone, bit for bit
    # the same images the library's own pieces draw
    model = checkpoint.load_weights(dit.DiT(dit.DiTConfig(**alone["model_config"])), alone["state_dict"]).eval()
    guide = checkpoint.load_guide(guided)
    direct = ddpm.sample_ddim(guidance.autoguided(model, guide, 2.0), ddpm.NoiseScheduler(num_timesteps=50),
                              config.randn((3, 1, 8, 8), torch.Generator().manual_seed(1)), num_steps=4,
                              prediction="v")
    torch.testing.assert_close(images, direct)


def test_a_guide_of_the_model_itself_changes_nothing():
    payload = tiny_payload(0)
    same = checkpoint.with_guide(payload, payload, guidance_scale=3.0, sampler="ddim", steps=3)
    _, plain = draw(payload, sampler="ddim", steps=3)
    _, guided = draw(same)
    torch.testing.assert_close(guided, plain)


def test_a_scale_without_a_guide_is_refused_and_one_is_accepted():
    payload = tiny_payload(0)
    with pytest.raises(ValueError, match="carries no guide"):
        draw(payload, guidance_scale=1.5)
    sample, _ = draw(payload, guidance_scale=1.0, steps=2)
    assert sample.guidance_scale is None


def test_a_broken_guide_is_a_checkpoint_error():
    payload = checkpoint.with_guide(tiny_payload(0), tiny_payload(1), guidance_scale=2.0)
    payload["guide"]["state_dict"] = {}
    with pytest.raises(checkpoint.CheckpointError, match="its guide"):
        checkpoint.load_guide(payload)


def test_infer_uses_the_recommended_autoguidance_and_one_means_the_model_alone(tmp_path, capsys):
    """Guards: infer ignoring the guide it carries, or refusing --guidance_scale 1 on an unconditional model."""
    from cli_helpers import run

    path = tmp_path / "guided.pt"
    torch.save(checkpoint.with_guide(tiny_payload(0), tiny_payload(1), guidance_scale=2.0, sampler="ddim", steps=3),
               path)
    outputs = {}
    for extra in ([], ["--guidance_scale", "1"]):
        out = tmp_path / f"grid{len(extra)}.png"
        assert run("infer", "ddpm", "--ckpt", path, "--output", out, "--num_images", "4", "--device", "cpu",
                   *extra) == 0
        outputs[len(extra)] = capsys.readouterr().out
    assert "(ddim, 3 steps, autoguidance 2)" in outputs[0]
    assert "(ddim, 3 steps)" in outputs[2]
