"""Inference cost of the fused models (Tab. 18) and GSCNN (Tab. 6) against the unfused baselines, side by side.

Every model is built from its recipe in ``configs/`` (ResNet-101, K = 19) and deployed as `sbcb export` deploys it
(`sbcb.models.strip_model`: Channel-Merge drops its training-only parts, Two-Stream and GSCNN keep everything).

- Parameters: training-time and deployed, exact (built on the meta device).
- GMACs of one deployed forward at ``--size`` (default 512x1024, the paper's Tab. 1a size), counted as in
  ``benchmarks/model_costs.py`` (mmcv-style leaf hooks), on the meta device; the conv + matmul part is also taken from
  `torch.utils.flop_counter.FlopCounterMode` as a check.
- CPU latency of the deployed model: batch 1 at ``--latency-size`` (default 256x512, half the Cityscapes frame; a
  ResNet-101 forward at 512x1024 takes over a minute on this project's shared 2-core machine), eval mode,
  `torch.inference_mode`, random weights. The models are timed round-robin (warm-up round, then ``--repeats``
  rounds), so machine load hits every model alike; the median is reported, and the ratio to the baseline is taken
  from the same rounds.

GSCNN rows are compared with DeepLabV3+ (Tab. 6's baseline). GSCNN + SBCB deploys the plain GSCNN (the SBD head is
training-only), so it has the GSCNN row's inference cost. The "+Canny" row runs OpenCV Canny (the recipe's
``canny: cv2``) for the latency; its GMACs are counted with ``canny="torch"`` (meta tensors can't go through OpenCV).

Usage::

    .venv/bin/python benchmarks/fusion_costs.py [--size H W] [--latency-size H W] [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_costs import MacCounter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
K = 19

# (label, recipe, baseline label, paper mIoU of the row)
ROWS = [
    ("PSPNet", "cityscapes_pspnet_r101_baseline", None, "77.6"),
    ("PSPNet Channel-Merge", "cityscapes_pspnet_r101_sbcb_casenet_channel_merge", "PSPNet", "79.1"),
    ("DeepLabV3+", "cityscapes_dlv3p_r101_baseline", None, "79.5"),
    ("DeepLabV3+ Channel-Merge", "cityscapes_dlv3p_r101_sbcb_casenet_channel_merge", "DeepLabV3+", "80.5"),
    ("DeepLabV3+ Two-Stream", "cityscapes_dlv3p_r101_sbcb_casenet_two_stream", "DeepLabV3+", "80.5"),
    ("GSCNN (= GSCNN + SBCB deployed)", "cityscapes_gscnn_r101_baseline", "DeepLabV3+", "80.5 (+SBCB 80.9)"),
    ("GSCNN +Canny", "cityscapes_gscnn_r101_canny", "DeepLabV3+", "80.6"),
    ("GSCNN SBD shape stream", "cityscapes_gscnn_r101_sbd_stream", "DeepLabV3+", "80.0"),
]


def build(recipe: str, *, meta: bool, **override: Any) -> tuple[nn.Module, nn.Module]:
    """(the model as trained, the model as deployed) from a recipe."""
    from sbcb.models import build_model, strip_model
    from sbcb.train.config import Config, resolve
    from sbcb.train.run import model_kwargs

    flat = resolve({}, config_path=ROOT / "configs" / f"{recipe}.yaml").flat() | override
    kwargs = model_kwargs(Config.from_flat(flat), K)
    torch.manual_seed(0)
    if meta:
        with torch.device("meta"):
            model = build_model(**kwargs)
    else:
        model = build_model(**kwargs)
    return model, strip_model(model).eval()


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def macs(recipe: str, size: tuple[int, int]) -> dict[str, int]:
    """Parameters and GMACs of one deployed forward, on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    override = {"arch_kwargs": {"canny": "torch"}} if recipe.endswith("_canny") else {}
    trained, deployed = build(recipe, meta=True, **override)
    counter = MacCounter(deployed)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        deployed(torch.empty(1, 3, *size, device="meta"))
    counter.close()
    return {
        "params_train": count(trained),
        "params_deployed": count(deployed),
        "macs": counter.total(),
        "macs_conv_matmul": flops.get_total_flops() // 2,
    }


def latencies(recipes: list[str], size: tuple[int, int], repeats: int) -> dict[str, list[float]]:
    """Seconds per deployed forward, round-robin over the models (the first round is a warm-up)."""
    models = {r: build(r, meta=False)[1] for r in recipes}
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {r: [] for r in recipes}
    for round_ in range(repeats + 1):
        for r, model in models.items():
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(x)
                dt = time.perf_counter() - t0
            if round_:
                times[r].append(dt)
            print(f"  round {round_} {r}: {dt:.2f} s", flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"), help="GMACs input")
    p.add_argument("--latency-size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"))
    p.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up round")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-latency", action="store_true", help="parameters and GMACs only (seconds)")
    p.add_argument("--out", type=Path, default=RESULTS / "fusion_costs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, lsize = tuple(args.size), tuple(args.latency_size)
    recipes = [recipe for _, recipe, _, _ in ROWS]
    cost = {r: macs(r, size) for r in recipes}
    t0 = time.perf_counter()
    lat = {} if args.no_latency else latencies(recipes, lsize, args.repeats)
    seconds = time.perf_counter() - t0

    by_label = {label: recipe for label, recipe, _, _ in ROWS}
    lines = [
        "# fusion_costs",
        "",
        f"`.venv/bin/python benchmarks/fusion_costs.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(
            " `", "`"
        ),
        "",
        f"ResNet-101, K = 19, deployed models (what `sbcb export` writes). GMACs at {size[0]}x{size[1]} (mmcv-style, "
        f"as `benchmarks/model_costs.py`); CPU latency at {lsize[0]}x{lsize[1]}, batch 1, {args.threads} thread(s), "
        f"median of {args.repeats} round-robin rounds after a warm-up ({seconds:.0f} s in all); torch "
        f"{torch.__version__}, {platform.platform()}, {platform.processor() or 'cpu'}.",
        "",
        "| model | paper mIoU | params train (M) | params deployed (M) | +params vs base | GMACs | +GMACs vs base "
        "| CPU latency (s) | latency / base |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for label, recipe, base_label, paper in ROWS:
        c = cost[recipe]
        base = cost[by_label[base_label]] if base_label else c
        dp = c["params_deployed"] - base["params_deployed"]
        dm = (c["macs"] - base["macs"]) / 1e9
        row: dict[str, Any] = {"model": label, "recipe": recipe, "baseline": base_label, "paper_miou": paper, **c}
        lat_txt = ratio_txt = "—"
        if lat:
            med = statistics.median(lat[recipe])
            row["latency_s"] = lat[recipe]
            lat_txt = f"{med:.2f}"
            if base_label:
                # ratio per round (same machine state), then the median of the ratios
                ratios = [a / b for a, b in zip(lat[recipe], lat[by_label[base_label]])]
                row["latency_ratio"] = ratios
                ratio_txt = f"{statistics.median(ratios):.2f}x"
        lines.append(
            f"| {label} | {paper} | {c['params_train'] / 1e6:.2f} | {c['params_deployed'] / 1e6:.2f} | "
            + (f"{dp / 1e6:+.2f}M ({100 * dp / base['params_deployed']:+.1f}%)" if base_label else "base")
            + f" | {c['macs'] / 1e9:.1f} | "
            + (f"{dm:+.1f} ({100 * dm * 1e9 / base['macs']:+.1f}%)" if base_label else "base")
            + f" | {lat_txt} | {ratio_txt} |"
        )
        rows.append(row)
    lines += [
        "",
        "Conv + matmul GMACs from `FlopCounterMode` (aten FLOPs / 2), an independent check of the conv part:",
        "",
        "| model | conv + matmul GMACs |",
        "|---|---|",
    ]
    lines += [f"| {label} | {cost[recipe]['macs_conv_matmul'] / 1e9:.1f} |" for label, recipe, _, _ in ROWS]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"size": size, "latency_size": lsize, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
