"""A small Diffusion Transformer (DiT, Peebles & Xie 2023, arXiv:2212.09748) for MNIST.

image (B, C, H, W) --patchify--> tokens (B, N, D) --blocks--> (B, N, p*p*C) --unpatchify--> (B, C, H, W)

Each block: adaLN-Zero self-attention and MLP, conditioned on the timestep (and, with
``cross_attention=True``, a cross-attention sub-block that reads condition tokens for the label).
The same network serves DDPM (it predicts ε or v), CFG and flow matching (it predicts velocity):
the caller decides what the output means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import NULL_LABEL, NUM_CLASSES


@dataclass(frozen=True)
class DiTConfig:
    img_size: int = 32
    channels: int = 1
    patch_size: int = 4
    dim: int = 128
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    cross_attention: bool = False
    cond_tokens: int = 4  # condition tokens per label; >= 2 so attention has something to choose
    skip: bool = False  # U-ViT long skips: block i feeds block depth-1-i (Bao et al. 2023)
    conv_head: bool = False  # a 3x3 convolution after unpatchify, so patch borders can blend

    def __post_init__(self):
        for name in ("img_size", "channels", "patch_size", "dim", "depth", "heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DiTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of even size")
        if self.cross_attention and self.cond_tokens < 2:
            raise ValueError("cross-attention needs at least 2 condition tokens (one key makes softmax 1)")
        if self.skip and self.depth % 2:
            raise ValueError(f"long skips pair blocks, so depth must be even, got {self.depth}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": DiTConfig(dim=64, depth=2, heads=4),  # fast mode and tests
    "small": DiTConfig(dim=128, depth=4, heads=4),  # the first shipped DDPM: ~0.6 s per batch-128 step on 2 cores
    # the recipe search's candidate (benchmarks/RESULTS.md): long skips and a conv head over `small`
    "book": DiTConfig(dim=128, depth=6, heads=4, skip=True, conv_head=True),
    # the learner-budget recipe (notebook 04): `book`'s skips and head at half the width, ~8x faster on a CPU;
    # the shipped CFG and flow checkpoints use it because CPU hours buy more with it
    "learner": DiTConfig(dim=64, depth=4, heads=4, skip=True, conv_head=True),
}
CONV_HEAD_CHANNELS = 16  # features per pixel that the head's 3x3 convolution mixes


def preset(name: str, **overrides) -> DiTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# ---------------------------------------------------------------------------- patches
def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C) with N = (H/p)(W/p), patches in row-major order."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)  # (B, N, p*p*C)


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(B, N, p*p*C) -> (B, C, H, W); the inverse of :func:`patchify` for square images."""
    b, n, _ = tokens.shape
    p, side = patch_size, math.isqrt(n)
    x = tokens.reshape(b, side, side, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, channels, side * p, side * p)  # (B, C, H, W)


# ---------------------------------------------------------------------------- embeddings
def sincos_2d_positions(dim: int, side: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, (side*side, dim): half the channels per axis."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")  # (side, side)
    per_axis = dim // 2
    freqs = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / (per_axis // 2))

    def embed(coords):
        angles = coords.flatten().double()[:, None] * freqs[None]  # (N, per_axis/2)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (N, per_axis)

    return torch.cat([embed(ys), embed(xs)], dim=1).float()  # (N, dim)


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1], (B,) -> (B, dim).

    t is scaled by 1000 first so the fastest frequencies turn about 1000 radians over the whole
    range and the slowest barely move: neighbouring DDPM steps get distinct features, as in DiT,
    whereas raw t in [0, 1] would leave most channels nearly constant.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (half,)
    angles = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.cos(), angles.sin()], dim=1)  # (B, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, N, D)


# ---------------------------------------------------------------------------- blocks
def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep_weights: bool = False):
    """softmax(q k^T / sqrt(hd)) v for (B, h, N, hd) queries and (B, h, M, hd) keys and values.

    Returns ``(out, weights)``. Normally SDPA computes ``out`` and ``weights`` is None; with
    ``keep_weights`` the weights are formed explicitly and ``out = weights @ v`` is computed from
    them, so the maps a notebook plots are the very numbers that produced the output.
    """
    if not keep_weights:
        return F.scaled_dot_product_attention(q, k, v), None
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, h, N, M)
    return weights @ v, weights


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)  # (B, N, 3, h, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, h, N, hd)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, hd)
        return self.out(y.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class CrossAttention(nn.Module):
    """Image tokens (queries) read condition tokens (keys and values), as in the original notes."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.last_weights: torch.Tensor | None = None  # (B, h, N, M), filled when keep_weights is set
        self.keep_weights = False

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        m, hd = cond.shape[1], d // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd).transpose(1, 2)  # (B, h, N, hd)
        k, v = self.kv(cond).reshape(b, m, 2, self.heads, hd).permute(2, 0, 3, 1, 4)  # (B, h, M, hd)
        y, weights = attend(q, k, v, self.keep_weights)  # (B, h, N, hd)
        if weights is not None:
            self.last_weights = weights.detach()
        return self.out(y.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig, takes_skip: bool = False):
        super().__init__()
        d = cfg.dim
        # U-ViT: a block in the second half first merges the output of its mirror in the first half
        self.skip_merge = nn.Linear(2 * d, d) if takes_skip else None
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        # adaLN: the conditioning vector sets shift, scale and gate of both sub-blocks
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.cross = None
        if cfg.cross_attention:
            self.norm_cross = nn.LayerNorm(d, eps=1e-6)
            self.cross = CrossAttention(d, cfg.heads)

    def forward(self, x: torch.Tensor, c: torch.Tensor, cond: torch.Tensor | None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_merge is not None:
            x = self.skip_merge(torch.cat([x, skip], dim=-1))  # (B, N, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # each (B, D)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))  # (B, N, D)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), cond)  # (B, N, D)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, N, D)


class FinalLayer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 2 * cfg.dim))
        out_channels = CONV_HEAD_CHANNELS if cfg.conv_head else cfg.channels
        self.linear = nn.Linear(cfg.dim, cfg.patch_size**2 * out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=1)  # each (B, D)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, p*p*C)


# ---------------------------------------------------------------------------- the model
class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig = PRESETS["small"]):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.dim, cfg.patch_size
        self.patch_embed = nn.Linear(p * p * cfg.channels, d)
        # saved with the weights (though fixed), so a checkpoint whose img_size disagrees with them is caught
        self.register_buffer("pos_embed", sincos_2d_positions(d, cfg.img_size // p))
        self.time_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        if cfg.cross_attention:
            # a sequence of learned tokens per label (row NULL_LABEL is the "no label" sequence), plus
            # a position embedding over the sequence, so token j has a role shared by every label
            self.label_tokens = nn.Parameter(torch.randn(NUM_CLASSES + 1, cfg.cond_tokens, d) * 0.02)
            self.cond_positions = nn.Parameter(torch.randn(cfg.cond_tokens, d) * 0.02)
        half = cfg.depth // 2
        self.blocks = nn.ModuleList(DiTBlock(cfg, takes_skip=cfg.skip and i >= half) for i in range(cfg.depth))
        self.final = FinalLayer(cfg)
        # zero-initialised below, so at the start the head adds nothing to the unpatchified output
        self.head = nn.Conv2d(CONV_HEAD_CHANNELS, cfg.channels, 3, padding=1) if cfg.conv_head else None
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        # adaLN-Zero: every residual branch starts closed (gate 0) and the output layer at 0, so a
        # fresh DiT is the identity on its tokens and predicts exactly zero
        for block in self.blocks:
            nn.init.zeros_(block.ada[1].weight)
            nn.init.zeros_(block.ada[1].bias)
            if block.cross is not None:
                nn.init.zeros_(block.cross.out.weight)
        nn.init.zeros_(self.final.ada[1].weight)
        nn.init.zeros_(self.final.ada[1].bias)
        if self.head is None:
            nn.init.zeros_(self.final.linear.weight)
            nn.init.zeros_(self.final.linear.bias)
        else:  # zero the last layer only: zeroing both would leave neither a gradient
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def condition_tokens(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) labels in [0, NULL_LABEL] -> (B, M, D) tokens; the samplers and the data checked the labels."""
        return self.label_tokens[labels] + self.cond_positions  # (B, M, D)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, C, H, W), t (B,) float in [0, 1], labels (B,) int or None -> (B, C, H, W)."""
        cfg = self.cfg
        if x_t.dim() != 4 or x_t.shape[1:] != (cfg.channels, cfg.img_size, cfg.img_size):
            raise ValueError(f"expected images (B, {cfg.channels}, {cfg.img_size}, {cfg.img_size}), "
                             f"got {tuple(x_t.shape)}")
        t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).expand(x_t.shape[0])  # (B,)
        tokens = self.patch_embed(patchify(x_t, cfg.patch_size)) + self.pos_embed  # (B, N, D)
        c = self.time_mlp(timestep_embedding(t))  # (B, D)
        cond = None
        if cfg.cross_attention:
            if labels is None:
                labels = torch.full((x_t.shape[0],), NULL_LABEL, device=x_t.device)
            cond = self.condition_tokens(labels)  # (B, M, D)
        skips = []
        for i, block in enumerate(self.blocks):
            skip = skips.pop() if block.skip_merge is not None else None
            tokens = block(tokens, c, cond, skip)  # (B, N, D)
            if cfg.skip and i < cfg.depth // 2:
                skips.append(tokens)
        if self.head is None:
            return unpatchify(self.final(tokens, c), cfg.patch_size, cfg.channels)  # (B, C, H, W)
        features = unpatchify(self.final(tokens, c), cfg.patch_size, CONV_HEAD_CHANNELS)  # (B, 16, H, W)
        return self.head(features)  # (B, C, H, W)

    def keep_attention_weights(self, keep: bool = True) -> None:
        """Make every cross-attention block store its weights (B, h, N, M) in ``last_weights``."""
        for block in self.blocks:
            if block.cross is not None:
                block.cross.keep_weights = keep
                block.cross.last_weights = None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
