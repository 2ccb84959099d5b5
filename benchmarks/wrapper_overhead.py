"""Training-step overhead of SBCB(CASENet) over the same baseline, and inference cost of the stripped model.

    .venv/bin/python benchmarks/wrapper_overhead.py [--quick] [--full] [--threads N]
    .venv/bin/python benchmarks/wrapper_overhead.py --breakdown [--reps N] [--threads N]
    .venv/bin/python benchmarks/wrapper_overhead.py --rows [--reps N] [--threads N] [--only NAME]
    .venv/bin/python benchmarks/wrapper_overhead.py --profile ROW [--steps N] [--threads N]

`--rows` (issue 17) times whole training steps of the issue's four rows side by side: the baseline
(`sbcb.Segmentor`) and SBCB through the same call, ``sum(net(images, masks).values()).backward()`` + an SGD
(momentum 0.9) step, on SyntheticStreets masks (realistic regions). SBCB runs with the boundary GT generated inside
the step from the masks (`gt_in_step`) and with bit-packed GT precomputed as the DataLoader workers make it
(`gt_packed`, unpacked inside the step); the ResNet-18 176x240 row adds DFF, BBCB and ``head_scale=0.5``. Every
variant of a row runs in one process, interleaved (baseline, SBCB, ..., baseline, ...); a ratio is the median of the
per-repetition ratios to the baseline step of the same repetition, with its min-max spread. Each row runs at the
thread count the issue states (`--threads` overrides it). Results: benchmarks/results/step_overhead.json and .md.

`--breakdown` (issue 17) times the SBD head and its losses alone, on the side features of DeepLabV3+ ResNet-18 and
ResNet-50 at 2x3x256x512, K = 19: head forward, loss (`sbd_loss_terms`, GT precomputed), backward of head + loss,
for the library's path and for the slow reference of tests/heads/reference_sbd.py (the literal formulation: explicit
concat + grouped conv, float64 BCE; slower than the pre-issue-17 code, so the ratio is not the gain of issue 17),
interleaved; results in benchmarks/results/sbd_head_breakdown.json and .md.

Setting (issue 7): smp DeepLabV3+ ResNet-18 (+ ResNet-50 with --full), 256x512 input, batch 2, K = 19, CPU, plain
SGD step. Every configuration runs in the same process and the repetitions are interleaved (baseline, SBCB variants,
baseline, ...), so machine load hits all of them alike; ratios are medians of per-repetition ratios to the baseline
step measured in the same repetition.

SBCB variants:
- `taps_only`: the forward hooks around the user's forward and the baseline loss, no head (the cost of tapping).
- `sbcb_gt_given`: boundary GT precomputed (as a DataLoader worker does), passed as a bool tensor.
- `sbcb_gt_on_device`: GT generated inside `loss()` on the training device from the mask (on the CPU by the exact
  numba/OpenCV scan of `sbcb.boundaries`; the table also times the torch twin that GPU masks use).
- `sbcb_half_gt_given`: SBD outputs at half resolution (`head_scale=0.5`), GT precomputed.

Results go to benchmarks/results/wrapper_overhead[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _protocol import sgd  # noqa: E402

K = 19
RESULTS = Path(__file__).parent / "results"


def masks_and_boundaries(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Street-scene masks (SyntheticStreets) and their precomputed r = 2 boundary GT, [B, H, W] and [B, K, H, W]."""
    from sbcb.boundaries import mask_to_boundaries
    from sbcb.data import SyntheticStreets

    ds = SyntheticStreets(num_samples=batch, size=size, seed=0)
    masks = np.stack([ds[i]["label"] for i in range(batch)]).astype(np.int64)
    bnd = np.stack([mask_to_boundaries(m, K) for m in masks]).astype(bool)
    return torch.from_numpy(masks), torch.from_numpy(bnd)


def build(encoder: str, seed: int = 0) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    return smp.DeepLabV3Plus(encoder, encoder_weights=None, classes=K)


def step_baseline(model, x, mask, bnd) -> None:
    F.cross_entropy(model(x), mask, ignore_index=255).backward()
    sgd(model)


def step_taps_only(net, x, mask, bnd) -> None:
    """The wrapper's hooks around the user's forward, baseline loss only: the cost of tapping itself."""
    with net._taps.capture() as grab:
        logits = net.model(x)
    grab()
    F.cross_entropy(logits, mask, ignore_index=255).backward()
    sgd(net.model)


def step_sbcb(net, x, mask, bnd) -> None:
    sum(net(x, mask, boundaries=bnd).values()).backward()
    sgd(net)


def step_sbcb_otf(net, x, mask, bnd) -> None:
    sum(net(x, mask).values()).backward()
    sgd(net)


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call.

    With one intra-op thread the CPU time counts the work done and not the time spent waiting for a core, so on a
    shared machine it is the steadier of the two; both are reported.
    """
    w0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0


def bench_encoder(encoder: str, *, size: tuple[int, int], batch: int, reps: int, warmup: int) -> dict:
    from sbcb.wrapper import SBCB

    x = torch.randn(batch, 3, *size)
    mask, bnd = masks_and_boundaries(batch, size)
    baseline = build(encoder).train()
    sbcb = SBCB(build(encoder), num_classes=K).train()
    sbcb_half = SBCB(build(encoder), num_classes=K, head_scale=0.5).train()
    configs = {
        "baseline": (step_baseline, baseline),
        "taps_only": (step_taps_only, sbcb),
        "sbcb_gt_given": (step_sbcb, sbcb),
        "sbcb_gt_on_device": (step_sbcb_otf, sbcb),
        "sbcb_half_gt_given": (step_sbcb, sbcb_half),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for rep in range(warmup + reps):
        for name, (fn, model) in configs.items():
            t = timed(fn, model, x, mask, bnd)
            if rep >= warmup:
                times[name].append(t)
    # GT generation alone by the torch twin (the path of GPU masks; CPU masks take the numba scan in loss())
    from sbcb.boundaries import mask_to_boundaries_torch

    gt_times = [timed(mask_to_boundaries_torch, mask, K)[1] for _ in range(max(3, reps // 2))]

    # inference: the stripped model vs a never-wrapped twin
    stripped = SBCB(build(encoder), num_classes=K).strip().eval()
    twin = build(encoder).eval()
    infer: dict[str, list[tuple[float, float]]] = {"baseline": [], "stripped": []}
    with torch.no_grad():
        for rep in range(warmup + reps):
            for name, model in (("baseline", twin), ("stripped", stripped)):
                t = timed(model, x)
                if rep >= warmup:
                    infer[name].append(t)
        same_output = torch.equal(stripped(x), twin(x))

    def median(v: list[tuple[float, float]], i: int) -> float:
        return statistics.median(t[i] for t in v)

    def ratio(a: list[tuple[float, float]], b: list[tuple[float, float]], i: int) -> float:
        return statistics.median(ai[i] / bi[i] for ai, bi in zip(a, b))

    base = times["baseline"]
    return {
        "encoder": encoder,
        "train_step_median_wall_s": {k: median(v, 0) for k, v in times.items()},
        "train_step_median_cpu_s": {k: median(v, 1) for k, v in times.items()},
        "train_step_ratio_wall": {k: ratio(v, base, 0) for k, v in times.items() if k != "baseline"},
        "train_step_ratio_cpu": {k: ratio(v, base, 1) for k, v in times.items() if k != "baseline"},
        "gt_on_device_median_cpu_s": statistics.median(gt_times),
        "inference_median_wall_s": {k: median(v, 0) for k, v in infer.items()},
        "inference_median_cpu_s": {k: median(v, 1) for k, v in infer.items()},
        "inference_ratio_wall": ratio(infer["stripped"], infer["baseline"], 0),
        "inference_ratio_cpu": ratio(infer["stripped"], infer["baseline"], 1),
        "params": {
            "baseline": sum(p.numel() for p in twin.parameters()),
            "stripped": sum(p.numel() for p in stripped.parameters()),
            "sbcb_head": sum(p.numel() for p in sbcb.head.parameters()),
        },
        "stripped_output_equal_to_baseline": same_output,
        "sides": [f"{i.name} {i.num_chs}ch 1/{i.reduction}" for i in sbcb.side_infos],
    }


def head_breakdown(*, reps: int, threads: int) -> dict:
    """Per-phase CPU ms of head forward, loss and backward: library path vs the slow reference, interleaved."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "heads"))
    import reference_sbd as ref  # test-only module: the literal formulation

    from sbcb.heads import build_head
    from sbcb.losses import binary_target, sbd_loss_terms

    size, batch = (256, 512), 2
    _, bnd = masks_and_boundaries(batch, size)
    cases = {
        "resnet18 casenet": ([64, 64, 128, 512], [2, 4, 8, 16], "casenet", K),
        "resnet50 casenet": ([64, 256, 512, 2048], [2, 4, 8, 16], "casenet", K),
        "resnet18 bbcb": ([64, 64, 128, 512], [2, 4, 8, 16], "casenet", 1),
        "resnet18 dff": ([64, 64, 128, 512], [2, 4, 8, 16], "dff", K),
    }

    def ref_terms(out, gt, binary):
        if binary:
            return {key: ref.binary_loss(v, binary_target(gt)) for key, v in out.items()}
        return {key: 5.0 * ref.multilabel_loss(v, gt) for key, v in out.items()}

    def phases(use_ref: bool, head, feats, gt, name: str, k: int) -> tuple[float, float, float]:
        t0 = time.process_time()
        out = ref.head_outputs(head, feats, size) if use_ref else head(feats, size)
        t1 = time.process_time()
        terms = ref_terms(out, gt, k == 1) if use_ref else sbd_loss_terms(out, gt, plan=head.loss_plan, binary=k == 1)
        loss = sum(terms.values())
        t2 = time.process_time()
        loss.backward()
        return t1 - t0, t2 - t1, time.process_time() - t2

    results = {}
    for label, (chs, red, name, k) in cases.items():
        torch.manual_seed(0)
        feats = [torch.randn(batch, c, size[0] // r, size[1] // r, requires_grad=True) for c, r in zip(chs, red)]
        head = build_head(name, chs, k).train()
        gt = bnd

        times: dict[str, list] = {"fast": [], "reference": []}
        for rep in range(reps + 1):
            for key in ("fast", "reference"):
                t = phases(key == "reference", head, feats, gt, name, k)
                if rep:
                    times[key].append(t)
        results[label] = {
            key: {
                phase: 1e3 * statistics.median(t[i] for t in v)
                for i, phase in enumerate(("head_forward", "loss", "backward"))
            }
            | {"total": 1e3 * statistics.median(sum(t) for t in v)}
            for key, v in times.items()
        }
        results[label]["total_ratio_fast_to_reference"] = statistics.median(
            sum(a) / sum(b) for a, b in zip(times["fast"], times["reference"])
        )
    return {"input": [batch, 3, *size], "num_classes": K, "reps": reps, "threads": threads, "cases": results}


ROWS = {
    # name: (architecture, encoder, batch, (H, W), K, threads); smp DeepLabV3+ at its default output stride 16
    "deeplabv3plus_r50_2x256x512_k19": ("deeplabv3plus", "resnet50", 2, (256, 512), 19, 2),
    "deeplabv3plus_r18_8x176x240_k11": ("deeplabv3plus", "resnet18", 8, (176, 240), 11, 1),
    "deeplabv3plus_r18_8x240x320_k11": ("deeplabv3plus", "resnet18", 8, (240, 320), 11, 1),
    "lraspp_mbv3l_8x176x240_k11": ("lraspp", "mobilenet_v3_large", 8, (176, 240), 11, 1),
    # the default `sbcb demo` step (not an issue row; run it with --only demo)
    "demo_deeplabv3plus_r18_4x128x256_k11": ("deeplabv3plus", "resnet18", 4, (128, 256), 11, 2),
}
EXTRA_VARIANTS_ROW = "deeplabv3plus_r18_8x176x240_k11"


def build_row_model(arch: str, encoder: str, k: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if arch == "lraspp":
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=k)
    import segmentation_models_pytorch as smp

    return smp.DeepLabV3Plus(encoder, encoder_weights=None, classes=k)


def row_batch(batch: int, size: tuple[int, int], k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, SyntheticStreets masks [B, H, W] and their bit-packed r = 2 GT [B, ceil(K/8), H, W] (worker-made)."""
    from sbcb.boundaries import mask_to_boundaries, pack_boundaries
    from sbcb.data import SyntheticStreets

    ds = SyntheticStreets(num_samples=batch, size=size, seed=0)
    masks = np.stack([ds[i]["label"] for i in range(batch)]).astype(np.int64)
    packed = np.stack([pack_boundaries(mask_to_boundaries(m, k)) for m in masks])
    images = torch.from_numpy(np.stack([ds[i]["image"] for i in range(batch)])).permute(0, 3, 1, 2).float() / 255
    return (images - 0.5) / 0.25, torch.from_numpy(masks), torch.from_numpy(packed)


def _train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x, mask, bands) -> None:
    sum(net(x, mask, boundaries=bands).values()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def bench_row(name: str, *, reps: int, warmup: int, threads: int | None) -> dict:
    from sbcb import SBCB, Segmentor

    arch, encoder, batch, size, k, row_threads = ROWS[name]
    threads = threads or row_threads
    torch.set_num_threads(threads)
    x, mask, packed = row_batch(batch, size, k)
    nets: dict[str, tuple[torch.nn.Module, bool]] = {
        "baseline": (Segmentor(build_row_model(arch, encoder, k), num_classes=k), False),
        "sbcb_gt_in_step": (SBCB(build_row_model(arch, encoder, k), num_classes=k), False),
        "sbcb_gt_packed": (SBCB(build_row_model(arch, encoder, k), num_classes=k), True),
    }
    if name == EXTRA_VARIANTS_ROW:
        nets["dff_gt_packed"] = (SBCB(build_row_model(arch, encoder, k), num_classes=k, head="dff"), True)
        nets["bbcb_gt_packed"] = (SBCB(build_row_model(arch, encoder, k), num_classes=k, binary=True), True)
        nets["half_gt_packed"] = (SBCB(build_row_model(arch, encoder, k), num_classes=k, head_scale=0.5), True)
    optimizers = {key: torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9) for key, (net, _) in nets.items()}

    def step(key: str) -> tuple[float, float]:
        net, given = nets[key]
        w0, c0 = time.perf_counter(), time.process_time()
        _train_step(net, optimizers[key], x, mask, packed if given else None)
        return time.perf_counter() - w0, time.process_time() - c0

    for net, _ in nets.values():
        net.train()
    times: dict[str, list[tuple[float, float]]] = {key: [] for key in nets}
    for rep in range(warmup + reps):
        for key in nets:
            t = step(key)
            if rep >= warmup:
                times[key].append(t)
    base = times["baseline"]
    result: dict[str, Any] = {"model": f"{arch} {encoder}", "input": [batch, 3, *size], "num_classes": k}
    result["threads"] = threads
    # wall time is what the targets are about; process CPU time is the steadier one on a busy machine
    for i, clock in enumerate(("wall", "cpu")):
        ratios = {key: [a[i] / b[i] for a, b in zip(v, base)] for key, v in times.items() if key != "baseline"}
        result[clock] = {
            "step_median_s": {key: statistics.median(t[i] for t in v) for key, v in times.items()},
            "step_min_max_s": {key: [min(t[i] for t in v), max(t[i] for t in v)] for key, v in times.items()},
            "ratio_median": {key: statistics.median(v) for key, v in ratios.items()},
            "ratio_min_max": {key: [min(v), max(v)] for key, v in ratios.items()},
        }
    return result


def step_rows(*, reps: int, warmup: int, threads: int | None, only: list[str] | None) -> dict:
    names = [n for n in ROWS if any(o in n for o in only)] if only else [n for n in ROWS if not n.startswith("demo")]
    return {
        "setting": {
            "step": "sum(net(images, masks).values()).backward(); SGD(momentum=0.9).step(); zero_grad",
            "reps": reps,
            "warmup": warmup,
            "device": "cpu",
            "load_average_at_start": os.getloadavg(),
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count()},
        "rows": {n: bench_row(n, reps=reps, warmup=warmup, threads=threads) for n in names},
    }


def profile_row(name: str, *, steps: int, threads: int | None, top: int = 15) -> list[str]:
    """torch.profiler self-CPU time per op over `steps` training steps of a row: baseline vs SBCB (packed GT).

    The ops are ranked by what SBCB adds (SBCB minus baseline self time, summed over the steps), so the table
    reads as "where the overhead goes". One process, one thread count, baseline first, then SBCB.
    """
    from torch.profiler import ProfilerActivity, profile

    from sbcb import SBCB, Segmentor

    arch, encoder, batch, size, k, row_threads = ROWS[name]
    threads = threads or row_threads
    torch.set_num_threads(threads)
    x, mask, packed = row_batch(batch, size, k)
    nets = {
        "baseline": (Segmentor(build_row_model(arch, encoder, k), num_classes=k), None),
        "sbcb": (SBCB(build_row_model(arch, encoder, k), num_classes=k), packed),
    }
    totals: dict[str, dict[str, float]] = {}  # op -> self CPU seconds per step
    wall: dict[str, float] = {}
    for key, (net, bands) in nets.items():
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)

        _train_step(net, opt, x, mask, bands)  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                _train_step(net, opt, x, mask, bands)
            wall[key] = (time.perf_counter() - t0) / steps
        totals[key] = {ev.key: ev.self_cpu_time_total / 1e6 / steps for ev in prof.key_averages()}
    extra = {op: totals["sbcb"].get(op, 0.0) - totals["baseline"].get(op, 0.0) for op in totals["sbcb"]}
    lines = [
        f"# Where the SBCB step's extra time goes: {name}",
        "",
        f"Command: `python benchmarks/wrapper_overhead.py --profile {name} --steps {steps}`; {threads} thread(s), "
        f"torch.profiler self CPU time per step (profiler overhead included), load average at start "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
        f"Step under the profiler: baseline {wall['baseline']:.3f} s, SBCB (CASENet, packed GT) {wall['sbcb']:.3f} s "
        f"(**{wall['sbcb'] / wall['baseline']:.2f}x**); summed self time: baseline "
        f"{sum(totals['baseline'].values()):.3f} s, SBCB {sum(totals['sbcb'].values()):.3f} s.",
        "",
        "| op | baseline (ms) | SBCB (ms) | extra (ms) |",
        "|---|---|---|---|",
    ]
    for op, d in sorted(extra.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(
            f"| `{op}` | {1e3 * totals['baseline'].get(op, 0.0):.1f} | {1e3 * totals['sbcb'][op]:.1f} "
            f"| {1e3 * d:+.1f} |"
        )
    return lines


def rows_markdown(out: dict) -> list[str]:
    s = out["setting"]
    lines = [
        "# Training step: SBCB / baseline, side by side (CPU)",
        "",
        f"{s['reps']} interleaved repetitions after {s['warmup']} warm-up; ratio = median of per-repetition ratios "
        f"(min-max in brackets); load average at start {', '.join(f'{v:.1f}' for v in s['load_average_at_start'])} "
        f"on {out['versions']['cpus']} cores. Command: `python benchmarks/wrapper_overhead.py --rows --reps "
        f"{s['reps']}`. Rerun it on an idle machine: with a load average above the core count both clocks are inflated "
        "by contention, 2-thread rows (ResNet-50) most.",
        "",
        "| row | threads | variant | wall step (s) | wall ratio | CPU step (s) | CPU ratio |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict, clock: str, key: str) -> str:
        c = r[clock]
        step = f"{c['step_median_s'][key]:.3f}"
        if key == "baseline":
            return f"{step} | 1"
        lo, hi = c["ratio_min_max"][key]
        return f"{step} | **{c['ratio_median'][key]:.3f}** [{lo:.2f}-{hi:.2f}]"

    for name, r in out["rows"].items():
        for key in r["wall"]["step_median_s"]:
            lines.append(f"| {name} | {r['threads']} | {key} | {cell(r, 'wall', key)} | {cell(r, 'cpu', key)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (3 + 1 warm-up)")
    parser.add_argument("--full", action="store_true", help="also ResNet-50")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 1; --rows: per row)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--breakdown", action="store_true", help="SBD head + loss alone: fast path vs reference")
    parser.add_argument("--rows", action="store_true", help="the issue-17 rows: whole training steps, side by side")
    parser.add_argument("--only", nargs="*", help="--rows: only rows whose name contains one of these")
    parser.add_argument("--profile", choices=sorted(ROWS), help="profile one row's steps: where SBCB's time goes")
    parser.add_argument("--steps", type=int, default=5, help="--profile: profiled steps per variant")
    args = parser.parse_args()
    if args.profile:
        lines = profile_row(args.profile, steps=args.steps, threads=args.threads)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"step_profile_{args.profile}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    if args.rows:
        threads = args.threads
        out = step_rows(reps=args.reps or 7, warmup=2, threads=threads, only=args.only)
        RESULTS.mkdir(exist_ok=True)
        stem = "step_overhead" if not args.only and threads is None else "step_overhead_partial"
        (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2))
        lines = rows_markdown(out)
        (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    args.threads = args.threads or 1
    torch.set_num_threads(args.threads)
    if args.breakdown:
        out = head_breakdown(reps=args.reps or 5, threads=args.threads)
        out["note"] = "process CPU ms, medians of interleaved repetitions; shared, contended machine"
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "sbd_head_breakdown.json").write_text(json.dumps(out, indent=2))
        lines = [
            "# SBD head + loss alone (CPU ms, median; fast path vs slow reference, interleaved)",
            "",
            f"Input {out['input']}, K={K}, {args.threads} thread(s), {out['reps']} repetitions, contended machine.",
            "",
            "| case | path | head forward | loss | backward | total | fast / reference |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, r in out["cases"].items():
            for key in ("reference", "fast"):
                p = r[key]
                ratio = f"{r['total_ratio_fast_to_reference']:.2f}" if key == "fast" else ""
                lines.append(
                    f"| {label} | {key} | {p['head_forward']:.0f} | {p['loss']:.0f} | {p['backward']:.0f} "
                    f"| {p['total']:.0f} | {ratio} |"
                )
        (RESULTS / "sbd_head_breakdown.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    reps = args.reps or (3 if args.quick else 10)
    warmup = 1 if args.quick else 2
    size, batch = (256, 512), 2
    encoders = ["resnet18"] + (["resnet50"] if args.full else [])
    results = {
        "setting": {
            "model": "smp DeepLabV3Plus",
            "input": [batch, 3, *size],
            "num_classes": K,
            "head": "casenet",
            "reps": reps,
            "warmup": warmup,
            "threads": args.threads,
            "device": "cpu",
            "note": "interleaved repetitions; ratio = median of per-repetition ratios; shared, contended machine",
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "runs": [bench_encoder(e, size=size, batch=batch, reps=reps, warmup=warmup) for e in encoders],
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "wrapper_overhead_quick" if args.quick else "wrapper_overhead"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    lines = [
        "# SBCB wrapper overhead (CPU)",
        "",
        f"smp DeepLabV3+, input {batch}x3x{size[0]}x{size[1]}, K={K}, CASENet head, {args.threads} thread(s), "
        f"{reps} interleaved repetitions after {warmup} warm-up; ratios are medians of per-repetition ratios.",
        "",
        "| encoder | config | step CPU (s) | ratio CPU | step wall (s) | ratio wall |",
        "|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        for name in run["train_step_median_cpu_s"]:
            rc = run["train_step_ratio_cpu"].get(name, 1.0)
            rw = run["train_step_ratio_wall"].get(name, 1.0)
            c, w = run["train_step_median_cpu_s"][name], run["train_step_median_wall_s"][name]
            lines.append(f"| {run['encoder']} | {name} | {c:.3f} | {rc:.3f} | {w:.3f} | {rw:.3f} |")
    lines += [
        "",
        "| encoder | GT by the torch twin (GPU path), CPU (s) | inference CPU baseline / stripped (s) | ratio CPU "
        "| ratio wall | params equal, outputs equal |",
        "|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        inf = run["inference_median_cpu_s"]
        eq = run["params"]["baseline"] == run["params"]["stripped"] and run["stripped_output_equal_to_baseline"]
        lines.append(
            f"| {run['encoder']} | {run['gt_on_device_median_cpu_s']:.3f} | {inf['baseline']:.3f} / "
            f"{inf['stripped']:.3f} | {run['inference_ratio_cpu']:.3f} | {run['inference_ratio_wall']:.3f} "
            f"| {eq} ({run['params']['baseline']:,}) |"
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
