"""DDPM: the noise scheduler of the original notes, the training loss and the samplers.

Convention (docs/conventions.md, "DDPM steps and the schedule"): the integer ``step`` is the DDPM
paper's t minus one. ``step = 0`` is the *first noised* image (``alpha_bars[0]`` = 1 - β₁ = 0.9999),
``step = T - 1`` is almost pure noise, and the clean image x_0 has no step index (ᾱ = 1 there, which
is ``alpha_bars_prev[0]``).
The two functions the notes name keep their names and their argument ``t``: ``noise_image(x0, t)``
is the forward process, ``sample_prev_image_distribution(x_t, t, e)`` one reverse step. There ``t``
is that integer step, one per sample; the network is conditioned on the float time
``(step + 1) / T`` in (0, 1].
"""

from __future__ import annotations

import math

import torch

from . import config, guidance


class NoiseScheduler:
    """Betas, alphas and their cumulative products, plus the forward and reverse steps."""

    def __init__(self, num_timesteps: int = 1000, schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, variance: str = "posterior", device: torch.device | str = "cpu"):
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 2:
            raise ValueError(f"num_timesteps must be an integer >= 2, got {num_timesteps!r}")
        if variance not in ("posterior", "beta"):
            raise ValueError(f"variance must be 'posterior' (beta tilde) or 'beta', got {variance!r}")
        self.num_timesteps = num_timesteps  # T, the length of the forward chain (not a sampler's step count)
        self.schedule = schedule
        self.variance = variance
        self.device = torch.device(device)
        betas = make_betas(schedule, num_timesteps, beta_start, beta_end)  # (T,) float64
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        # beta tilde: the variance of the true posterior q(x_{t-1} | x_t, x_0)
        posterior_variance = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
        # computed in float64, stored in float32 on the device where the images live
        as_f32 = dict(dtype=torch.float32, device=self.device)
        self.betas = betas.to(**as_f32)
        self.alphas = alphas.to(**as_f32)
        self.alpha_bars = alpha_bars.to(**as_f32)
        self.alpha_bars_prev = alpha_bars_prev.to(**as_f32)
        self.posterior_variance = posterior_variance.to(**as_f32)

    # ------------------------------------------------------------------ helpers
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ / (1 - ᾱ) per step, shape (T,)."""
        return self.alpha_bars / (1.0 - self.alpha_bars)

    def check_steps(self, t, batch_size: int) -> torch.Tensor:
        """Turn ``t`` (an int, a 0-d or (B,) integer tensor) into a (B,) long tensor, or raise.

        An int is checked in Python; a tensor's range check reads it back from the device, so the samplers
        pass ints and the training loss, whose steps come from :func:`sample_steps`, skips this.
        """
        if isinstance(t, bool) or not isinstance(t, (int, torch.Tensor)):
            raise TypeError(f"t must be an int or an integer tensor of steps, got {type(t).__name__}")
        if isinstance(t, int):
            if not 0 <= t < self.num_timesteps:
                raise ValueError(f"t must lie in [0, {self.num_timesteps - 1}], got {t}")
            return torch.full((batch_size,), t, device=self.device, dtype=torch.long)
        t = torch.as_tensor(t, device=self.device)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"t must hold integer steps in [0, {self.num_timesteps - 1}], got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.expand(batch_size)
        if t.shape != (batch_size,):
            raise ValueError(f"t must be a scalar or have shape ({batch_size},), got {tuple(t.shape)}")
        if (t < 0).any() or (t >= self.num_timesteps).any():
            raise ValueError(f"t must lie in [0, {self.num_timesteps - 1}], got values from "
                             f"{int(t.min())} to {int(t.max())}")
        return t.long()

    def flow_times(self) -> torch.Tensor:
        """The rectified-flow time of each step, t = b / (a + b) with a = sqrt(ᾱ), b = sqrt(1 - ᾱ), shape (T,).

        x_t = a x0 + b ε divided by (a + b) is (1 - t) x0 + t ε, the flow's path at time t: the same noise
        level, rescaled. It rises from about 0.01 at step 0 to about 0.99 at step T - 1.
        """
        a, b = self.alpha_bars.sqrt(), (1.0 - self.alpha_bars).sqrt()
        return b / (a + b)

    def step_to_time(self, step: torch.Tensor) -> torch.Tensor:
        """Integer step -> float time (step + 1) / T in (0, 1] that the network is conditioned on.

        ``T * time`` is the paper's t = step + 1; time 0 would be the clean image, which no step has.
        """
        return (step.float() + 1.0) / self.num_timesteps

    @staticmethod
    def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values[t].view(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, 1)

    # ------------------------------------------------------------------ forward process
    def noise_image(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, in one shot. Returns ``(x_t, noise)``."""
        t = self.check_steps(t, x0.shape[0])
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        _check_same_shape("noise", noise, "x0", x0)
        alpha_bar = self._per_sample(self.alpha_bars, t, x0)  # (B, 1, 1, 1)
        x_t = alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise  # (B, C, H, W)
        return x_t, noise

    # ------------------------------------------------------------------ reverse process
    def posterior_mean_variance(self, x_t: torch.Tensor, t, pred_noise: torch.Tensor):
        """Mean and variance of p(x_{t-1} | x_t) given the predicted noise ε̂.

        mean = (x_t - β_t / sqrt(1 - ᾱ_t) · ε̂) / sqrt(α_t); variance β̃_t (or β_t), and 0 at
        ``step = 0``, the last reverse step, which lands on the clean image x_0.
        """
        t = self.check_steps(t, x_t.shape[0])
        _check_same_shape("pred_noise", pred_noise, "x_t", x_t)
        beta = self._per_sample(self.betas, t, x_t)
        alpha = self._per_sample(self.alphas, t, x_t)
        alpha_bar = self._per_sample(self.alpha_bars, t, x_t)
        mean = (x_t - beta / (1.0 - alpha_bar).sqrt() * pred_noise) / alpha.sqrt()  # (B, C, H, W)
        table = self.posterior_variance if self.variance == "posterior" else self.betas
        # no noise on the last step (step 0 -> x_0): β̃ is 0 there anyway, β is not
        variance = self._per_sample(table, t, x_t) * (t > 0).view_as(beta)
        return mean, variance

    def sample_prev_image_distribution(self, x_t: torch.Tensor, t, pred_noise: torch.Tensor,
                                       generator: torch.Generator | None = None,
                                       noise: torch.Tensor | None = None) -> torch.Tensor:
        """One reverse step: draw x_{t-1} ~ N(mean, variance) from x_t and the predicted noise."""
        mean, variance = self.posterior_mean_variance(x_t, t, pred_noise)
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        _check_same_shape("noise", noise, "x_t", x_t)
        return mean + variance.sqrt() * noise


def _check_same_shape(name: str, tensor: torch.Tensor, like_name: str, like: torch.Tensor) -> None:
    """Refuse a tensor that would silently broadcast against the images (one noise for many)."""
    if not isinstance(tensor, torch.Tensor) or tensor.shape != like.shape:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name} has shape {shape}, {like_name} has {tuple(like.shape)}: they must match")


SCHEDULES = ("linear", "cosine")


def make_betas(schedule: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_1..β_T in float64 for the ``linear`` (DDPM) or ``cosine`` (Nichol & Dhariwal 2021) schedule."""
    if schedule == "linear":
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if schedule == "cosine":
        offset = 0.008  # keeps β_1 from being vanishingly small
        s = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((s + offset) / (1.0 + offset) * math.pi / 2.0) ** 2
        alpha_bars = f / f[0]
        # clipped as in the paper: ᾱ reaches 0 at the end, which would make β_T = 1
        return (1.0 - alpha_bars[1:] / alpha_bars[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


# ---------------------------------------------------------------------------- predictions
# The network may be trained to predict ε (the notes' choice) or v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x0
# (Salimans & Ho 2022). Both are turned into ε̂ before the reverse step, so the scheduler only
# ever sees predicted noise. With a = sqrt(ᾱ), b = sqrt(1-ᾱ): x_t = a x0 + b ε, a² + b² = 1, and
# ε = a v + b x_t, x0 = a x_t - b v.
PREDICTIONS = ("eps", "v")


def _ab(scheduler: NoiseScheduler, step: torch.Tensor, like: torch.Tensor):
    alpha_bar = scheduler.alpha_bars[step].view(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, 1)
    return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()


def v_to_noise(v: torch.Tensor, x_t: torch.Tensor, step: torch.Tensor, scheduler: NoiseScheduler):
    a, b = _ab(scheduler, step, x_t)
    return a * v + b * x_t


def noise_to_x0(noise: torch.Tensor, x_t: torch.Tensor, step: torch.Tensor, scheduler: NoiseScheduler):
    a, b = _ab(scheduler, step, x_t)
    return (x_t - b * noise) / a


def predict_noise(model, x_t: torch.Tensor, step: torch.Tensor, labels, scheduler: NoiseScheduler,
                  prediction: str = "eps") -> torch.Tensor:
    """Call ``model(x_t, t, labels)`` at integer ``step`` (B,) and return ε̂, whatever it predicts."""
    out = model(x_t, scheduler.step_to_time(step), labels)  # (B, C, H, W)
    if prediction == "eps":
        return out
    if prediction == "v":
        return v_to_noise(out, x_t, step, scheduler)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


STEP_SAMPLINGS = ("uniform", "logit_normal")


def sample_steps(scheduler: NoiseScheduler, batch_size: int, step_sampling: str = "uniform",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Training steps, (B,) long: uniform over the T steps (the notes' choice), or ``logit_normal``.

    ``logit_normal`` draws the flow model's training time u = sigmoid(N(0, 1)) (SD3, notebook 04) and takes
    the first step whose flow time b / (a + b) reaches u (:meth:`NoiseScheduler.flow_times`): the DDPM then
    trains on the noise levels the flow model trains on, most of them near a = b, instead of spending most
    steps where the linear schedule has already drowned the image.
    """
    if step_sampling == "uniform":
        return torch.randint(0, scheduler.num_timesteps, (batch_size,), generator=generator)
    if step_sampling == "logit_normal":
        u = torch.sigmoid(torch.randn(batch_size, generator=generator))  # (B,) flow times in (0, 1)
        table = scheduler.flow_times().cpu()  # (T,) increasing
        return torch.searchsorted(table, u).clamp(max=scheduler.num_timesteps - 1)
    raise ValueError(f"step_sampling must be one of {STEP_SAMPLINGS}, got {step_sampling!r}")


LOSS_WEIGHTINGS = ("uniform", "min_snr")
MIN_SNR_GAMMA = 5.0  # Hang et al. 2023's recommended γ


def min_snr_weight(scheduler: NoiseScheduler, step: torch.Tensor, prediction: str,
                   gamma: float = MIN_SNR_GAMMA) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023, arXiv:2303.09556), (B,).

    With SNR = ᾱ/(1-ᾱ), weighting the x0-error by min(SNR, γ) caps the pull of the nearly clean steps,
    whose tiny errors otherwise dominate the gradient and slow the rest. The same weight on the ε- or
    v-error is min(SNR, γ)/SNR or min(SNR, γ)/(SNR + 1), because |ε-error|² = SNR·|x0-error|² and
    |v-error|² = (SNR + 1)·|x0-error|².
    """
    alpha_bar = scheduler.alpha_bars[step]
    snr = alpha_bar / (1.0 - alpha_bar)
    capped = snr.clamp(max=gamma)
    if prediction == "eps":
        return capped / snr
    if prediction == "v":
        return capped / (snr + 1.0)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def loss(model, images: torch.Tensor, labels, scheduler: NoiseScheduler, generator: torch.Generator,
         prediction: str = "eps", weighting: str = "uniform", step_sampling: str = "uniform") -> torch.Tensor:
    """MSE between the network output and its target at a step per image drawn by :func:`sample_steps`.

    ``weighting="min_snr"`` multiplies each image's squared error by :func:`min_snr_weight`.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")
    b = images.shape[0]
    step = sample_steps(scheduler, b, step_sampling, generator).to(images.device)  # (B,)
    noise = torch.randn(images.shape, generator=generator).to(images.device)  # (B, C, H, W)
    a, s = _ab(scheduler, step, images)  # (B, 1, 1, 1) each
    x_t = a * images + s * noise  # noise_image's x_t, without re-checking steps that sample_steps drew
    out = model(x_t, scheduler.step_to_time(step), labels)
    if prediction == "eps":
        target = noise
    elif prediction == "v":
        target = a * noise - s * images
    else:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if weighting == "uniform":
        return torch.mean((out - target) ** 2)
    per_image = ((out - target) ** 2).flatten(1).mean(1)  # (B,)
    return torch.mean(min_snr_weight(scheduler, step, prediction) * per_image)


# ---------------------------------------------------------------------------- samplers
# Every sampler starts from the caller's noise x_T (B, C, H, W) and returns (or yields) tensors of its shape.
DDIM_STEPS = 50  # DDIM's default step count, and the command line's


def last_state(steps):
    """Run a step generator (``ddpm_steps``, ``ode_steps``, ...) to its end and return the final state."""
    final = None
    for _, state in steps:
        final = state
    return final


def ddpm_steps(model, scheduler: NoiseScheduler, noise: torch.Tensor, labels=None, *, prediction: str = "eps",
               guidance_scale: float | None = None, generator: torch.Generator | None = None):
    """Ancestral sampling over all T steps from x_T = ``noise``; yields ``(step, x_{step-1})`` after each step.

    Each step draws fresh noise from ``generator``. With ``guidance_scale`` (and ``labels``) the network's
    output is classifier-free guided (:func:`course_lib.guidance.guided`).
    """
    model, labels = guidance.for_sampling(model, labels, noise, guidance_scale)
    x = noise  # (B, C, H, W)
    for step in reversed(range(scheduler.num_timesteps)):
        with torch.no_grad():
            pred_noise = predict_noise(model, x, torch.full((len(x),), step, device=x.device), labels, scheduler,
                                       prediction)
        x = scheduler.sample_prev_image_distribution(x, step, pred_noise,
                                                     noise=config.randn(x.shape, generator, x.device))
        yield step, x


def ddim_steps(model, scheduler: NoiseScheduler, noise: torch.Tensor, labels=None, *, num_steps: int = DDIM_STEPS,
               prediction: str = "eps", guidance_scale: float | None = None):
    """Deterministic DDIM (η = 0) from x_T = ``noise`` over ``num_steps`` evenly spaced steps; yields ``(step, x)``.

    ``num_steps`` is at most the scheduler's T: DDIM visits a subset of its steps.
    """
    num_steps = config.check_count("num_steps", num_steps, scheduler.num_timesteps)
    model, labels = guidance.for_sampling(model, labels, noise, guidance_scale)
    x = noise  # (B, C, H, W)
    visited = torch.linspace(scheduler.num_timesteps - 1, 0, num_steps).round().long().tolist()
    for i, step in enumerate(visited):
        steps = torch.full((len(x),), step, device=x.device, dtype=torch.long)  # (B,)
        with torch.no_grad():
            pred_noise = predict_noise(model, x, steps, labels, scheduler, prediction)
        x0_hat = noise_to_x0(pred_noise, x, steps, scheduler)
        # the last update lands on ᾱ = 1: the clean estimate itself
        alpha_bar_prev = scheduler.alpha_bars[visited[i + 1]] if i + 1 < num_steps else x.new_tensor(1.0)
        x = alpha_bar_prev.sqrt() * x0_hat + (1.0 - alpha_bar_prev).sqrt() * pred_noise
        yield step, x


def sample(model, scheduler: NoiseScheduler, noise: torch.Tensor, labels=None, *, prediction: str = "eps",
           guidance_scale: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """All-T-step ancestral DDPM sampling from x_T = ``noise``; returns x_0, shaped like ``noise``."""
    return last_state(ddpm_steps(model, scheduler, noise, labels, prediction=prediction,
                                 guidance_scale=guidance_scale, generator=generator))


def sample_ddim(model, scheduler: NoiseScheduler, noise: torch.Tensor, labels=None, *, num_steps: int = DDIM_STEPS,
                prediction: str = "eps", guidance_scale: float | None = None) -> torch.Tensor:
    """DDIM (η = 0) from x_T = ``noise`` with ``num_steps`` network evaluations; returns x_0.

    Samples are not clipped to [-1, 1]: the Gaussian tests need the exact result; clamp to display.
    """
    return last_state(ddim_steps(model, scheduler, noise, labels, num_steps=num_steps, prediction=prediction,
                                 guidance_scale=guidance_scale))


# ---------------------------------------------------------------------------- an exact model for checks
def gaussian_noise_model(scheduler: NoiseScheduler, mean: float, std: float):
    """E[ε | x_t] for data whose every pixel is N(mean, std²), as a ``model(x_t, t, labels)``.

    With a = sqrt(ᾱ), b = sqrt(1-ᾱ): x_t = a x0 + b ε is Gaussian, Cov(ε, x_t) = b and
    Var(x_t) = a² std² + b², so the regression of ε on x_t is b (x_t - a mean) / (a² std² + b²).
    It is what a perfect ε-network trained on that data returns; samplers driven by it can be
    compared with the forward process's closed-form marginals N(a mean, a² std² + b²).
    """

    def model(x_t: torch.Tensor, t: torch.Tensor, labels=None) -> torch.Tensor:
        step = (t * scheduler.num_timesteps).round().long() - 1  # undo step_to_time: t = (step + 1) / T
        a, b = _ab(scheduler, step, x_t)
        return b * (x_t - a * mean) / (a**2 * std**2 + b**2)

    return model
