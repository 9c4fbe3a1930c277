"""Rectified flow (flow matching on straight paths): training target, conversions, ODE and SDE samplers.

Convention (docs/conventions.md, "Time direction"): ``x_t = t·x1 + (1 - t)·x0`` with ``x0`` the image
and ``x1`` pure noise, so t = 0 is the clean image and t = 1 the noise. The network learns the constant
velocity ``v = dx/dt = x1 - x0`` with ``MSE(v(x_t, t), x1 - x0)``; sampling integrates from t = 1 down to 0.

Papers that run time the other way use ``t_theirs = 1 - t_ours`` and ``v_theirs = -v_ours``:

| source                                                | noise at | data at | velocity points to |
|-------------------------------------------------------|----------|---------|--------------------|
| this book, the notes, SD3, minRF                      | t = 1    | t = 0   | the noise          |
| Liu et al. 2022 (rectified flow: X0 noise, X1 data),  | t = 0    | t = 1   | the data           |
| Lipman et al. 2023, MIT 6.S184, flow_matching library |          |         |                    |

Conversions from a predicted velocity (exact algebra on the path, no approximation)::

    x0_hat = x_t - t·v        noise_hat = x_t + (1 - t)·v        score = -noise_hat / t
"""

from __future__ import annotations

import math

import torch

from . import config, guidance
from .ddpm import last_state

TIME_SAMPLINGS = ("uniform", "logit_normal")
ODE_METHODS = ("euler", "heun", "midpoint", "heun_euler_last")
EVALS_PER_STEP = {"euler": 1, "heun": 2, "midpoint": 2, "heun_euler_last": 2, "sde": 1}
ODE_STEPS = 8  # the ODE samplers' default: 8 Euler steps, 8 network evaluations
SDE_STEPS = 32  # Euler-Maruyama needs more, smaller steps than the ODE for the same quality
SDE_GAMMA = 1.0  # the SDE's default noise level γ in σ(t)² = γ·t


# ---------------------------------------------------------------------------- the path
def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.expand(like.shape[0]).view(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, 1)


def interpolate(images: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """x_t = t·noise + (1 - t)·images, for a float t or a (B,) tensor of times in [0, 1]."""
    if noise.shape != images.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, images have {tuple(images.shape)}")
    t = _per_sample(t, images)
    return t * noise + (1.0 - t) * images


def sample_time(batch_size: int, time_sampling: str = "uniform",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times in (0, 1): uniform, or logit-normal (SD3: sigmoid of N(0, 1), more mass mid-path)."""
    if time_sampling == "uniform":
        return torch.rand(batch_size, generator=generator)
    if time_sampling == "logit_normal":
        return torch.sigmoid(torch.randn(batch_size, generator=generator))
    raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}")


def loss(model, images: torch.Tensor, labels, generator: torch.Generator | None = None,
         time_sampling: str = "uniform", noise: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the predicted velocity and its target ``noise - images``, constant along the path.

    ``noise`` None pairs each image with fresh noise (the independent coupling of flow matching);
    reflow (:mod:`.reflow`) passes the noise the base model's ODE carried to each image.
    """
    t = sample_time(images.shape[0], time_sampling, generator).to(images.device)  # (B,)
    if noise is None:
        noise = torch.randn(images.shape, generator=generator).to(images.device)  # (B, C, H, W)
    x_t = interpolate(images, noise, t)
    return torch.mean((model(x_t, t, labels) - (noise - images)) ** 2)


# ---------------------------------------------------------------------------- conversions
def velocity_to_x0(v: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    return x_t - _per_sample(t, x_t) * v


def velocity_to_noise(v: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    return x_t + (1.0 - _per_sample(t, x_t)) * v


def velocity_to_score(v: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    """∇ log p_t(x_t) = -E[noise | x_t] / t, since x_t given x0 is N((1-t)·x0, t²·I); needs t > 0."""
    t_b = _per_sample(t, x_t)
    if (t <= 0) if isinstance(t, (int, float)) else bool((t_b <= 0).any()):  # a float t: no read from the device
        raise ValueError("the score is undefined at t = 0 (the data distribution has no density there)")
    return -velocity_to_noise(v, x_t, t) / t_b


def gaussian_velocity(mean: float, std: float):
    """The exact velocity field when the data are N(mean, std²) per pixel: a model for tests and notebooks.

    x_t ~ N((1-t)·mean, (1-t)²·std² + t²) and E[x1 - x0 | x_t] is linear in x_t.
    """
    def model(x_t, t, labels=None):
        t = _per_sample(t, x_t)
        variance = (1 - t) ** 2 * std**2 + t**2
        return -mean + (t - (1 - t) * std**2) / variance * (x_t - (1 - t) * mean)

    return model


def mixture_velocity(means, std: float, weights=None):
    """The exact velocity field when the data are a mixture of Gaussians N(means[k], std²·I), k = 1..K.

    Within component k the field is :func:`gaussian_velocity`'s; across components it is their average
    weighted by the posterior P(k | x_t), since x_t given k is N((1-t)·means[k], ((1-t)²·std² + t²)·I).
    ``means`` is (K, D); the model takes x_t of shape (B, D). Two well-separated components make the
    marginal paths bend: the 2-D toy of chapter 07.
    """
    means = torch.as_tensor(means, dtype=torch.float32)
    log_w = torch.log(torch.full((len(means),), 1.0 / len(means)) if weights is None
                      else torch.as_tensor(weights, dtype=torch.float32))

    def model(x_t, t, labels=None):
        t_b = _per_sample(t, x_t)  # (B, 1)
        mu = (1 - t_b)[:, :, None] * means.to(x_t)[None]  # (B, K, D) component means of x_t
        variance = ((1 - t_b) ** 2 * std**2 + t_b**2)[:, :, None]  # (B, 1, 1)
        log_post = log_w.to(x_t) - ((x_t[:, None] - mu) ** 2).sum(-1) / (2 * variance[:, :, 0])  # (B, K)
        post = torch.softmax(log_post, dim=1)[:, :, None]  # (B, K, 1)
        v_k = -means.to(x_t)[None] + (t_b[:, :, None] - (1 - t_b[:, :, None]) * std**2) / variance * (x_t[:, None] - mu)
        return (post * v_k).sum(1)

    return model


# ---------------------------------------------------------------------------- samplers
# Every sampler starts from the caller's noise x_1 (B, C, H, W) at t = 1 and walks an even grid to t = 0.
def ode_steps(model, noise: torch.Tensor, labels=None, *, num_steps: int = ODE_STEPS, method: str = "euler",
              guidance_scale: float | None = None):
    """Integrate dx/dt = v from t = 1 (x = ``noise``) to t = 0; yields ``(t, x_t)`` after each step.

    ``heun_euler_last`` is Heun with the step that ends at t = 0 taken by Euler (the rule of EDM's
    sampler, Karras et al. 2022): Heun's corrector there would call the network at t = 0 on a still
    noisy proposal, an input training never showed it (at t = 0 it saw only clean images).
    """
    if method not in ODE_METHODS:
        raise ValueError(f"method must be one of {ODE_METHODS}, got {method!r}")
    num_steps = config.check_count("num_steps", num_steps)
    velocity, labels = guidance.for_sampling(model, labels, noise, guidance_scale)
    x = noise  # (B, C, H, W)
    times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            h = t - t_next
            v = velocity(x, x.new_tensor(t), labels)
            if method == "euler" or (method == "heun_euler_last" and t_next == 0.0):
                x = x - h * v
            elif method in ("heun", "heun_euler_last"):  # average the slopes at both ends of the Euler step
                v_end = velocity(x - h * v, x.new_tensor(t_next), labels)
                x = x - 0.5 * h * (v + v_end)
            else:  # midpoint: the slope half a step ahead
                x = x - h * velocity(x - 0.5 * h * v, x.new_tensor(t - 0.5 * h), labels)
            yield t_next, x


def sde_steps(model, noise: torch.Tensor, labels=None, *, num_steps: int = SDE_STEPS, gamma: float = SDE_GAMMA,
              guidance_scale: float | None = None, generator: torch.Generator | None = None):
    """Euler-Maruyama for dx = [v - ½σ²·score] dt + σ dW̄ from t = 1 (x = ``noise``) to 0, with σ(t)² = γ·t.

    Every σ ≥ 0 gives an SDE with the ODE's marginals; σ² ∝ t keeps ½σ²·score = -½γ·noise_hat
    bounded as t → 0. The last step adds no noise; the others draw it from ``generator``.
    γ = 0 is exactly the Euler ODE sampler. Yields ``(t, x_t)`` after each step.
    """
    gamma = config.check_number("gamma", gamma)
    num_steps = config.check_count("num_steps", num_steps)
    velocity, labels = guidance.for_sampling(model, labels, noise, guidance_scale)
    x = noise  # (B, C, H, W)
    times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()
    with torch.no_grad():
        for i, (t, t_next) in enumerate(zip(times[:-1], times[1:], strict=True)):
            h = t - t_next
            v = velocity(x, x.new_tensor(t), labels)
            if gamma == 0:
                x = x - h * v  # the Euler ODE step, bit for bit
            else:
                sigma2 = gamma * t
                drift = v - 0.5 * sigma2 * velocity_to_score(v, x, t)
                x = x - h * drift
                if i < num_steps - 1:
                    x = x + math.sqrt(sigma2 * h) * config.randn(x.shape, generator, x.device)
            yield t_next, x


def sample_ode(model, noise: torch.Tensor, labels=None, *, num_steps: int = ODE_STEPS, method: str = "euler",
               guidance_scale: float | None = None) -> torch.Tensor:
    """ODE sampling from ``noise``; returns x_0. Network evaluations per image: ``nfe(method, num_steps)``
    (each a batched pass of two images with guidance, which runs both predictions at once)."""
    return last_state(ode_steps(model, noise, labels, num_steps=num_steps, method=method,
                                guidance_scale=guidance_scale))


def sample_sde(model, noise: torch.Tensor, labels=None, *, num_steps: int = SDE_STEPS, gamma: float = SDE_GAMMA,
               guidance_scale: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler-Maruyama SDE sampling from ``noise``; returns x_0."""
    return last_state(sde_steps(model, noise, labels, num_steps=num_steps, gamma=gamma,
                                guidance_scale=guidance_scale, generator=generator))


def nfe(method: str, num_steps: int) -> int:
    """Network evaluations per image (a guided evaluation, one batched pass of two, counts as one)."""
    return EVALS_PER_STEP[method] * num_steps - (method == "heun_euler_last")  # its last step evaluates once
