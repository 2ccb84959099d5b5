"""Training-step cost of each SBD head on the CPU, against the backbone's own forward + backward.

For an R50-d8-like feature pyramid (random features with the channels and strides of timm ``resnet50`` at
``output_stride=8``), time one head forward + SBD loss (``sbd_loss_terms``, GT resized to the output size) + backward
into the features, at full, half and quarter output resolution. The reference is a ResNet-50 (timm,
``pretrained=False``, ``output_stride=8``) forward + backward on the same input size. All configurations are timed
interleaved, round by round, so that machine contention hits them alike; ratios use each configuration's
fastest round (contention only ever adds time).

Usage:
    .venv/bin/python benchmarks/heads_speed.py            # 256x512, 5 rounds (DDS: 1 round, full output only)
    .venv/bin/python benchmarks/heads_speed.py --quick    # 128x256, 1 round, no DDS
    .venv/bin/python benchmarks/heads_speed.py --full     # + 512x1024, DDS at every output size (slow: ~1 h)

Writes benchmarks/results/heads_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from sbcb.heads import build_head
from sbcb.losses import sbd_loss_terms

K = 19
# timm resnet50, features_only, output_stride=8: stem, layer1..layer4
R50_CHANNELS = [64, 256, 512, 1024, 2048]
R50_STRIDES = [2, 4, 8, 8, 8]
DEFAULT_SIDES = [0, 1, 2, 4]  # sides 1, 2, 3, 5 (spec §5.1); DDS uses all five
HEADS = [  # (label, registry name, num_classes, binary loss)
    ("casenet", "casenet", K, False),
    ("dff", "dff", K, False),
    ("bbcb", "casenet", 1, True),
    ("dds", "dds", K, False),
]
RESULTS = Path(__file__).resolve().parent / "results"


def r50_d8() -> torch.nn.Module:
    try:
        import timm
    except ImportError as e:
        raise ImportError('this benchmark needs timm: pip install "sbcb[timm]"') from e
    model = timm.create_model("resnet50", features_only=True, output_stride=8, pretrained=False)
    assert model.feature_info.channels() == R50_CHANNELS and model.feature_info.reduction() == R50_STRIDES
    return model


def forward_gmacs(make_model, make_inputs, call) -> float:
    """Forward multiply-accumulates (1e9) of one call, counted on the meta device: exact and free of noise."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model, inputs = make_model(), make_inputs()
        with FlopCounterMode(display=False) as counter:
            call(model, inputs)
    return counter.get_total_flops() / 2e9


def backbone_gmacs(size: tuple[int, int], batch: int) -> float:
    return forward_gmacs(r50_d8, lambda: torch.empty(batch, 3, *size), lambda m, x: m(x))


def head_gmacs(name: str, k: int, sides: list[int], size: tuple[int, int], scale: int, batch: int) -> float:
    channels = [R50_CHANNELS[i] for i in sides]
    strides = [R50_STRIDES[i] for i in sides]
    out_size = (size[0] // scale, size[1] // scale)
    return forward_gmacs(
        lambda: build_head(name, channels, k),
        lambda: [torch.empty(batch, c, size[0] // s, size[1] // s) for c, s in zip(channels, strides)],
        lambda head, feats: head(feats, out_size),
    )


def backbone_step(size: tuple[int, int], batch: int):
    model = r50_d8().train()
    x = torch.randn(batch, 3, *size)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        feats = model(x)
        sum(f.float().mean() for f in feats).backward()

    return step


def head_step(name: str, k: int, binary: bool, sides: list[int], size: tuple[int, int], scale: int, batch: int):
    channels = [R50_CHANNELS[i] for i in sides]
    strides = [R50_STRIDES[i] for i in sides]
    head = build_head(name, channels, k).train()
    feats = [torch.randn(batch, c, size[0] // s, size[1] // s, requires_grad=True) for c, s in zip(channels, strides)]
    gt = torch.rand(batch, K, *size) < 0.1  # ~ Cityscapes-like multi-label positive rate at 512x1024
    out_size = (size[0] // scale, size[1] // scale)

    def step() -> None:
        head.zero_grad(set_to_none=True)
        for f in feats:
            f.grad = None
        terms = sbd_loss_terms(head(feats, out_size), gt, plan=head.loss_plan, binary=binary)
        sum(terms.values()).backward()

    return step


def timed(step) -> tuple[float, float]:
    """Wall time and process CPU time (summed over threads) of one call, in ms.

    On a shared machine the wall time includes waiting for cores; the CPU time counts only the work this process
    got done, so its ratios are the steadier ones.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def run(sizes: list[tuple[int, int]], *, rounds: int, dds_rounds: int, dds_scales: list[int], batch: int) -> dict:
    rows = []
    for size in sizes:
        configs = [("backbone R50-d8", "-", 1, backbone_step(size, batch), rounds)]
        macs = [backbone_gmacs(size, batch)]
        for label, name, k, binary in HEADS:
            sides = list(range(5)) if name == "dds" else DEFAULT_SIDES
            for scale in dds_scales if name == "dds" else [1, 2, 4]:
                n = dds_rounds if name == "dds" else rounds
                configs.append((label, f"1/{scale}", scale, head_step(name, k, binary, sides, size, scale, batch), n))
                macs.append(head_gmacs(name, k, sides, size, scale, batch))
        wall: list[list[float]] = [[] for _ in configs]
        cpu: list[list[float]] = [[] for _ in configs]
        for _, _, _, step, n in configs:  # warm-up (allocator, oneDNN kernels); DDS is too slow to repeat
            if n == rounds:
                step()
        for r in range(max(rounds, dds_rounds)):
            for i, (label, res, _, step, n) in enumerate(configs):
                if r < n:
                    w, c = timed(step)
                    wall[i].append(w)
                    cpu[i].append(c)
                    print(f"  {size[0]}x{size[1]} round {r + 1}: {label:<16} {res:>4} {w:9.0f} ms wall {c:9.0f} ms cpu")
        # Contention only ever adds time, so the fastest round is the best estimate of a step's own cost.
        backbone_wall, backbone_cpu = min(wall[0]), min(cpu[0])
        full_cpu: dict[str, float] = {}
        for i, (label, res, scale, _, _) in enumerate(configs):
            w, c = min(wall[i]), min(cpu[i])
            if scale == 1:
                full_cpu[label] = c
            rows.append(
                {
                    "input": f"{size[0]}x{size[1]}",
                    "what": label,
                    "output": res,
                    "wall_ms_min": round(w, 1),
                    "cpu_ms_min": round(c, 1),
                    "cpu_ms_median": round(statistics.median(cpu[i]), 1),
                    "rounds": len(wall[i]),
                    "fwd_gmacs": round(macs[i], 3),
                    "x_backbone_macs": round(macs[i] / macs[0], 4),
                    "x_backbone_cpu": round(c / backbone_cpu, 3),
                    "x_backbone_wall": round(w / backbone_wall, 3),
                    "x_full_output_cpu": round(c / full_cpu[label], 3) if i else None,
                }
            )
    return {"rows": rows}


def to_markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# SBD head training-step cost on the CPU",
        "",
        f"`{meta['command']}` on {meta['date']}, torch {meta['torch']}, {meta['threads']} threads, batch "
        f"{meta['batch']}, K = {K}. Head = forward + `sbd_loss_terms` + backward into the features; backbone = "
        "timm resnet50 (output_stride 8) forward + backward. Fastest of interleaved rounds on a shared, "
        "contended 2-core machine (contention only adds time): read the ratios, not the absolute ms. "
        "CPU ms = process CPU time summed over threads (steadier under contention than wall time). GMACs: forward "
        "multiply-accumulates of convs/matmuls, counted exactly on the meta device (no noise; elementwise ops, "
        "resizes and the loss are not counted).",
        "",
        "| input | what | output res | wall ms (min) | CPU ms (min) | CPU ms (median) | rounds | x backbone (CPU) "
        "| x backbone (wall) | x own full-res (CPU) | fwd GMACs | x backbone (MACs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        full = "-" if r["x_full_output_cpu"] is None else f"{r['x_full_output_cpu']:.2f}"
        lines.append(
            f"| {r['input']} | {r['what']} | {r['output']} | {r['wall_ms_min']:.0f} | {r['cpu_ms_min']:.0f} "
            f"| {r['cpu_ms_median']:.0f} | {r['rounds']} | {r['x_backbone_cpu']:.3f} | {r['x_backbone_wall']:.3f} "
            f"| {full} | {r['fwd_gmacs']:.2f} | {r['x_backbone_macs']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="128x256, one round (smoke run)")
    mode.add_argument("--full", action="store_true", help="add 512x1024 and DDS at every output size (slow)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 5, quick 1)")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.quick:  # no DDS: one DDS step alone takes about a minute here
        sizes, rounds, dds_rounds, dds_scales = [(128, 256)], args.rounds or 1, 0, []
    elif args.full:
        sizes, rounds = [(256, 512), (512, 1024)], args.rounds or 3
        dds_rounds, dds_scales = rounds, [1, 2, 4]
    else:  # DDS once, full output only: its BasicBlocks (at the features' resolution) dominate at any output size
        sizes, rounds, dds_rounds, dds_scales = [(256, 512)], args.rounds or 5, 1, [1]
    result = run(sizes, rounds=rounds, dds_rounds=dds_rounds, dds_scales=dds_scales, batch=args.batch)
    command = "python benchmarks/heads_speed.py" + (" --quick" if args.quick else " --full" if args.full else "")
    result["meta"] = {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batch": args.batch,
        "num_classes": K,
        "gt_positive_rate": 0.1,
        "note": "shared 2-core machine under load from other jobs; ratios measured side by side in one run",
    }
    print()
    print(to_markdown(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"heads_speed{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"heads_speed{suffix}.md").write_text(to_markdown(result))


if __name__ == "__main__":
    main()
