"""Quality sweeps of the shipped models, one table each, judged at N images per row.

    python benchmarks/sweep.py uncond   --ckpt checkpoints/ddpm_uncond.pt      # DDPM 1000, DDIM 20/50
    python benchmarks/sweep.py guidance --ckpt checkpoints/ddpm_cfg.pt --kind cfg   # DDIM 50 at guidance 0..5
    python benchmarks/sweep.py guidance --ckpt checkpoints/flow_cfg.pt --kind flow  # Heun 8 NFE at guidance 0..5
    python benchmarks/sweep.py nfe      --flow checkpoints/flow_cfg.pt --cfg checkpoints/ddpm_cfg.pt
    python benchmarks/sweep.py sde      --ckpt checkpoints/flow_cfg.pt          # γ × NFE

Rows go to RESULTS.md (unless --no-record) and, with --json, to a file. ``guidance`` with
``--choose`` stores the recommended guidance scale in the checkpoint's metadata: the scale with the
lowest Fréchet distance among those whose class accuracy reaches the 99.5 % target (if none reaches
it, the most accurate), because guidance buys accuracy at the price of variety.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import markdown_table, record  # noqa: E402
from course_lib import cli, config, ddpm, evaluation, flow, training  # noqa: E402

GUIDANCE_SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
NFES = (1, 2, 4, 8, 16, 32, 64)
NFE_SAMPLERS = ("euler", "heun", "heun_euler_last", "ddim")
GAMMAS = (0.0, 0.5, 1.0, 2.0)
SDE_NFES = (8, 16, 32, 64)
ACCURACY_TARGET = 0.995
HEADER = ["model", "sampler", "guidance", "γ", "NFE", "N", "class acc.", "Fréchet", "floor at N", "confidence",
          "diversity", "digit share min–max", "images/s"]


def conditional_sampler(sample_fn, nfe: int):
    """``sample_fn(shape, labels, generator)`` -> images, wrapped as a harness sampler cycling digits 0-9."""
    def sampler(n, generator):
        labels = torch.arange(n) % 10
        return sample_fn((n, 1, 32, 32), labels, generator), labels, nfe

    return sampler


def ddpm_sample_fn(model, payload, device, sampler: str, steps: int, guidance_scale):
    meta = payload["metadata"]
    scheduler = ddpm.NoiseScheduler(num_steps=meta["num_steps"], schedule=meta["schedule"], device=device)

    def sample_fn(shape, labels, generator):
        labels = None if labels is None else labels.to(device)
        common = dict(labels=labels, generator=generator, device=device, prediction=meta["prediction"],
                      guidance_scale=guidance_scale)
        if sampler == "ddpm":
            return ddpm.sample(model, scheduler, shape, **common)
        return ddpm.sample_ddim(model, scheduler, shape, steps, **common)

    return sample_fn


def flow_sample_fn(model, device, method: str, steps: int, guidance_scale, gamma: float = 0.0):
    def sample_fn(shape, labels, generator):
        labels = labels.to(device)
        if method == "sde":
            return flow.sample_sde(model, shape, steps, gamma, labels, guidance_scale, generator, device)
        return flow.sample_ode(model, shape, steps, method, labels, guidance_scale, generator, device)

    return sample_fn


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
                                    r["class_accuracy"], r["frechet"], r["floor"], r["confidence"],
                                    r.get("diversity"), f"{r['digit_share_min']:.1%}–{r['digit_share_max']:.1%}",
                                    r["images_per_s"]] for r in rows])


def choose_guidance(rows) -> float:
    hits = [r for r in rows if r["class_accuracy"] >= ACCURACY_TARGET]
    best = min(hits, key=lambda r: r["frechet"]) if hits else max(rows, key=lambda r: r["class_accuracy"])
    return best["guidance"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", choices=("uncond", "guidance", "nfe", "sde"))
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--kind", default="ddpm", choices=cli.KINDS)
    parser.add_argument("--flow", type=Path, help="nfe: the flow checkpoint")
    parser.add_argument("--cfg", type=Path, help="nfe: the CFG DDPM checkpoint for DDIM at equal NFE")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--samplers", nargs="+", default=list(NFE_SAMPLERS), choices=NFE_SAMPLERS,
                        help="nfe: the samplers to measure (default: all)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--choose", action="store_true", help="guidance: store the recommended scale")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--ddim-only", action="store_true", help="uncond: skip the 1000-step DDPM row")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    config.configure_threads()
    device = cli.resolve_device(args.device)
    rows = []

    if args.sweep == "uncond":
        model, payload = cli.load_model(args.ckpt, "ddpm", device)
        settings = (("ddpm", 1000), ("ddim", 50), ("ddim", 20))[1 if args.ddim_only else 0:]
        for sampler, steps in settings:
            fn = ddpm_sample_fn(model, payload, device, sampler, steps, None)
            rows.append(measure(args.ckpt.name, sampler, lambda n, g, fn=fn, s=steps: (
                fn((n, 1, 32, 32), None, g), None, s), args.n))
    elif args.sweep == "guidance":
        model, payload = cli.load_model(args.ckpt, args.kind, device)
        for scale in GUIDANCE_SCALES:
            if args.kind == "cfg":
                fn, name, nfe = ddpm_sample_fn(model, payload, device, "ddim", 50, scale), "ddim", 50
            else:
                fn, name, nfe = flow_sample_fn(model, device, "heun", 4, scale), "heun", 8
            rows.append(measure(args.ckpt.name, name, conditional_sampler(fn, nfe), args.n, guidance=scale))
        if args.choose:
            scale = choose_guidance(rows)
            stored = training.load_checkpoint(args.ckpt, kind=args.kind)
            stored["metadata"]["guidance_scale"] = scale
            stored["metadata"].setdefault("quality", {})["guidance_sweep"] = [
                {k: r[k] for k in ("sampler", "nfe", "guidance", "class_accuracy", "frechet", "floor",
                                   "confidence", "diversity")} for r in rows]
            training.save_checkpoint(args.ckpt, stored)
            print(f"recommended guidance scale {scale} stored in {args.ckpt}")
    elif args.sweep == "nfe":
        flow_model, flow_payload = cli.load_model(args.flow, "flow", device)
        cfg_model, cfg_payload = cli.load_model(args.cfg, "cfg", device)
        fg, cg = flow_payload["metadata"]["guidance_scale"], cfg_payload["metadata"]["guidance_scale"]
        wanted = set(args.samplers)
        for nfe in NFES + (100,):
            if "euler" in wanted:
                fn = flow_sample_fn(flow_model, device, "euler", nfe, fg)
                rows.append(measure(args.flow.name, "euler", conditional_sampler(fn, nfe), args.n, guidance=fg))
            if "heun" in wanted and nfe % 2 == 0 and nfe <= 64:
                fn = flow_sample_fn(flow_model, device, "heun", nfe // 2, fg)
                rows.append(measure(args.flow.name, "heun", conditional_sampler(fn, nfe), args.n, guidance=fg))
            if "heun_euler_last" in wanted and nfe % 2 == 0 and 4 <= nfe <= 64:  # nfe/2 steps cost nfe - 1
                steps = nfe // 2
                fn = flow_sample_fn(flow_model, device, "heun_euler_last", steps, fg)
                rows.append(measure(args.flow.name, "heun_euler_last",
                                    conditional_sampler(fn, flow.nfe("heun_euler_last", steps)), args.n, guidance=fg))
            if "ddim" in wanted and nfe <= 64:
                fn = ddpm_sample_fn(cfg_model, cfg_payload, device, "ddim", nfe, cg)
                rows.append(measure(args.cfg.name, "ddim", conditional_sampler(fn, nfe), args.n, guidance=cg))
    else:
        model, payload = cli.load_model(args.ckpt, "flow", device)
        scale = payload["metadata"]["guidance_scale"]
        for gamma in GAMMAS:
            for nfe in SDE_NFES:
                fn = flow_sample_fn(model, device, "sde", nfe, scale, gamma)
                rows.append(measure(args.ckpt.name, "sde", conditional_sampler(fn, nfe), args.n,
                                    guidance=scale, gamma=gamma))

    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.no_record:
        print(table(rows))
    else:
        record(f"Quality sweep: {args.sweep}", device, table(rows))


if __name__ == "__main__":
    main()
