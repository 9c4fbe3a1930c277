"""Nothing a learner sees changes by accident: the shipped checkpoints draw the images stored in
``tests/stored/shipped_samples.pt`` for the same seed and settings.

The stored tensors were drawn by the library as it was before the redesign of issue 23 (old call sites,
old checkpoint metadata), and the redesigned library drew them bit for bit on the same machine. Here they are
compared to 1e-4: far below any change a sampler, a scheduler or a checkpoint edit would make (a wrong step,
noise drawn in another order, another guidance scale move pixels by 0.01 and more), and above the last-bit
differences another CPU's kernels may give.
"""

from pathlib import Path

import pytest
import torch

from course_lib import checkpoint, config
from course_lib.cli import sampling

STORED = torch.load(Path(__file__).parent / "stored" / "shipped_samples.pt", weights_only=True)
CASES = {  # name: (file, kind, sampler, steps, labels, guidance scale; None = the checkpoint's own)
    "ddpm_ddim5_autoguided": ("ddpm_uncond.pt", "ddpm", "ddim", 5, None, None),
    "ddpm_ddim5_alone": ("ddpm_uncond.pt", "ddpm", "ddim", 5, None, 1.0),
    "cfg_ddim5": ("ddpm_cfg.pt", "cfg", "ddim", 5, [0, 1, 2, 3], None),
    "flow_euler4": ("flow_cfg.pt", "flow", "euler", 4, [0, 1, 2, 3], None),
    "flow_heun2": ("flow_cfg.pt", "flow", "heun", 2, [4, 5, 6, 7], None),
    "flow_sde4": ("flow_cfg.pt", "flow", "sde", 4, [8, 9, 0, 1], None),
    "reflow_euler1": ("flow_reflow.pt", "flow", "euler", 1, [2, 3, 4, 5], None),
}


def test_every_stored_case_is_checked():
    assert set(STORED) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_checkpoint_draws_the_stored_images(name):
    path, kind, sampler, steps, labels, scale = CASES[name]
    model, payload = checkpoint.load_model(config.CHECKPOINT_DIR / path, kind)
    options = {} if scale is None else {"guidance_scale": scale}
    draw = sampling.make_sampler(model, payload, sampler, steps, **options)
    y = None if labels is None else torch.tensor(labels)
    images = draw((4, 1, 32, 32), y, torch.Generator().manual_seed(0))
    torch.testing.assert_close(images, STORED[name], atol=1e-4, rtol=0)
