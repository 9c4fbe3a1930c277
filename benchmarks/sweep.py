"""Quality sweeps of the shipped models, one table each, judged at N images per row.

    python -m benchmarks.sweep uncond   --ckpt checkpoints/ddpm_uncond.pt      # DDPM 1000, DDIM 20/50
    python -m benchmarks.sweep guidance --ckpt checkpoints/ddpm_cfg.pt --kind cfg   # DDIM 50 at guidance 0..5
    python -m benchmarks.sweep guidance --ckpt checkpoints/flow_cfg.pt --kind flow  # Euler 8 at guidance 0..5
    python -m benchmarks.sweep nfe      --flow checkpoints/flow_cfg.pt --cfg checkpoints/ddpm_cfg.pt
    python -m benchmarks.sweep sde      --ckpt checkpoints/flow_cfg.pt          # γ × NFE
    python -m benchmarks.sweep guidance --ckpt checkpoints/flow_reflow.pt --kind flow --steps 1  # one Euler step
    python -m benchmarks.sweep autoguidance --ckpt runs/main/ddpm_uncond.pt --guide runs/weak/ddpm_uncond.pt

Rows go to RESULTS.md (unless --no-record) and, with --json, to a file. Every path and option is
checked and every checkpoint loaded before the first sample; a failure is one line and exit status 2.
``--choose`` needs ``--n`` of at least 500 and rewrites ``--ckpt`` last, atomically, and only if the
file is still the one measured (its folder is locked meanwhile, as ``train`` locks its own). ``guidance`` with
``--choose`` stores the recommended guidance scale in the checkpoint's metadata: the scale with the
lowest Fréchet distance among those whose class accuracy reaches the 99.5 % target (if none reaches
it, the most accurate), because guidance buys accuracy at the price of variety. ``autoguidance`` with
``--choose`` stores the guide's weights and the recommended scale, sampler and steps in ``--ckpt``: the
scale with the lowest Fréchet distance among those whose every digit share lies in 7-13 % (if none does,
the lowest overall), since autoguidance can buy sharper digits at the price of an uneven digit mix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

from benchmarks.common import CheckpointUpdate, check_output_file, harness, main_of, markdown_table, record
from course_lib import checkpoint, cli, config, evaluation, guidance
from course_lib.cli import sampling
from course_lib.cli.checks import UsageError, reported_writes, resolve_device, usage

GUIDANCE_SCALES = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
NFES = (1, 2, 4, 8, 16, 32, 64)
NFE_SAMPLERS = ("euler", "heun", "heun_euler_last", "ddim")
GAMMAS = (0.0, 0.5, 1.0, 2.0)
SDE_NFES = (8, 16, 32, 64)
ACCURACY_TARGET = 0.995
AUTOGUIDANCE_SCALES = (1.0, 1.5, 2.0, 2.5, 3.0)
DIGIT_SHARES = (0.07, 0.13)  # an even digit mix: every digit between 7 and 13 % of the images
HEADER = ["model", "sampler", "guidance", "γ", "NFE", "N", "class acc.", "Fréchet", "± SE", "floor at N", "confidence",
          "diversity", "digit share min–max", "images/s"]


def sampler_for(model, payload, device, name: str, steps: int, guidance_scale=None, gamma=None):
    """The harness sampler of ``make_sampler``: the checkpoint's own schedule, T and prediction."""
    return harness(sampling.make_sampler(model, payload, name, steps, guidance_scale=guidance_scale, gamma=gamma,
                                         device=device))


def measure(name, sampler_name, sampler, n, guidance=None, gamma=None, batch_size=500) -> dict:
    row = evaluation.measure_quality(sampler, n, batch_size)
    row.update(model=name, sampler=sampler_name, guidance=guidance, gamma=gamma)
    if row["class_accuracy"] is not None:  # diversity is measured within each asked digit
        generator = torch.Generator().manual_seed(0)
        images, labels, _ = sampler(min(n, 500), generator)
        row["diversity"] = evaluation.within_class_diversity(images.float().cpu().clamp(-1, 1), labels)
    print(f"  {name} {sampler_name} g={guidance} γ={gamma} NFE={row['nfe']}: acc={row['class_accuracy']} "
          f"Fréchet={row['frechet']:.2f} conf={row['confidence']:.3f}", flush=True)
    return row


def table(rows) -> str:
    return markdown_table(HEADER, [[r["model"], r["sampler"], r.get("guidance"), r.get("gamma"), r["nfe"], r["n"],
                                    r["class_accuracy"], r["frechet"], r["frechet_se"], r["floor"], r["confidence"],
                                    r.get("diversity"), f"{r['digit_share_min']:.1%}–{r['digit_share_max']:.1%}",
                                    r["images_per_s"]] for r in rows])


def nfe_steps(sampler: str, nfe: int) -> int | None:
    """The steps that spend ``nfe`` network evaluations, or None where the sweep skips that NFE.

    Heun and heun_euler_last take nfe/2 steps (heun_euler_last's cost nfe - 1, recorded as such); DDIM,
    Heun and heun_euler_last stop at 64, where the curves are flat.
    """
    if sampler == "euler":
        return nfe
    if sampler == "ddim":
        return nfe if nfe <= 64 else None
    lowest = 4 if sampler == "heun_euler_last" else 2
    return nfe // 2 if nfe % 2 == 0 and lowest <= nfe <= 64 else None


def choose_guidance(rows) -> float:
    hits = [r for r in rows if r["class_accuracy"] >= ACCURACY_TARGET]
    best = min(hits, key=lambda r: r["frechet"]) if hits else max(rows, key=lambda r: r["class_accuracy"])
    return best["guidance"]


def choose_autoguidance(rows) -> float:
    even = [r for r in rows if DIGIT_SHARES[0] <= r["digit_share_min"] and r["digit_share_max"] <= DIGIT_SHARES[1]]
    return min(even or rows, key=lambda r: r["frechet"])["guidance"]


NEEDS = {"uncond": ("ckpt",), "guidance": ("ckpt",), "autoguidance": ("ckpt", "guide"), "nfe": ("flow", "cfg"),
         "sde": ("ckpt",)}
MIN_CHOOSE_N = 500  # --choose stores a recommendation: below 500 images the Fréchet distance's bias and its
# bootstrap error are as large as the differences between scales (RESULTS.md, "± SE" at N = 200 vs 1000)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", choices=tuple(NEEDS))
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--kind", default="ddpm", choices=cli.KINDS)
    parser.add_argument("--guide", type=Path, help="autoguidance: the weaker unconditional DDPM that guides --ckpt")
    parser.add_argument("--flow", type=Path, help="nfe: the flow checkpoint")
    parser.add_argument("--cfg", type=Path, help="nfe: the CFG DDPM checkpoint for DDIM at equal NFE")
    parser.add_argument("--n", type=cli.positive_int, default=1000,
                        help=f"images per row (--choose needs at least {MIN_CHOOSE_N})")
    parser.add_argument("--samplers", nargs="+", default=list(NFE_SAMPLERS), choices=NFE_SAMPLERS,
                        help="nfe: the samplers to measure (default: all)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--choose", action="store_true",
                        help=f"guidance, autoguidance: store the recommendation in --ckpt, at the very end "
                             f"(needs --n >= {MIN_CHOOSE_N})")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help=f"guidance: the scales to measure [{GUIDANCE_SCALES}]; autoguidance: "
                             f"[{AUTOGUIDANCE_SCALES}]")
    parser.add_argument("--steps", type=cli.at_most(cli.MAX_STEPS, "steps per image"), default=None,
                        help="guidance: the default sampler's steps (default: infer's; 1 for a reflowed flow)")
    parser.add_argument("--nfes", type=cli.at_most(cli.MAX_STEPS, "network evaluations per image"), nargs="+",
                        default=None, help="nfe and sde: the NFE budgets to measure (fewer on a slow machine)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--ddim-only", action="store_true", help="uncond: skip the 1000-step DDPM row")
    parser.add_argument("--no-record", action="store_true")
    return parser


PROG = "python -m benchmarks.sweep"


def check_options(args) -> None:
    """Every path and option, before any checkpoint is loaded or sample drawn."""
    missing = [f"--{name}" for name in NEEDS[args.sweep] if getattr(args, name) is None]
    if missing:
        raise UsageError(f"{args.sweep} needs {' and '.join(missing)}")
    if args.choose and args.sweep not in ("guidance", "autoguidance"):
        raise UsageError(f"--choose stores a recommended scale: it applies to guidance and autoguidance, "
                         f"not {args.sweep}")
    if args.choose and args.n < MIN_CHOOSE_N:
        raise UsageError(f"--n {args.n}: --choose needs at least {MIN_CHOOSE_N} images per row; below that the "
                         f"Fréchet distance's error is as large as the differences it would choose between")
    with usage():  # a bad scale is refused before any checkpoint is loaded
        for scale in args.scales:
            guidance.check_guidance_scale(scale)
    check_output_file(args.json, "--json", args.overwrite)


def plan(args, device) -> tuple[list, dict | None]:
    """``(jobs, guide_payload)``: every checkpoint loaded and every sampler made (so checked) before the first
    sample; each job is ``(model name, sampler name, harness sampler, row fields)``."""
    jobs, guide_payload = [], None
    if args.sweep == "uncond":
        model, payload = checkpoint.load_model(args.ckpt, "ddpm", device)
        settings = (("ddpm", None), ("ddim", 50), ("ddim", 20))[1 if args.ddim_only else 0:]
        jobs = [(args.ckpt.name, sampler, sampler_for(model, payload, device, sampler, steps), {})
                for sampler, steps in settings]
    elif args.sweep == "guidance":
        model, payload = checkpoint.load_model(args.ckpt, args.kind, device)
        # the sampler `infer` uses by default, so the stored scale is chosen for what a learner runs; --steps
        # picks the budget the model is meant for (1 for chapter 07's reflowed flow)
        name = sampling.DEFAULT_SAMPLER[args.kind]
        steps = args.steps or sampling.DEFAULT_STEPS[name]
        jobs = [(args.ckpt.name, name, sampler_for(model, payload, device, name, steps, scale), {"guidance": scale})
                for scale in args.scales]
    elif args.sweep == "autoguidance":
        model, payload = checkpoint.load_model(args.ckpt, "ddpm", device)
        _, guide_payload = checkpoint.load_model(args.guide, "ddpm", device)
        steps = args.steps or sampling.DEFAULT_STEPS["ddim"]
        for scale in args.scales:
            paired = checkpoint.with_guide(payload, guide_payload, scale, "ddim", steps)
            sample = sampler_for(model, paired, device, "ddim", steps)
            jobs.append((args.ckpt.name, "ddim", sample, {"guidance": scale}))
    elif args.sweep == "nfe":
        loaded = {"flow": checkpoint.load_model(args.flow, "flow", device),
                  "cfg": checkpoint.load_model(args.cfg, "cfg", device)}
        for nfe in args.nfes or NFES + (100,):
            for name in [s for s in NFE_SAMPLERS if s in args.samplers]:
                steps = nfe_steps(name, nfe)
                if steps is None:
                    continue
                kind, path = ("cfg", args.cfg) if name == "ddim" else ("flow", args.flow)
                sample = sampling.make_sampler(*loaded[kind], name, steps, device=device)  # the recommended guidance
                jobs.append((path.name, name, harness(sample), {"guidance": sample.guidance_scale}))
    else:
        model, payload = checkpoint.load_model(args.ckpt, "flow", device)
        for gamma in GAMMAS:
            for nfe in args.nfes or SDE_NFES:
                sample = sampling.make_sampler(model, payload, "sde", nfe, gamma=gamma, device=device)
                jobs.append((args.ckpt.name, "sde", harness(sample), {"guidance": sample.guidance_scale,
                                                                       "gamma": gamma}))
    return jobs, guide_payload


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.scales = args.scales or list(AUTOGUIDANCE_SCALES if args.sweep == "autoguidance" else GUIDANCE_SCALES)
    return main_of(PROG, lambda: sweep(args))


def sweep(args) -> None:
    check_options(args)
    with contextlib.ExitStack() as stack:
        update = stack.enter_context(CheckpointUpdate(args.ckpt)) if args.choose else None
        device = resolve_device(args.device)
        with usage():
            jobs, guide_payload = plan(args, device)
        config.configure_threads()
        rows = [measure(name, sampler_name, sampler, args.n, **fields) for name, sampler_name, sampler, fields in jobs]
        with reported_writes():  # the results first, the checkpoint last
            if args.json:
                checkpoint.write_text_atomically(args.json, json.dumps(rows, indent=1))
            if args.no_record:
                print(table(rows))
            else:
                record(f"Quality sweep: {args.sweep}", device, table(rows))
        if update is not None:
            update.write(chosen(args, rows, guide_payload))


def chosen(args, rows, guide_payload) -> dict:
    """The checkpoint as it will be stored: the recommendation and the rows it was chosen from."""
    if args.sweep == "guidance":
        scale = choose_guidance(rows)
        stored = checkpoint.load_checkpoint(args.ckpt, kind=args.kind)
        stored["metadata"]["guidance_scale"] = scale
        stored["metadata"].setdefault("quality", {})["guidance_sweep"] = [
            {k: r[k] for k in ("sampler", "nfe", "guidance", "class_accuracy", "frechet", "floor",
                               "confidence", "diversity")} for r in rows]
        print(f"recommended guidance scale {scale} stored in {args.ckpt}")
        return stored
    steps = args.steps or sampling.DEFAULT_STEPS["ddim"]
    scale = choose_autoguidance(rows)
    stored = checkpoint.with_guide(checkpoint.load_checkpoint(args.ckpt, kind="ddpm"), guide_payload, scale,
                                   "ddim", steps)
    stored["metadata"].setdefault("quality", {})["autoguidance_sweep"] = [
        {k: r[k] for k in ("sampler", "nfe", "guidance", "frechet", "frechet_se", "floor", "confidence",
                           "histogram")} for r in rows]
    print(f"guide {args.guide} and recommended autoguidance DDIM {steps} at {scale} stored in {args.ckpt}")
    return stored


if __name__ == "__main__":
    sys.exit(main())
