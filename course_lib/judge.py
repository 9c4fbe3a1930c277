"""The judge of generated digits: a small MNIST classifier, its training recipe and its features.

``course_lib.evaluation`` builds the metrics on it; ``python -m course_lib.evaluation`` retrains it.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import config, data, training

JUDGE_PATH = config.CHECKPOINT_DIR / "mnist_judge.pt"
JUDGE_RECIPE = {"epochs": 4, "batch_size": 128, "lr": 2e-3, "seed": 0, "max_shift": 2,
                "command": "python -m course_lib.evaluation"}
FEATURE_DIM = 128
# Samples overshoot [-1, 1] and are clamped before judging. Measured on 128 and 32 samples: the
# unconditional DDPM reached [-1.25, 1.16] (DDIM 5 steps); guided ones (the first, 1-epoch CFG and
# flow checkpoints) go further, [-1.46, 2.27] at guidance 2 and [-1.93, 3.28] at guidance 10 (CFG
# DDPM, DDIM 50), [-1.76, 2.72] for flow (Heun 4, guidance 10). Anything past ±(1 + RANGE_SLACK) is
# another convention: [0, 255] images are refused.
RANGE_SLACK = 4.0
# [0, 1] images fit inside [-1, 1] and would pass the range check, but their darkest pixel is 0: in the
# book's convention the MNIST background is -1, and every real test image and every sample measured has
# its darkest pixel at or below -1.0. A batch whose darkest pixel lies above this is refused.
DARKEST_PIXEL_MAX = -0.5


class Judge(nn.Module):
    """Three conv blocks and two linear layers; ``features`` is the 128-d pre-activation layer."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 16, 16)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 8, 8)
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 4, 4)
        )
        self.hidden = nn.Linear(128 * 4 * 4, FEATURE_DIM)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, data.NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.convs(x).flatten(1))  # (B, 128), before the ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(self.features(x))))  # (B, 10)


def check_images(images: torch.Tensor) -> torch.Tensor:
    """Validate (N, 1, H, W) images in [-1, 1]; return them clamped and resized to 32 x 32.

    Refused: values beyond ±(1 + RANGE_SLACK) ([0, 255] images), and batches with no dark background
    (darkest pixel above DARKEST_PIXEL_MAX: [0, 1] images, which the judge would read as noise).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images of shape (N, 1, H, W), got {shape}")
    if images.shape[0] == 0:
        raise ValueError("expected at least one image")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or Inf")
    low, high = images.min().item(), images.max().item()
    if low < -1 - RANGE_SLACK or high > 1 + RANGE_SLACK or low > DARKEST_PIXEL_MAX:
        raise ValueError(f"images must be in [-1, 1] (the book's convention), got values in "
                         f"[{low:.3g}, {high:.3g}]; map [0, 255] images with x / 127.5 - 1 "
                         f"and [0, 1] images with x * 2 - 1")
    images = images.float().clamp(-1, 1)
    if images.shape[-2:] != (32, 32):
        images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    return images


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels; the 2-pixel black border makes this wrap-free."""
    shifts = torch.randint(-max_shift, max_shift + 1, (len(images), 2), generator=generator)
    out = images.clone()
    for dy, dx in shifts.unique(dim=0).tolist():
        chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        out[chosen] = torch.roll(images[chosen], shifts=(dy, dx), dims=(2, 3))
    return out


# ---------------------------------------------------------------------------- the judge
def train_judge(device: torch.device | str = "cpu", recipe: dict = JUDGE_RECIPE) -> tuple[Judge, float]:
    """Train on the full MNIST training split; return the judge and its test accuracy."""
    generator = training.seed_everything(recipe["seed"])
    images, labels = data.load_mnist(train=True, limit=60_000)
    judge = Judge().to(device)
    steps = recipe["epochs"] * -(-len(images) // recipe["batch_size"])
    optimizer = torch.optim.AdamW(judge.parameters(), lr=recipe["lr"], weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps)
    judge.train()
    for _ in range(recipe["epochs"]):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), recipe["batch_size"]):
            batch = order[start:start + recipe["batch_size"]]
            x = random_shift(images[batch], recipe["max_shift"], generator).to(device)  # (B, 1, 32, 32)
            loss = F.cross_entropy(judge(x), labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    judge.eval()
    test_images, test_labels = data.load_mnist(train=False, limit=10_000)
    return judge, class_accuracy(test_images, test_labels, judge)


def save_judge(judge: Judge, accuracy: float, seconds: float, path=JUDGE_PATH) -> None:
    training.save_checkpoint(path, {
        "format": training.CHECKPOINT_FORMAT, "kind": "judge", "model_config": {},
        "state_dict": {k: v.cpu() for k, v in judge.state_dict().items()},
        "metadata": {"recipe": JUDGE_RECIPE, "test_accuracy": accuracy, "train_seconds": seconds},
    })


@lru_cache(maxsize=4)
def load_judge(device: str = "cpu", path: str = str(JUDGE_PATH)) -> Judge:
    """The shipped judge, in eval mode (cached per device)."""
    payload = training.load_checkpoint(path, kind="judge")
    judge = training.load_weights(Judge(), payload["state_dict"], path)
    return judge.to(device).eval()


def _judge_or_default(judge: Judge | None, images: torch.Tensor) -> Judge:
    return judge if judge is not None else load_judge(str(images.device))


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([fn(images[i:i + batch]) for i in range(0, len(images), batch)])


def judge_logits(images: torch.Tensor, judge: Judge | None = None) -> torch.Tensor:
    images = check_images(images)
    return _batched(_judge_or_default(judge, images), images)  # (N, 10)


def judge_features(images: torch.Tensor, judge: Judge | None = None) -> torch.Tensor:
    images = check_images(images)
    return _batched(_judge_or_default(judge, images).features, images).double()  # (N, 128)


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, judge: Judge | None = None) -> float:
    """Share of ``images`` the judge reads as the matching entry of ``labels``."""
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    predictions = judge_logits(images, judge).argmax(1).cpu()
    return (predictions == labels.cpu()).float().mean().item()
