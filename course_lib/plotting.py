"""Pure plotting functions: each returns a matplotlib Figure (or writes an image file).

The notebooks call them through this module (``plotting.image_row(...)``); they live in one file
per kind of figure:

- :mod:`.plots_images`: grids, rows and tables of images, the reverse-chain GIF (every chapter)
- :mod:`.plots_schedule`: the DDPM noise schedule and forward process (notebooks 01-02)
- :mod:`.plots_model`: the DiT's patches, heat maps and cross-attention maps (notebooks 02-03)
- :mod:`.plots_curves`: losses, quality against a setting, errors against steps (notebooks 02-06)
- :mod:`.plots_paths`: sampler paths in 1-D and projected on a plane (notebooks 05-06)
"""

from __future__ import annotations

from .plots_curves import (  # noqa: F401
    class_histogram_bars,
    error_against_steps,
    guidance_tradeoff,
    loss_by_time,
    loss_curve,
    quality_against,
)
from .plots_images import (  # noqa: F401
    FIGURE_DPI,
    compare_grids,
    grid,
    guidance_grid,
    image_row,
    reverse_animation_gif,
    reverse_chain,
    same_noise_grid,
    save_grid,
    show_grid,
    wide_grid,
)
from .plots_model import attention_maps, heatmaps, patchify_figure  # noqa: F401
from .plots_paths import paths_1d, trajectories_2d  # noqa: F401
from .plots_schedule import (  # noqa: F401
    noising_grid,
    prediction_error_scales,
    sample_histograms,
    schedule_curves,
    step_histogram,
    timestep_figure,
)
