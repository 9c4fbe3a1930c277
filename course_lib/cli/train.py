"""``train``: build the model and objective the options describe, then run :func:`training.train`.

Every check comes first (options, save folder, device, resume compatibility); only then are the
data loaded and the first step taken.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path

from .. import config, data, ddpm, distributed, dit, flow, guidance, training
from ..checkpoint import CONDITIONAL, CheckpointError, load_model, resume_path
from . import reflow as cli_reflow
from .checks import (
    MAX_PATCHES,
    UsageError,
    check_writable_dir,
    forbid,
    reported_writes,
    run_lock,
    usage,
)

CHECKPOINT_NAMES = {"ddpm": "ddpm_uncond.pt", "cfg": "ddpm_cfg.pt", "flow": "flow_cfg.pt"}
REFLOW_CHECKPOINT_NAME = "flow_reflow.pt"
DEFAULT_PRESET = "small"
NUM_TIMESTEPS = 1000  # the DDPM scheduler's T for every model the command line trains
# the command line's choices where the library's defaults teach the simpler one (ε, the notes' choice)
DEFAULTS = {"prediction": "v", "schedule": ddpm.SCHEDULES[0], "time_sampling": flow.TIME_SAMPLINGS[0],
            "loss_weighting": ddpm.LOSS_WEIGHTINGS[0]}


def run_train(args) -> None:
    with usage():  # under torchrun: this process's place; a launch missing a variable stops here
        world = distributed.launched()
    if world.several and args.reflow is not None:
        raise UsageError("--reflow draws its pairs in one process: train a reflow with python -m course_lib, "
                         "not torchrun")
    base = cli_reflow.check_reflow_options(args)
    model_cfg, train_cfg, settings = check_train_options(args, base)
    check_world(args, world)
    settings.update(processes=world.size, batch_per_process=train_cfg.batch_size // world.size)
    if world.main:  # the only process that writes
        check_writable_dir(args.save_dir, "--save_dir")
    with usage(prefix="--"):  # DeviceError's and LaunchError's device messages start with "device"
        device = distributed.device_for(world, args.device)
    num_images = data.num_images(train=True, limit=args.limit)
    if base is not None:
        settings.update(cli_reflow.reflow_settings(args, base))
        settings["num_pairs"] = settings["num_pairs"] or num_images
        num_images = settings["num_pairs"]
    init, init_source = check_init(args, model_cfg)
    resume = None
    if args.resume is not None:  # before the data: a resume that cannot continue the run costs nothing
        with usage(prefix="--resume: "):
            resume = training.check_resume(args.resume, args.kind, model_cfg.to_dict(), train_cfg, num_images,
                                           settings)
    path = args.save_dir / (REFLOW_CHECKPOINT_NAME if base is not None else CHECKPOINT_NAMES[args.kind])
    # one run writes into a folder at a time, to its end; under torchrun, process 0 holds the lock and writes
    with run_lock(args.save_dir, "--save_dir") if world.main else nullcontext():
        check_no_overwrite(args, path)  # every process (it only reads), so all refuse at once under torchrun
        if world.several and world.main:
            print(f"training on {world.size} processes: --batch_size {args.batch_size} is the global batch, "
                  f"{settings['batch_per_process']} images per process per step", flush=True)
        try:
            distributed.start(world, device)  # torchrun's rendezvous: waits for every process
            with reported_writes():
                train_into(args, path, base, model_cfg, train_cfg, settings, device, init, init_source, resume)
        finally:
            distributed.stop()


def check_world(args, world: distributed.World) -> None:
    """Several processes: the global --batch_size must divide evenly among them."""
    if not world.several:
        return
    with usage(prefix="--"):
        distributed.per_process_batch(args.batch_size, world)


def check_no_overwrite(args, path: Path) -> None:
    """Refuse a ``--save_dir`` that holds a run of this name, unless ``--overwrite``, or ``--resume`` names it."""
    existing = [p for p in (path, resume_path(path)) if p.exists()]
    if not existing or args.overwrite:
        return
    if args.resume is not None and any(os.path.samefile(args.resume, p) for p in existing):
        return  # continuing the very run that is there
    raise UsageError(f"--save_dir {args.save_dir}: already holds a run ({existing[0].name}); continue it with "
                     f"--resume {path}, replace it with --overwrite, or choose another --save_dir")


def train_into(args, path: Path, base, model_cfg, train_cfg, settings, device, init, init_source, resume) -> None:
    config.configure_threads()
    try:
        images, labels = data.load_mnist(train=True, size=args.img_size, limit=args.limit)
    except data.MNISTUnavailable as error:
        raise UsageError(str(error).replace("\n", " ")) from error
    training.seed_everything(args.seed)  # the initial weights depend on --seed too
    if base is None:
        model, loss_fn = init or dit.DiT(model_cfg), objective(args.kind, settings, device)
        tensors = (images, labels)
    else:  # the base's weights, trained on the pairs its ODE draws
        model, loss_fn = cli_reflow.reflowed_model(base.model), cli_reflow.objective(settings)
        tensors = cli_reflow.pairs_for_training(base.model, settings, labels, images.shape[1:], args.seed,
                                                args.save_dir, device)  # (noise, images, labels)
        settings["guidance_scale"] = 1.0  # the pairs were drawn with the base's guidance: the model has it built in
    launcher = "python -m course_lib" if settings["processes"] == 1 else \
        f"torchrun --nnodes={settings['processes'] // int(os.environ['LOCAL_WORLD_SIZE'])} " \
        f"--nproc_per_node={os.environ['LOCAL_WORLD_SIZE']} -m course_lib"
    recipe = " ".join([launcher, *args.argv])
    preset = args.preset or (DEFAULT_PRESET if base is None else base.preset)
    metadata = {"recipe": recipe, "preset": preset, "seed": args.seed, "images": len(tensors[0]), **settings}
    if init_source is not None:  # a warm start: the recipe of the weights it began from, too
        metadata["init"] = init_source
    started = time.time()
    try:
        checkpoints = training.Checkpoints(path, args.kind, model_cfg.to_dict(), metadata)
        result = training.train(model, loss_fn, tensors, train_cfg, device, checkpoints=checkpoints, resume=resume)
    except (training.TrainingDiverged, CheckpointError) as error:
        raise UsageError(str(error)) from error
    if not distributed.current().main:
        return  # process 0 reports
    print(f"trained {result.step} steps in {time.time() - started:.1f} s, "
          f"last-100 loss {sum(result.losses[-100:]) / max(1, len(result.losses[-100:])):.4f}; wrote {path}")


def check_init(args, model_cfg: dit.DiTConfig):
    """The model of ``--init`` with its weights and where they came from, or (None, None).

    Refused unless its kind and model config are this run's.
    """
    if args.init is None:
        return None, None
    if args.resume is not None or args.reflow is not None:
        raise UsageError(f"--init starts a new run from weights; it does not combine with "
                         f"--{'resume' if args.resume is not None else 'reflow'}")
    with usage(prefix="--init: "):
        model, payload = load_model(args.init, args.kind)
    if payload["model_config"] != model_cfg.to_dict():
        differ = sorted(k for k, v in model_cfg.to_dict().items() if payload["model_config"].get(k) != v)
        raise UsageError(f"--init {args.init}: its model differs from this run's in {', '.join(differ)} "
                         f"(pick the same --preset, --patch_size and --img_size)")
    return model, {"checkpoint": str(args.init), **{k: payload["metadata"].get(k) for k in ("recipe", "step")}}


def check_train_options(args, base=None) -> tuple[dit.DiTConfig, training.TrainConfig, dict]:
    """The model config (``base``'s, for reflow), training config and the metadata's settings, or a UsageError."""
    forbid(args, ("ddpm", "cfg"), "prediction", "schedule", "loss_weighting")
    forbid(args, CONDITIONAL, "p_uncond")
    if args.channels != 1:
        raise UsageError(f"--channels {args.channels}: MNIST has 1 channel")
    overrides = dict(img_size=args.img_size, channels=args.channels, cross_attention=args.kind in CONDITIONAL)
    if args.patch_size is not None:
        overrides["patch_size"] = args.patch_size
    with usage():
        model_cfg = dit.preset(args.preset or DEFAULT_PRESET, **overrides) if base is None else base.cfg
        train_cfg = training.TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            save_freq=args.save_freq, lr_decay_step=args.lr_decay_step, lr_decay_rate=args.lr_decay_rate,
            lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, ema_decay=args.ema_decay,
            max_steps=args.max_steps)
    if model_cfg.num_patches > MAX_PATCHES:
        raise UsageError(f"--patch_size {model_cfg.patch_size}: {model_cfg.num_patches} patches per "
                         f"{model_cfg.img_size}-pixel image, at most {MAX_PATCHES} (attention's memory grows "
                         f"with their square); choose a larger --patch_size")
    return model_cfg, train_cfg, train_settings(args)


def train_settings(args) -> dict:
    """What the checkpoint's metadata records beside TrainConfig, and a resume must match."""
    settings = {"limit": args.limit}
    if args.kind in ("ddpm", "cfg"):
        settings.update(prediction=args.prediction or DEFAULTS["prediction"],
                        schedule=args.schedule or DEFAULTS["schedule"], num_timesteps=NUM_TIMESTEPS,
                        loss_weighting=args.loss_weighting or DEFAULTS["loss_weighting"],
                        time_sampling=args.time_sampling or DEFAULTS["time_sampling"])
    if args.kind in CONDITIONAL:
        settings["p_uncond"] = guidance.P_UNCOND if args.p_uncond is None else args.p_uncond
    if args.kind == "flow":
        settings["time_sampling"] = args.time_sampling or DEFAULTS["time_sampling"]
    return settings


def objective(kind: str, settings: dict, device) -> training.LossFn:
    """The loss ``loss_fn(model, (images, labels), generator)`` of the kind, with labels dropped for CFG."""
    if kind == "flow":
        def loss_fn(model, batch, generator):
            x, y = batch
            return flow.loss(model, x, guidance.drop_labels(y, settings["p_uncond"], generator), generator,
                             settings["time_sampling"])
        return loss_fn
    scheduler = ddpm.NoiseScheduler(num_timesteps=settings["num_timesteps"], schedule=settings["schedule"],
                                    device=device)

    def loss_fn(model, batch, generator):
        x, y = batch
        y = guidance.drop_labels(y, settings["p_uncond"], generator) if kind == "cfg" else None
        return ddpm.loss(model, x, y, scheduler, generator, settings["prediction"],
                         settings.get("loss_weighting", DEFAULTS["loss_weighting"]),
                         settings.get("time_sampling", DEFAULTS["time_sampling"]))

    return loss_fn
