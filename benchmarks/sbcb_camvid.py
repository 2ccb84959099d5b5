"""Does SBCB help on real driving images? Baseline vs SBCB (CASENet) on CamVid, same protocol as sbcb_benefit.

Train on CamVid train (367 images), evaluate the stripped segmentor on val (101 images) at the full 480x360
resolution: mIoU, per-class IoU, boundary F at 3/5/9/12 px, and SBD mF for semantic SBD heads. Every variant
trains the same smp DeepLabV3+ ResNet-18 from scratch (nothing can be downloaded; ``--weights FILE`` loads a
local encoder state_dict into every variant) with the same initial weights per seed, the same sample stream and
the same schedule (`benchmarks/_protocol.py`). Pictures compare baseline and SBCB predictions and error maps on
the same val images.

Results: ``benchmarks/results/sbcb_camvid.{json,md,png}`` and ``sbcb_camvid_examples.png``; ``--quick`` writes
``sbcb_camvid_quick.*`` (a smoke run, not a result). Finished runs are kept in ``.partial.jsonl``; starting the
same command again continues.

Usage::

    .venv/bin/python benchmarks/sbcb_camvid.py --root /path/to/camvid                 # baseline + CASENet, 3 seeds
    .venv/bin/python benchmarks/sbcb_camvid.py --root DIR --variants baseline fcn bbcb casenet
    .venv/bin/python benchmarks/sbcb_camvid.py --root DIR --quick

Sizing: one training step (batch 4, 240x320, one thread) measured 2.3-2.8 CPU-s for the baseline and 2.8-3.1 for
SBCB CASENet, so a run (500 steps + evaluation) is about 30 min of one core; two runs train in parallel, so the
default 6 runs take about 1.5-2 h on an idle 2-core machine (each added variant about 45 min more).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _protocol as P  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PICTURE_INDICES = (0, 50, 100)  # val images shown in the examples picture (3 rows keep the PNG small)

_DATA: dict = {}


def _init_data(root: str, n_train: int | None, n_val: int | None, radius: float) -> None:
    """Pool initializer: CamVid train (raw, in memory) and val (transformed, with packed boundaries)."""
    from sbcb.data.camvid import CamVid
    from sbcb.data.loader import TransformedDataset
    from sbcb.data.transforms import build_eval_transform

    train = CamVid(root, "train")
    if n_train is not None:
        train.samples = train.samples[:n_train]
    _DATA["train"] = P.CachedDataset(train)
    info = train.info
    val_raw = CamVid(root, "val")
    if n_val is not None:
        val_raw.samples = val_raw.samples[:n_val]
    val = TransformedDataset(
        val_raw, build_eval_transform(info.num_classes, radius=radius, ignore_index=info.ignore_index, boundaries=True)
    )
    _DATA["val"] = [val[i] for i in range(len(val))]
    _DATA["val_raw"] = val_raw


def _load_weights(model, path: str | None) -> None:
    if path is None:
        return
    import torch

    from sbcb.models import strip_model

    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = strip_model(model).encoder.load_state_dict(state, strict=False)
    if len(missing) == len(list(strip_model(model).encoder.state_dict())):
        raise ValueError(f"{path}: no key matches the encoder (expected a ResNet-18 encoder state_dict)")


def _one_run(task: tuple) -> dict:
    import torch

    from sbcb.models import strip_model

    variant, seed, settings, threads, weights, pred_dir = task
    torch.set_num_threads(threads)
    model = P.build_variant(variant, num_classes=_DATA["train"].info.num_classes, seed=seed, settings=settings)
    _load_weights(model, weights)
    trained = P.train_run(model, _DATA["train"], seed=seed, settings=settings)
    metrics = P.evaluate_run(model, _DATA["val"], num_classes=_DATA["train"].info.num_classes, settings=settings)
    result = {"variant": variant, "seed": seed}
    result.update({m: metrics.get(m) for m in P.METRICS})
    result.update(iou=metrics["iou"], bf_per_class=metrics.get("bf_per_class"), sbd_ods_f=metrics.get("sbd_ods_f"))
    result.update(trained)
    import os

    result["load_average_1min"] = os.getloadavg()[0]
    seg = strip_model(model).eval()
    preds = {}
    with torch.no_grad():
        for i in PICTURE_INDICES:
            if i < len(_DATA["val"]):
                logits, h, w = P.padded_forward(seg, _DATA["val"][i]["image"][None])
                preds[i] = logits[..., :h, :w].argmax(1)[0].to(torch.uint8).numpy()
    # predictions go to disk so that a resumed benchmark can still draw the runs finished earlier
    Path(pred_dir).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(pred_dir) / f"{variant}_seed{seed}.npz", **{str(i): p for i, p in preds.items()})
    return result


def load_predictions(pred_dir: Path, variant: str, seed: int) -> dict[int, np.ndarray] | None:
    path = pred_dir / f"{variant}_seed{seed}.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return {int(k): data[k] for k in data.files}


def examples_picture(path: Path, runs: list[dict], info, variants: list[str], seed: int) -> None:
    """Rows = val images; columns = image, GT, then per variant its prediction and error map (red = wrong)."""
    from sbcb.viz import colorize, save_png

    shown = [v for v in ("baseline", "casenet") if v in variants] or variants[:2]
    by_variant = {r["variant"]: r for r in runs if r["seed"] == seed and r.get("_predictions")}
    if not all(v in by_variant for v in shown):
        return
    rows = []
    for i in PICTURE_INDICES:
        if i not in by_variant[shown[0]]["_predictions"]:
            continue
        raw = _DATA["val_raw"][i]
        gt = raw["label"].copy()
        gt[gt >= info.num_classes] = info.ignore_index
        tiles = [raw["image"], colorize(gt, info.colors, ignore_index=info.ignore_index)]
        for v in shown:
            pred = by_variant[v]["_predictions"][i]
            tiles.append(colorize(pred, info.colors))
            err = np.zeros((*pred.shape, 3), np.uint8)
            valid = gt != info.ignore_index
            err[valid & (pred == gt)] = (40, 40, 40)
            err[valid & (pred != gt)] = (255, 40, 40)
            tiles.append(err)
        small = [t[::2, ::2] for t in tiles]  # half size keeps the PNG small
        gap = np.full((small[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for t in small for x in (t, gap)][:-1], axis=1))
    if rows:
        hgap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
        save_png(path, np.concatenate([x for r in rows for x in (r, hgap)][:-1], axis=0))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="CamVid folder (train/, trainannot/, val/, valannot/)")
    p.add_argument("--quick", action="store_true", help="smoke run: 16 train / 8 val images, 10 iterations")
    p.add_argument("--variants", nargs="+", choices=P.VARIANTS, help="default: baseline casenet")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2")
    p.add_argument("--iters", type=int, help="training iterations per run (default 500)")
    p.add_argument("--batch-size", type=int, help="default 4")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="training crop (default 240 320)")
    p.add_argument("--weights", help="optional local ResNet-18 encoder state_dict loaded into every variant")
    p.add_argument("--workers", type=int, default=2, help="runs trained in parallel processes (default 2)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    p.add_argument("--fresh", action="store_true", help="ignore finished runs in the .partial.jsonl file")
    p.add_argument("--name", help="results file stem (default sbcb_camvid or sbcb_camvid_quick)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sbcb.data.camvid import CAMVID_INFO, CamVid

    quick = args.quick
    try:
        CamVid(args.root, "train"), CamVid(args.root, "val")
    except Exception as e:  # a wrong --root should say so before any worker starts
        print(f"error: can't read CamVid under {args.root}: {e}", file=sys.stderr)
        return 2
    settings = P.make_config(
        crop=tuple(args.crop or ((128, 160) if quick else (240, 320))),
        iters=args.iters or (10 if quick else 500),
        batch_size=args.batch_size or 4,
    )
    threads = args.threads or 1
    n_train, n_val = (16, 8) if quick else (None, None)
    variants = args.variants or ["baseline", "casenet"]
    seeds = args.seeds if args.seeds is not None else ([0, 1] if quick else [0, 1, 2])
    stem = args.name or ("sbcb_camvid_quick" if quick else "sbcb_camvid")
    command = "python benchmarks/sbcb_camvid.py " + " ".join(argv if argv is not None else sys.argv[1:])
    dataset = {"name": "camvid", "train_samples": n_train or 367, "val_samples": n_val or 101, "eval_size": [360, 480]}
    config = {"settings": P.settings_record(settings, threads=threads), "dataset": dataset, "weights": args.weights}

    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"{stem}.partial.jsonl"
    pred_dir = RESULTS / f"{stem}_predictions"  # per-run predictions of the example images (not committed)
    done: list[dict] = []
    if partial.exists() and not args.fresh:
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            if row.get("config") == json.loads(json.dumps(config)):
                done.append(row)
    elif partial.exists():
        partial.unlink()
    finished = {(r["variant"], r["seed"]) for r in done}
    todo = [(v, s) for s in seeds for v in variants if (v, s) not in finished]
    runs = list(done)
    data_args = (args.root, n_train, n_val, settings.data.radius)
    if todo:
        with P.run_pool(args.workers, _init_data, data_args) as pool:
            tasks = [(v, s, settings, threads, args.weights, str(pred_dir)) for v, s in todo]
            for result in pool.imap_unordered(_one_run, tasks):
                with partial.open("a") as f:
                    f.write(json.dumps({**result, "config": config}) + "\n")
                runs.append(result)
    order = {(v, s): i for i, (s, v) in enumerate((s, v) for s in seeds for v in variants)}
    runs = [r for r in runs if (r["variant"], r["seed"]) in order]
    runs.sort(key=lambda r: order[(r["variant"], r["seed"])])

    for r in runs:
        r["_predictions"] = load_predictions(pred_dir, r["variant"], r["seed"])
    if any(r["_predictions"] for r in runs):
        if not _DATA:
            _init_data(*data_args)
        examples_picture(RESULTS / f"{stem}_examples.png", runs, CAMVID_INFO, variants, seeds[0])
    for r in runs:
        r.pop("_predictions", None)
        r.pop("config", None)
        r["settings"] = {**P.settings_record(settings, threads=threads), **dataset}

    summary = P.summarize(runs, variants)
    notes = [
        "CamVid (SegNet version; Brostow, Fauqueur and Cipolla 2009): 11 classes, void ignored, no instances, so",
        "the SBD ground truth is semantic. Trained from scratch"
        + (f" (encoder from {args.weights})" if args.weights else "")
        + "; the paper's Cityscapes numbers use",
        "ImageNet-pretrained ResNet-101 and 40k iterations, so absolute values are not comparable.",
        f"Examples picture: `{stem}_examples.png` (seed {seeds[0]}; columns: image, GT, then per variant the",
        "prediction and its error map, red = wrong, black = void).",
    ]
    md = P.markdown_report(
        "sbcb_camvid (CamVid val, 480x360)", command, runs, summary, settings, threads=threads,
        class_names=CAMVID_INFO.class_names, notes=notes,
    )  # fmt: skip
    doc = {
        "benchmark": "sbcb_camvid",
        "command": command,
        "settings": P.settings_record(settings, threads=threads),
        "dataset": dataset,
        "weights": args.weights,
        "variants": variants,
        "seeds": seeds,
        "class_names": list(CAMVID_INFO.class_names),
        "runs": runs,
        "summary": summary,
        "environment": P.environment(),
    }
    P.write_results(RESULTS, stem, doc, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
