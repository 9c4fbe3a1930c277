"""A judge for generated digits: an MNIST classifier, and the metrics built on its features.

* ``class_accuracy``: share of samples the judge reads as the asked digit;
* ``frechet_distance``: Fréchet distance between judge features of samples and of real images;
  it is biased upwards at small N, so always print ``real_floor(N)`` beside it;
  ``frechet_with_error`` adds a bootstrap standard error, to tell a real gap from sampling noise;
* ``class_histogram`` / ``mean_confidence``: coverage and sharpness of unconditional samples;
* ``nearest_train_distance``: how close each sample is to a training image (memorisation check).

The judge's weights ship in ``checkpoints/mnist_judge.pt``; ``python -m course_lib.evaluation``
retrains them with the recipe below.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint, config, data, training

# ---------------------------------------------------------------------------- the judge
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
    checkpoint.save_checkpoint(path, {
        "format": checkpoint.CHECKPOINT_FORMAT, "kind": "judge", "model_config": {},
        "state_dict": {k: v.cpu() for k, v in judge.state_dict().items()},
        "metadata": {"recipe": JUDGE_RECIPE, "test_accuracy": accuracy, "train_seconds": seconds},
    })


@lru_cache(maxsize=4)
def load_judge(device: str = "cpu", path: str = str(JUDGE_PATH)) -> Judge:
    """The shipped judge, in eval mode (cached per device)."""
    payload = checkpoint.load_checkpoint(path, kind="judge")
    judge = checkpoint.load_weights(Judge(), payload["state_dict"], path)
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


# ---------------------------------------------------------------------------- metrics
def wilson_interval(accuracy: float, n: int, z: float = 1.0) -> tuple[float, float]:
    """Wilson score interval (low, high) for a share ``accuracy`` of ``n`` trials, ``z`` standard errors wide.

    The textbook ``a ± z·sqrt(a (1 - a) / n)`` shrinks to zero width at a = 0 or 1, as if 200 correct
    digits out of 200 proved the accuracy is exactly 100 %; the Wilson interval is the set of true
    shares p for which the observed one lies within z standard errors sqrt(p (1 - p) / n) of p, so it
    keeps a width of about z² / n there (200/200 at z = 1: 99.5 % to 100 %) and stays inside [0, 1].
    """
    if not 0.0 <= accuracy <= 1.0 or n < 1:
        raise ValueError(f"need a share in [0, 1] and n >= 1, got accuracy={accuracy}, n={n}")
    shrink = 1.0 + z * z / n
    centre = (accuracy + z * z / (2 * n)) / shrink
    half = z * (accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5 / shrink
    # the interval always holds the observed share; min/max only undo rounding (at 100 %, centre + half
    # can come out as 0.9999999999999999)
    return max(0.0, min(accuracy, centre - half)), min(1.0, max(accuracy, centre + half))


def class_histogram(images: torch.Tensor, judge: Judge | None = None) -> torch.Tensor:
    """Share of images the judge assigns to each digit, (10,) summing to 1."""
    predictions = judge_logits(images, judge).argmax(1).cpu()
    return torch.bincount(predictions, minlength=data.NUM_CLASSES).float() / len(images)


def mean_confidence(images: torch.Tensor, judge: Judge | None = None) -> float:
    """Mean of the judge's top softmax probability: near 1 for clear digits, low for scribbles."""
    return judge_logits(images, judge).softmax(1).max(1).values.mean().item()


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.double()
    return features.mean(0), torch.cov(features.T)  # (D,), (D, D)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_from_statistics(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||² + tr(C1 + C2 - 2 (C1^½ C2 C1^½)^½), all in float64.

    The symmetric form C1^½ C2 C1^½ has the same trace-root as C1 C2 but stays symmetric
    positive semi-definite, so an eigendecomposition gives its root without complex parts.
    """
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_root
    return max(value.item(), 0.0)


@lru_cache(maxsize=2)
def reference_statistics(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Judge-feature mean and covariance of the 10,000 MNIST test images (computed once)."""
    images, _ = data.load_mnist(train=False, limit=10_000)
    return feature_statistics(judge_features(images.to(device)))


def _reference_statistics(images: torch.Tensor, reference: torch.Tensor | None,
                          judge: Judge | None) -> tuple[torch.Tensor, torch.Tensor]:
    if reference is None and judge is None:
        return reference_statistics(str(images.device))
    reference = reference if reference is not None else data.load_mnist(train=False, limit=10_000)[0]
    return feature_statistics(judge_features(reference.to(images.device), judge))


def frechet_distance(images: torch.Tensor, reference: torch.Tensor | None = None,
                     judge: Judge | None = None) -> float:
    """Fréchet distance between judge features of ``images`` and ``reference`` (MNIST test split)."""
    images = check_images(images)
    if len(images) < 2:
        raise ValueError("the Fréchet distance needs at least 2 images")
    mu1, cov1 = feature_statistics(judge_features(images, judge))
    return frechet_from_statistics(mu1, cov1, *_reference_statistics(images, reference, judge))


def frechet_bootstrap(features: torch.Tensor, reference_mean: torch.Tensor, reference_cov: torch.Tensor,
                      resamples: int = 100, seed: int = 0) -> tuple[float, float]:
    """Fréchet distance of ``features`` (N, D) to fixed reference statistics, and its bootstrap standard error.

    The error is the standard deviation of the distance over ``resamples`` copies of the N features
    drawn *with replacement* (a permutation would give the same mean and covariance, hence error 0);
    only the mean and covariance and the matrix roots are recomputed, the features are not.
    """
    if resamples < 2:
        raise ValueError(f"the bootstrap needs at least 2 resamples, got {resamples}")
    features = features.double()
    value = frechet_from_statistics(*feature_statistics(features), reference_mean, reference_cov)
    generator = torch.Generator().manual_seed(seed)
    n, values = len(features), []
    for _ in range(resamples):
        chosen = torch.randint(n, (n,), generator=generator).to(features.device)   # with replacement
        values.append(frechet_from_statistics(*feature_statistics(features[chosen]), reference_mean, reference_cov))
    return value, torch.tensor(values, dtype=torch.float64).std().item()


def frechet_with_error(images: torch.Tensor, reference: torch.Tensor | None = None, judge: Judge | None = None,
                       resamples: int = 100, seed: int = 0) -> tuple[float, float]:
    """``(frechet_distance(images), standard_error)``, the error from resampling the samples' judge features.

    Only the samples are resampled; the reference statistics stay fixed. They come from the 10,000
    MNIST test images, and their own sampling noise is far smaller than that of the N = 200-1000
    samples a notebook draws, so the error of a distance is almost all the samples' (the floor,
    ``real_floor(N)``, is one draw of N real images and has an error of the same size).

    How good the bar is, measured with the shipped judge at N = 200 against the spread of the distance
    over 20-30 independent draws of 200 images: for noisy real digits at a distance of about 170
    (``tests/test_evaluation.py`` keeps this check) the bootstrap error is 1.2 to 1.4 times the true
    spread of 34 (five bootstrap seeds); for real digits, near the floor, where the small-N bias
    dominates, 1.4 to 2.3 times a spread of 16 to 19. So in 128 dimensions at N = 200 it errs on the
    large side. Read two distances as different only when they differ by clearly more than their
    bars (each bar is one standard error; the difference of two independent distances has
    sqrt(se1² + se2²)). 100 resamples take about 0.2 s at N = 200 on one CPU core.
    """
    images = check_images(images)
    if len(images) < 2:
        raise ValueError("the Fréchet distance needs at least 2 images")
    features = judge_features(images, judge)
    return frechet_bootstrap(features, *_reference_statistics(images, reference, judge), resamples, seed)


def real_floor(n: int, seed: int = 0) -> float:
    """The Fréchet distance of ``n`` random real training images: the best a sampler can score at ``n``."""
    images, _ = data.load_mnist(train=True, limit=60_000)
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return frechet_distance(images[chosen])


def nearest_train_distance(images: torch.Tensor, train_images: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample L2 pixel distance (in [-1, 1] units, 32 x 32) to the closest training image, (N,).

    ``cdist`` takes the fast matrix-product route, which is exact to about 0.01 here; distinct
    digits are several units apart, so that is plenty.
    """
    images = check_images(images).flatten(1).cpu()  # (N, 1024)
    if train_images is None:
        train_images = data.load_mnist(train=True, limit=60_000)[0]
    train_flat = train_images.flatten(1)  # (M, 1024)
    best = torch.full((len(images),), float("inf"))
    for start in range(0, len(train_flat), 10_000):
        best = torch.minimum(best, torch.cdist(images, train_flat[start:start + 10_000]).min(1).values)
    return best



# ---------------------------------------------------------------------------- the quality harness
# A sampler is any callable ``sampler(n, generator) -> (images, labels, nfe)``: ``n`` images in
# [-1, 1], the labels they were asked to show (None when unconditional), and the network
# evaluations spent per image (a guided step counts 2). DDPM, CFG and flow samplers all plug in.
Draw = Callable[[int, torch.Generator], tuple[torch.Tensor, "torch.Tensor | None", int]]


@lru_cache(maxsize=8)
def cached_floor(n: int) -> float:
    return real_floor(n)


def measure_quality(draw: Draw, n: int, batch_size: int = 250, seed: int = 0) -> dict:
    """Draw ``n`` images in batches and score them; returns one row of numbers as a dict.

    ``frechet_se`` is the bootstrap standard error of ``frechet`` (``frechet_with_error``).
    """
    generator = torch.Generator().manual_seed(seed)
    images, labels, nfe = [], [], 0
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        batch, batch_labels, nfe = draw(min(batch_size, n - start), generator)
        images.append(batch.detach().float().cpu().clamp(-1, 1))
        labels.append(batch_labels.cpu() if batch_labels is not None else None)
    seconds = time.perf_counter() - started
    images = torch.cat(images)
    hist = class_histogram(images)
    frechet, frechet_se = frechet_with_error(images)
    row = {"nfe": nfe, "n": n, "class_accuracy": None, "frechet": frechet, "frechet_se": frechet_se,
           "floor": cached_floor(n), "confidence": mean_confidence(images),
           "digit_share_min": hist.min().item(), "digit_share_max": hist.max().item(),
           "images_per_s": n / seconds, "seconds": seconds, "histogram": hist.tolist()}
    if all(lab is not None for lab in labels):
        row["class_accuracy"] = class_accuracy(images, torch.cat(labels))
    return row


def real_images_sampler(train: bool = False) -> Draw:
    """A stand-in sampler that returns real MNIST images: its row must show the floor."""
    images, labels = data.load_mnist(train=train, limit=60_000 if train else 10_000)

    def sampler(n: int, generator: torch.Generator):
        chosen = torch.randperm(len(images), generator=generator)[:n]
        return images[chosen], labels[chosen], 0

    return sampler


def within_class_diversity(images: torch.Tensor, labels: torch.Tensor, judge: Judge | None = None) -> float:
    """Mean pairwise distance between judge features of images that share a label, averaged over labels.

    Zero when every sample of a digit is the same image; real MNIST test digits score about
    the value printed by ``within_class_diversity(*data.load_mnist(train=False))``.
    """
    features = judge_features(images, judge).cpu()  # (N, 128)
    labels = torch.as_tensor(labels).cpu()
    per_class = []
    for label in labels.unique():
        group = features[labels == label]
        if len(group) >= 2:
            distances = torch.cdist(group, group)
            per_class.append(distances.sum() / (len(group) * (len(group) - 1)))
    if not per_class:
        raise ValueError("diversity needs at least two images of one label")
    return torch.stack(per_class).mean().item()


if __name__ == "__main__":
    config.configure_threads()
    started = time.time()
    trained, accuracy = train_judge(config.default_device())
    seconds = time.time() - started
    save_judge(trained.cpu(), accuracy, seconds)
    print(f"judge test accuracy {accuracy:.4f} after {seconds:.0f} s; wrote {JUDGE_PATH}")
