"""Real-time models (paper Tab. 16): training-step cost with and without SBCB, inference cost stripped vs baseline.

    .venv/bin/python benchmarks/realtime_models.py [--quick] [--device cpu|cuda] [--threads N]

Setting: BiSeNetV1 (ResNet-18 and ResNet-50), BiSeNetV2, STDC1, STDC2 built by `sbcb.models.build_segmentor`
(random init), K = 19, batch 2, 256x512 input (--quick: 128x256), plain SGD step. Baseline step = the model's own
recipe through `sbcb.Segmentor`, as `sbcb train` runs it (main CE + its auxiliary heads; STDC: + Detail Head),
``net(images, masks)`` summed. SBCB step = `SBCB(model, num_classes=19)` with
CASENet on the model's declared sides plus the model's own auxiliary losses (STDC: built without the Detail Head,
as the paper does), boundary GT precomputed as a DataLoader worker would. Inference = eval-mode forward of the
baseline model and of ``net.strip()``. All configurations of one model run in the same process and repetitions
are interleaved, so machine load hits them alike; ratios are medians of per-repetition ratios.

Results go to benchmarks/results/realtime_models[_quick][_cuda].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _protocol import sgd  # noqa: E402

K = 19
RESULTS = Path(__file__).parent / "results"
# name -> (arch, encoder)
MODELS = {
    "BiSeNetV1 R18": ("bisenetv1", "resnet18"),
    "BiSeNetV1 R50": ("bisenetv1", "resnet50"),
    "BiSeNetV2": ("bisenetv2", None),
    "STDC1": ("stdc1", None),
    "STDC2": ("stdc2", None),
}


def batch(size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [2, 3, H, W], SyntheticStreets masks [2, H, W] and their r = 2 boundary GT [2, K, H, W]."""
    from sbcb.boundaries import mask_to_boundaries
    from sbcb.data import SyntheticStreets

    ds = SyntheticStreets(num_samples=2, size=size, seed=0)
    masks = np.stack([ds[i]["label"] for i in range(2)]).astype(np.int64)
    bnd = np.stack([mask_to_boundaries(m, K) for m in masks]).astype(bool)
    images = torch.randn(2, 3, *size)
    return images.to(device), torch.from_numpy(masks).to(device), torch.from_numpy(bnd).to(device)


def build(arch: str, encoder: str | None, device: torch.device, **kwargs) -> torch.nn.Module:
    from sbcb.models import build_segmentor

    torch.manual_seed(0)
    return build_segmentor(arch, num_classes=K, encoder=encoder, factory_kwargs=kwargs).to(device)


def step(net, x, mask, bnd) -> None:
    """One training step through the call contract: ``net(images, masks)`` -> weighted losses, summed."""
    sum(net(x, mask, boundaries=bnd).values()).backward()
    sgd(net)


def infer(model, x, mask, bnd) -> None:
    with torch.no_grad():
        model(x)


def timed(fn: Callable, *args, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(name: str, arch: str, encoder: str | None, size, reps: int, device: torch.device) -> dict:
    from sbcb.segmentor import Segmentor
    from sbcb.wrapper import SBCB

    x, mask, bnd = batch(size, device)
    # the baseline trains as `sbcb train` trains it: through Segmentor (CE + the model's own auxiliary losses)
    baseline = Segmentor(build(arch, encoder, device), num_classes=K).to(device).train()
    sbcb_kwargs = {"detail_head": False} if arch.startswith("stdc") else {}
    net = SBCB(build(arch, encoder, device, **sbcb_kwargs), num_classes=K).to(device).train()
    stripped = build(arch, encoder, device, **sbcb_kwargs)
    stripped.load_state_dict(net.strip().state_dict())
    base_eval = build(arch, encoder, device).eval()
    stripped.eval()
    runs = {
        "step_baseline": (step, baseline),
        "step_sbcb": (step, net),
        "infer_baseline": (infer, base_eval),
        "infer_stripped": (infer, stripped),
    }
    for fn, model in runs.values():  # warm-up (allocator, first-call overheads)
        fn(model, x, mask, bnd)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for key, (fn, model) in runs.items():
            times[key].append(timed(fn, model, x, mask, bnd, device=device))
    step_ratio = statistics.median(s / b for s, b in zip(times["step_sbcb"], times["step_baseline"]))
    infer_ratio = statistics.median(s / b for s, b in zip(times["infer_stripped"], times["infer_baseline"]))
    aux = sum(
        n_params(m) for n, m in baseline.model.named_children() if n.startswith(("aux_head", "boosters", "detail_head"))
    )
    row = {
        "model": name,
        "params_baseline_train": n_params(baseline),
        "params_sbcb_train": n_params(net),
        "params_inference": n_params(baseline) - aux,
        "sbd_head_params": n_params(net.head),
        "sides": [f"{i.module} ({i.num_chs}ch, 1/{i.reduction})" for i in net.side_infos],
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "step_ratio_sbcb_over_baseline": step_ratio,
        "infer_ratio_stripped_over_baseline": infer_ratio,
    }
    print(f"{name}: step x{step_ratio:.2f}, inference x{infer_ratio:.2f}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="128x256 input, 3 repetitions")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 7, --quick 3)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = (128, 256) if args.quick else (256, 512)
    reps = args.reps or (3 if args.quick else 7)
    t0 = time.perf_counter()
    rows = [measure(name, arch, enc, size, reps, device) for name, (arch, enc) in MODELS.items()]
    meta = {
        "command": "benchmarks/realtime_models.py" + (" --quick" if args.quick else "") + f" --device {args.device}",
        "input": [2, 3, *size],
        "num_classes": K,
        "repetitions": reps,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    stem = "realtime_models" + ("_quick" if args.quick else "") + ("_cuda" if device.type == "cuda" else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# {stem}",
        "",
        f"`{meta['command']}` — input {size[0]}x{size[1]}, batch 2, K = {K}, {reps} interleaved repetitions, "
        f"{meta['device']} ({meta['threads']} threads), torch {meta['torch']}, {meta['wall_s']} s",
        "",
        "| model | params train: baseline / SBCB (M) | params inference (M) | SBD head | step baseline (s) "
        "| step SBCB (s) | step ratio | infer baseline (s) | infer stripped (s) | infer ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["median_s"]
        lines.append(
            f"| {r['model']} | {r['params_baseline_train'] / 1e6:.2f} / {r['params_sbcb_train'] / 1e6:.2f} "
            f"| {r['params_inference'] / 1e6:.2f} | {r['sbd_head_params']:,} | {t['step_baseline']:.3f} "
            f"| {t['step_sbcb']:.3f} | {r['step_ratio_sbcb_over_baseline']:.2f} | {t['infer_baseline']:.4f} "
            f"| {t['infer_stripped']:.4f} | {r['infer_ratio_stripped_over_baseline']:.2f} |"
        )
    lines += [
        "",
        "Baseline training = the model's own heads (BiSeNetV1: 2 auxiliary heads; BiSeNetV2: 4 boosters; STDC: 2",
        "auxiliary heads + Detail Head). SBCB = CASENet on the declared sides + the model's own heads (STDC without",
        "its Detail Head). Inference runs no auxiliary head in either model; the stripped model is the baseline",
        "architecture (STDC: minus the Detail Head's unused parameters), so the inference ratio should be ~1.",
        "",
        "Sides (SBCB, highest resolution first, semantic last):",
        "",
    ]
    lines += [f"- {r['model']}: " + ", ".join(r["sides"]) for r in rows]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / stem}.json/.md")


if __name__ == "__main__":
    main()
