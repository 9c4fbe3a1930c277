"""``infer``: sample a grid of images from a checkpoint with :func:`sampling.make_sampler` and save it.

Every check comes first (options, output file, device, checkpoint, steps against its scheduler);
only then does sampling start.
"""

from __future__ import annotations

import time

import torch

from .. import config
from ..checkpoint import CONDITIONAL, load_model
from . import sampling
from .checks import MAX_STEPS, UsageError, check_output_image, forbid, reported_writes, resolve_device, usage


def run_infer(args) -> None:
    from .. import plotting  # matplotlib: only when an image is written

    with usage():  # the options' values passed their argparse types; here, whether they go together
        sampling.check_choice(args.kind, args.sampler, args.steps, args.gamma)
    forbid(args, CONDITIONAL, "label")
    check_output_image(args.output, args.ckpt, args.overwrite)
    device = resolve_device(args.device)
    with usage():
        model, payload = load_model(args.ckpt, args.kind, device)
        sample = sampling.make_sampler(model, payload, args.sampler, args.steps, guidance_scale=args.guidance_scale,
                                       gamma=args.gamma, device=device, path=args.ckpt)
    if sample.steps is not None and sample.steps > MAX_STEPS:
        where = f"--steps {args.steps}" if args.steps is not None else f"--ckpt {args.ckpt}: its recommended steps"
        raise UsageError(f"{where}: at most {MAX_STEPS} steps for any sampler (the curves are flat long before)")

    config.configure_threads()
    generator = torch.Generator().manual_seed(args.seed)
    n = args.num_images
    labels = None
    if sample.conditional:
        labels = torch.full((n,), args.label) if args.label is not None else torch.arange(n) % 10
    started = time.time()
    existed = args.output.exists()
    try:
        images = sample((n, model.cfg.channels, model.cfg.img_size, model.cfg.img_size), labels, generator)
        with reported_writes():
            plotting.save_grid(images, args.output)
    except KeyboardInterrupt:
        kept = "the file there before is unchanged" if existed else "nothing was written"
        raise KeyboardInterrupt(f"interrupted before {args.output} was written: {kept}; run the same command "
                                f"again to draw the grid") from None
    what = f" of digit {args.label}" if args.label is not None else ""
    print(f"wrote {n} images{what} to {args.output} in {time.time() - started:.1f} s ({sample.describe()})")
