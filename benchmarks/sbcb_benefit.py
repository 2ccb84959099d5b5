"""Does SBCB improve segmentation? Baseline vs FCN-aux vs BBCB vs SBCB heads on the synthetic street scenes.

Every variant trains the same smp DeepLabV3+ ResNet-18 (random init, nothing downloaded) with the same initial
weights per seed, the same sample stream and the same schedule (see `benchmarks/_protocol.py`); evaluation uses
the stripped segmentor. Results, one entry per run, go to ``benchmarks/results/sbcb_benefit.json`` (+ ``.md``,
``.png``); ``--quick`` writes ``sbcb_benefit_quick.*`` instead. Finished runs are appended to a ``.partial.jsonl``
file, so an interrupted run continues where it stopped when started again with the same settings.

Usage::

    .venv/bin/python benchmarks/sbcb_benefit.py            # 5 variants x 3 seeds, sized for ~1 h on 2 cores
    .venv/bin/python benchmarks/sbcb_benefit.py --quick    # 2 variants x 2 seeds, a few minutes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _protocol as P  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


_DATA: dict = {}


def _init_data(n_train: int, n_val: int, image_size: tuple[int, int], radius: float) -> None:
    """Pool initializer: render the training set once per worker and the transformed validation set."""
    from sbcb.data import SyntheticStreets
    from sbcb.data.loader import TransformedDataset
    from sbcb.data.transforms import build_eval_transform

    _DATA["train"] = P.CachedDataset(SyntheticStreets(n_train, size=image_size, seed=0, split="train"))
    info = _DATA["train"].info
    val = TransformedDataset(
        SyntheticStreets(n_val, size=image_size, seed=0, split="val"),
        build_eval_transform(info.num_classes, radius=radius, ignore_index=info.ignore_index, boundaries=True),
    )
    _DATA["val"] = [val[i] for i in range(len(val))]


def _one_run(task: tuple) -> dict:
    variant, seed, settings, threads = task
    runs, _ = P.run_grid(
        [variant], [seed], train_raw=_DATA["train"], val_set=_DATA["val"], settings=settings, threads=threads
    )
    return runs[0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 variants x 2 seeds x 20 iterations, 16/8 images (smoke run)")
    p.add_argument("--variants", nargs="+", choices=P.VARIANTS, help="default: baseline fcn bbcb casenet dff")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2")
    p.add_argument("--iters", type=int, help="training iterations per run (default 200)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="synthetic image size (128 256)")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="training crop (default 64 128)")
    p.add_argument("--train-samples", type=int, help="synthetic training images (default 96)")
    p.add_argument("--val-samples", type=int, help="synthetic validation images (default 24)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default 1)")
    p.add_argument("--workers", type=int, default=2, help="runs trained in parallel processes (default 2)")
    p.add_argument("--name", help="results file stem (default sbcb_benefit or sbcb_benefit_quick)")
    p.add_argument("--fresh", action="store_true", help="ignore finished runs in the .partial.jsonl file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from sbcb.data import SyntheticStreets

    quick = args.quick
    settings = P.make_config(crop=tuple(args.crop or (64, 128)), iters=args.iters or (20 if quick else 200))
    threads = args.threads or 1
    image_size = tuple(args.image_size or (128, 256))
    n_train = args.train_samples or (16 if quick else 96)
    n_val = args.val_samples or (8 if quick else 24)
    variants = args.variants or (["baseline", "casenet"] if quick else ["baseline", "fcn", "bbcb", "casenet", "dff"])
    seeds = args.seeds if args.seeds is not None else ([0, 1] if quick else [0, 1, 2])
    stem = args.name or ("sbcb_benefit_quick" if quick else "sbcb_benefit")
    command = "python benchmarks/sbcb_benefit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(threads)

    dataset = {"name": "synthetic", "image_size": list(image_size), "train_samples": n_train, "val_samples": n_val}
    config = {"settings": P.settings_record(settings, threads=threads), "dataset": dataset}
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"{stem}.partial.jsonl"
    done: list[dict] = []
    if partial.exists() and not args.fresh:
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            if row.get("config") == json.loads(json.dumps(config)):
                done.append(row)
    elif partial.exists():
        partial.unlink()
    finished = {(r["variant"], r["seed"]) for r in done}
    print(f"{len(done)} finished runs reused from {partial.name}" if done else "starting fresh", flush=True)

    data_args = (n_train, n_val, image_size, settings.data.radius)
    todo = [(v, seed) for seed in seeds for v in variants if (v, seed) not in finished]
    runs = list(done)
    if todo:
        with P.run_pool(args.workers, _init_data, data_args) as pool:
            for result in pool.imap_unordered(_one_run, [(v, seed, settings, threads) for v, seed in todo]):
                with partial.open("a") as f:
                    f.write(json.dumps({**result, "config": config}) + "\n")
                runs.append(result)
    info = SyntheticStreets.info
    order = {(v, s): i for i, (s, v) in enumerate((s, v) for s in seeds for v in variants)}
    runs = sorted(
        (r for r in runs if (r["variant"], r["seed"]) in order), key=lambda r: order[(r["variant"], r["seed"])]
    )
    for r in runs:
        r.pop("config", None)
        r["settings"] = {**P.settings_record(settings, threads=threads), **dataset}

    summary = P.summarize(runs, variants)
    notes = [
        "Variants: baseline = DeepLabV3+ alone; fcn = + FCN auxiliary head on layer3 (weight 0.4); bbcb = + binary",
        "boundary head; casenet / dff / dds = + SBCB with that head (alpha 5, beta 1). Same initial segmentor",
        "weights, data stream and schedule per seed. Shared, contended CPU: timings are indicative only.",
    ]
    md = P.markdown_report(
        "sbcb_benefit (synthetic streets)", command, runs, summary, settings, threads=threads,
        class_names=info.class_names, notes=notes,
    )  # fmt: skip
    doc = {
        "benchmark": "sbcb_benefit",
        "command": command,
        "settings": P.settings_record(settings, threads=threads),
        "dataset": dataset,
        "variants": variants,
        "seeds": seeds,
        "class_names": list(info.class_names),
        "runs": runs,
        "summary": summary,
        "environment": P.environment(),
    }
    P.write_results(RESULTS, stem, doc, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
