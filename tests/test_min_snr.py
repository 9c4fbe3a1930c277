"""Min-SNR-γ weighting (Hang et al. 2023): the weighted loss is min(SNR, γ) times the x0-error, for ε and v alike."""

import pytest
import torch

from course_lib import ddpm


class FixedOutput(torch.nn.Module):
    """A 'network' whose prediction is a fixed tensor: the loss then has a closed form."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x_t, t, labels=None):
        return self.out


def redraw(scheduler, images, seed):
    """The step and noise that ddpm.loss draws from a generator seeded with ``seed`` (same order)."""
    generator = torch.Generator().manual_seed(seed)
    step = torch.randint(0, scheduler.num_timesteps, (images.shape[0],), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    return step, noise


@pytest.mark.parametrize("prediction", ddpm.PREDICTIONS)
def test_min_snr_loss_is_capped_snr_times_the_x0_error(prediction):
    # guards: the v weight written as min(SNR, γ)/SNR (ε's), a cap at γ missing, weights on the wrong steps
    scheduler = ddpm.NoiseScheduler()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    out = torch.randn(64, 1, 8, 8, generator=g)
    got = ddpm.loss(FixedOutput(out), images, None, scheduler, torch.Generator().manual_seed(7), prediction,
                    weighting="min_snr")
    step, noise = redraw(scheduler, images, 7)
    alpha_bar = scheduler.alpha_bars[step].view(-1, 1, 1, 1)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x_t = a * images + s * noise
    x0_hat = (x_t - s * out) / a if prediction == "eps" else a * x_t - s * out  # the prediction read as x0
    x0_error = ((x0_hat - images) ** 2).flatten(1).mean(1)
    snr = (alpha_bar / (1 - alpha_bar)).flatten()
    expected = torch.mean(snr.clamp(max=ddpm.MIN_SNR_GAMMA) * x0_error)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_min_snr_weights_cap_the_clean_steps_only():
    scheduler = ddpm.NoiseScheduler()
    steps = torch.tensor([0, 100, 500, 999])
    snr = (scheduler.alpha_bars[steps] / (1 - scheduler.alpha_bars[steps])).tolist()
    v = ddpm.min_snr_weight(scheduler, steps, "v").tolist()
    # at step 0 (SNR ≈ 1e4) the v weight is γ/(SNR+1), tiny; at the noisy end (SNR < γ) it is SNR/(SNR+1)
    assert v[0] == pytest.approx(5.0 / (snr[0] + 1), rel=1e-5)
    assert v[3] == pytest.approx(snr[3] / (snr[3] + 1), rel=1e-5)
    assert torch.all(ddpm.min_snr_weight(scheduler, steps, "eps") <= 1.0 + 1e-6)


def test_uniform_weighting_is_the_plain_mse_and_unknown_weightings_are_refused():
    scheduler = ddpm.NoiseScheduler()
    images = torch.zeros(4, 1, 8, 8)
    model = FixedOutput(torch.zeros(4, 1, 8, 8))
    plain = ddpm.loss(model, images, None, scheduler, torch.Generator().manual_seed(3), "eps")
    _, noise = redraw(scheduler, images, 3)
    torch.testing.assert_close(plain, torch.mean(noise**2))
    with pytest.raises(ValueError, match="weighting"):
        ddpm.loss(model, images, None, scheduler, torch.Generator(), "eps", weighting="snr")
