"""A powered CamVid study: LRASPP MobileNetV3-Large, baseline vs SBCB (CASENet), >= 5 paired seeds, converged.

Every (model, variant, schedule, seed) is an ordinary resumable `sbcb train` run (`sbcb.train.run_training` on a
`Config`; ``RUN/config.yaml`` and ``RUN/last.pt`` stay in ``runs/camvid_study/<model>/<variant>-<iters>it/seed<k>/``,
not committed). When a run finishes it is evaluated on val exactly as
``sbcb eval RUN/last.pt --dataset camvid --root DIR --split val`` does (the same code, in process) and one JSON
line is appended to the committed ``benchmarks/results/camvid_study_runs.jsonl`` (its val predictions go to the
committed ``camvid_study_preds/``). ``report`` regenerates ``camvid_study.{md,json}`` and the pictures from those
alone (the boundary picture also needs the CamVid root). Killing the study loses at most ``ckpt_every``
iterations per run; starting ``run`` again resumes the unfinished runs and never repeats a finished one.

Protocol (fixed here, in `PRESETS`, before any long run; its hash is stored with every result line, and the
report uses only lines of the current hash):

- Data: CamVid (SegNet version) train (367) -> val (101), every image rescaled to **half resolution, 180x240**
  (`data.image_scale` 0.5: area-averaged image, nearest label) before the transforms, for training, validation
  and `sbcb eval` alike. Boundary GT radius 2 px and the boundary-F radii 3/5/9/12 px are pixels **of the
  180x240 image** (6/10/18/24 px of the original 360x480). Training: random scale 0.5-2.0, random crop 180x240
  (padded), flip, photometric distortion (the library's pipeline).
- Model: torchvision LRASPP MobileNetV3-Large from scratch (``--arch lraspp_mobilenet_v3_large``; nothing can be
  downloaded). Variants: ``baseline`` (``--sbcb-head none``) and ``casenet`` (SBCB, alpha 5, beta 1); both are
  evaluated as the same stripped segmentor.
- Pairing: for seed ``k`` both variants start from identical segmentor weights (`run_training` seeds with ``k``
  and builds the segmentor before any head, and the wrapper's probe leaves weights and BN buffers untouched;
  tested), see the identical sample stream with identical per-sample augmentation (`StreamSampler` /
  `SeededDataset`, a function of ``(k, step)`` only) and follow the identical schedule.
- Optimisation: SGD lr 0.01, momentum 0.9, wd 5e-4, poly 0.9 to 1e-4, batch 8, one thread per run, two runs in
  parallel. Validation on val every 250 iterations (mIoU, BF 3 px, SBD mF with 9 thresholds): the curves.
- Final evaluation of ``last.pt`` (never ``best.pt``: no selection on val): whole image, mIoU, per-class IoU,
  BF at 3/5/9/12 px, SBD ODS/OIS/AP with 99 thresholds for SBCB runs (the `sbcb eval` defaults).
- Schedule rule ("converged"): schedules come from the ladder 2000, 4000, 8000 iterations (16000 until the
  amendment below). The baseline is trained with probe seeds 0 and 1 at consecutive rungs; the schedule is the
  first rung N whose doubling gains < 1.0 mIoU point (mean over the probe seeds of mIoU(2N) - mIoU(N)). If the
  last doubling still gains >= 1 point, the last rung is used and the report says the budget stopped it. The
  probe runs at the chosen N are the study's baseline seeds 0 and 1; then seeds 0-4 of both variants are
  trained at N.

Amendment (2026-12-06, before any SBCB run had started; the only change): the ladder ends at 8000 instead of
16000. A run must finish inside one 3-hour working session, because run folders (checkpoints) did not survive
from one session's machine to the next: the two 16000-iteration probes, at 8750/16000 when a session ended,
were lost with their machine. 16000 iterations at the measured 0.83 s/step is 3.7 h before validation, so it
cannot finish in a session; 8000 iterations is 1.9 h (baseline) and about 2.5 h (SBCB). The baseline had
gained +2.15 mIoU points from 4000 to 8000, so the study runs at the budget limit, 8000, and says that the
baseline is not converged there. `Protocol.amended_ladders` keeps the earlier ladder so that the runs already
finished under it (hash ``df30ca8cd931``, which differs from the current hash by the ladder alone; tested)
still count.
- Report: per seed the paired difference (casenet - baseline) of mIoU, BF 3/5/9/12 and per-class IoU; mean,
  sample std and the 95 % t-interval (scipy.stats.t, n - 1 dof). "Established" only when the interval excludes 0,
  otherwise "not established at this scale" with the interval.

Sizing (measured before any long run: one `sbcb train` step, batch 8, 180x240, one thread, data loading from
disk included, on this 2-core machine while it was **busy** with other engineers' work (load average 4-7):
baseline 1.4 s, SBCB CASENet 3.9 s per step; one validation about 45 s. A second measurement at load 11 gave
6.6 s / 3.9 s, so the machine's load, not the model, dominates these numbers; issue 17 makes the SBCB step
cheaper.) Expected wall time with two runs in parallel, validation included, by the outcome of the schedule rule
(``plan --step-seconds 1.4 3.9``): N = 2000: 10 h, N = 4000: 20 h, N = 8000: 41 h, budget limit N = 16000: 69 h;
on an idle machine about half that. Measured again on 2026-12-06 with two runs in parallel and little else
running: baseline 0.87 s, SBCB 1.08 s per step (the logged ``sec_per_it``), so one 8000-iteration run takes
about 1.9 h (baseline) or 2.5 h (SBCB) with its validations, and the runs left after the probes about 9 h
(``plan --step-seconds 0.87 1.08 --val-seconds 10``). ``plan`` prints the same estimate for the remaining runs
at the median step time the finished runs logged (``--step-seconds`` overrides it, ``--measure`` measures the
steps now). Within one session, ``run --pick casenet:K baseline:J`` pairs a long and
a short run that both end in time. Three at once gain nothing on 2 cores: on 2026-12-06 three SBCB runs
(``--parallel 3``) logged 1.5-1.6 s per step each, two SBCB runs 0.96-1.06 s (about 1.9 vs 2.0 steps/s in total), and
a third run only delays the other two past the session's end.

Presets: ``--preset cpu`` (default, the study above). ``--gpu``: the same protocol at full resolution 360x480,
crop 360x480, one fixed schedule of 1000 iterations, 5 seeds, CUDA, two runs sharing the one GPU with 4 loader
workers each; estimated at about 8 min of GPU time, **not yet run on a GPU**; results in ``camvid_study_gpu*``.
``--quick``: tiny (16 train / 8 val images at quarter resolution, 64x96 crops, 4 iterations, 2 seeds, 9 SBD
thresholds), a smoke test;
results in ``camvid_study_quick*``.

Usage::

    python benchmarks/camvid_study.py plan --root ../shared/data/camvid [--measure]
    python benchmarks/camvid_study.py run --root ../shared/data/camvid        # resumable; run again after a kill
    python benchmarks/camvid_study.py report --root ../shared/data/camvid [--docs]   # --docs: README outcome too
    python benchmarks/camvid_study.py run --root DIR --gpu && python benchmarks/camvid_study.py report --gpu
    python benchmarks/camvid_study.py run --root DIR --quick && python benchmarks/camvid_study.py report --quick
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _protocol as P  # noqa: E402  (shared with sbcb_camvid.py: environment facts)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "runs" / "camvid_study"

# Study models: `sbcb train` model flags. The primary model is the first.
STUDY_MODELS: dict[str, dict[str, Any]] = {
    "lraspp": {"arch": "lraspp_mobilenet_v3_large"},
    "dlv3p_r18": {"arch": "deeplabv3plus", "encoder": "resnet18", "output_stride": 16},
}
# Variants: `sbcb train` head flags.
STUDY_VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"sbcb_head": "none", "bbcb": False},
    "casenet": {"sbcb_head": "casenet", "bbcb": False},
    "bbcb": {"sbcb_head": "none", "bbcb": True},
}


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a result; its hash tags every result line."""

    name: str = "cpu"
    models: tuple[str, ...] = ("lraspp",)
    variants: tuple[str, ...] = ("baseline", "casenet")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    ladder: tuple[int, ...] = (2000, 4000, 8000)
    probe_seeds: tuple[int, ...] = (0, 1)
    min_gain: float = 0.01  # a doubling gaining less mIoU than this (fraction) means "converged"
    image_scale: float = 0.5
    crop: tuple[int, int] = (180, 240)
    scale_range: tuple[float, float] = (0.5, 2.0)
    radius: float = 2.0
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    min_lr: float = 1e-4
    alpha: float = 5.0
    beta: float = 1.0
    val_every: int = 250
    ckpt_every: int = 250
    val_sbd_thresholds: int = 9
    eval_radii: tuple[float, ...] = (3, 5, 9, 12)
    eval_sbd_thresholds: int = 99
    device: str = "cpu"
    threads: int = 1
    # not part of the hash: they change speed, not results
    workers: int = 0
    parallel: int = 2

    def hash(self) -> str:
        d = asdict(self)
        for k in ("workers", "parallel", "amended_ladders"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    # Ladders this protocol had before a documented amendment (the module docstring). Result lines tagged with the
    # hash of this protocol *with only the ladder replaced* are still this protocol's runs: the ladder decides
    # which runs are trained, never how one run is trained or evaluated.
    amended_ladders: tuple[tuple[int, ...], ...] = ()

    def accepted_hashes(self) -> tuple[str, ...]:
        """This protocol's hash, then those of its earlier ladders (their finished runs still count)."""
        earlier = (dataclasses.replace(self, ladder=ladder).hash() for ladder in self.amended_ladders)
        return tuple(dict.fromkeys((self.hash(), *earlier)))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The segmentation metrics compared: mIoU and boundary F at each radius (``bf3``, ``bf5``, ...)."""
        return ("miou", *(f"bf{r:g}" for r in self.eval_radii))

    @property
    def eval_size(self) -> tuple[int, int]:
        """CamVid's 360x480 at this protocol's scale."""
        return round(360 * self.image_scale), round(480 * self.image_scale)


AMENDMENT = (
    "on 2026-12-06, before any SBCB run had started, the ladder was cut from 2000/4000/8000/16000 to "
    "2000/4000/8000: run folders do not survive from one 3-hour working session's machine to the next, so a run "
    "must finish within a session, and 16000 iterations (3.7 h of steps) cannot; the two 16000-iteration probes "
    "were lost at 8750 iterations. The study therefore runs at the budget limit, where the baseline still gained "
    "from the last doubling."
)

PRESETS: dict[str, Protocol] = {
    "cpu": Protocol(amended_ladders=((2000, 4000, 8000, 16000),)),
    "gpu": Protocol(
        name="gpu", ladder=(1000,), image_scale=1.0, crop=(360, 480), device="cuda", threads=4, workers=4
    ),
    "quick": Protocol(
        name="quick", seeds=(0, 1), ladder=(4,), probe_seeds=(0,), image_scale=0.25, crop=(64, 96), batch_size=2,
        val_every=2, ckpt_every=2, eval_sbd_thresholds=9,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """One (model, variant, schedule, seed) run."""

    model: str
    variant: str
    iters: int
    seed: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.model, self.variant, self.iters, self.seed)

    def folder(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / self.model / f"{self.variant}-{self.iters}it" / f"seed{self.seed}"


def study_config(protocol: Protocol, spec: RunSpec, *, root: str | Path, runs_dir: Path) -> Any:
    """The `sbcb.train.Config` of one run: the protocol plus the run's model, variant, schedule and seed."""
    from sbcb.train.config import Config

    flat: dict[str, Any] = {
        **STUDY_MODELS[spec.model],
        **STUDY_VARIANTS[spec.variant],
        "alpha": protocol.alpha,
        "beta": protocol.beta,
        "dataset": "camvid",
        "root": str(root),
        "train_split": "train",
        "val_split": "val",
        "image_scale": protocol.image_scale,
        "crop": protocol.crop,
        "scale_range": protocol.scale_range,
        "radius": protocol.radius,
        "iters": spec.iters,
        "batch_size": protocol.batch_size,
        "lr": protocol.lr,
        "momentum": protocol.momentum,
        "weight_decay": protocol.weight_decay,
        "poly_power": protocol.poly_power,
        "min_lr": protocol.min_lr,
        "seed": spec.seed,
        "workers": protocol.workers,
        "ckpt_every": protocol.ckpt_every,
        "val_every": protocol.val_every,
        "keep_last": 1,
        "log_every": max(1, min(10, spec.iters)),
        "sbd_thresholds": protocol.val_sbd_thresholds,
        "boundary_radii": (3,),
        "out": str(spec.folder(runs_dir)),
        "device": protocol.device,
        "progress": False,
    }
    return Config.from_flat(flat)


# ------------------------------------------------------------------------------------------- results file


def read_rows(path: Path, protocol: Protocol | None = None) -> list[dict[str, Any]]:
    """The result lines of ``path`` (of ``protocol``'s hash when given); a torn last line is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a write cut by a kill: that run is simply redone
            continue
        if protocol is None or row.get("protocol_hash") in protocol.accepted_hashes():
            rows.append(row)
    return rows


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one JSON line under an exclusive lock (two runs may finish at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, sort_keys=True) + "\n"
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _key(row: Mapping[str, Any]) -> tuple[str, str, int, int]:
    return (row["model"], row["variant"], int(row["iters"]), int(row["seed"]))


def finished(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """Finished runs by key (the first line wins if a run was ever recorded twice)."""
    out: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for row in rows:
        out.setdefault(_key(row), dict(row))
    return out


# ------------------------------------------------------------------------------------------- schedule rule


def schedule_decision(protocol: Protocol, rows: Iterable[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """Apply the schedule rule to the finished baseline probe runs of ``model``.

    Returns:
        ``{"chosen": N or None, "reason": str, "rungs": [{"iters", "miou": {seed: value}, "mean", "gain"}],
        "needed": [RunSpec, ...]}``: ``needed`` are the probe runs the rule waits for (empty once chosen).
    """
    done = finished(rows)
    ladder, probes = protocol.ladder, protocol.probe_seeds
    rungs: list[dict[str, Any]] = []
    for n in ladder:
        mious = {s: done[(model, "baseline", n, s)]["miou"] for s in probes if (model, "baseline", n, s) in done}
        mean = statistics.fmean(mious.values()) if len(mious) == len(probes) else None
        rungs.append({"iters": n, "miou": mious, "mean": mean, "gain": None})
    for prev, cur in zip(rungs, rungs[1:]):
        if prev["mean"] is not None and cur["mean"] is not None:
            cur["gain"] = cur["mean"] - prev["mean"]
    if len(ladder) == 1:
        return {"chosen": ladder[0], "reason": f"fixed schedule of {ladder[0]} iterations", "rungs": rungs,
                "needed": []}  # fmt: skip
    for i in range(len(ladder) - 1):
        cur, nxt = rungs[i], rungs[i + 1]
        if cur["mean"] is None or nxt["mean"] is None:
            needed = [
                RunSpec(model, "baseline", r["iters"], s) for r in (cur, nxt) for s in probes
                if (model, "baseline", r["iters"], s) not in done
            ]  # fmt: skip
            return {"chosen": None, "reason": "waiting for the probe runs", "rungs": rungs, "needed": needed}
        if nxt["gain"] < protocol.min_gain:
            reason = (
                f"doubling {cur['iters']} -> {nxt['iters']} iterations gained {100 * nxt['gain']:+.2f} mIoU points "
                f"(< {100 * protocol.min_gain:g}; mean over baseline seeds {', '.join(map(str, probes))})"
            )
            return {"chosen": cur["iters"], "reason": reason, "rungs": rungs, "needed": []}
    last = rungs[-1]
    reason = (
        f"budget limit: doubling {ladder[-2]} -> {ladder[-1]} still gained {100 * last['gain']:+.2f} mIoU points; "
        f"the study uses {ladder[-1]} iterations, the longest schedule the budget allows"
    )
    return {"chosen": ladder[-1], "reason": reason, "rungs": rungs, "needed": []}


def next_runs(protocol: Protocol, rows: Iterable[Mapping[str, Any]]) -> list[RunSpec]:
    """The unfinished runs that can start now, in order (probes first, then seed-major study runs)."""
    rows = list(rows)
    done = finished(rows)
    todo: list[RunSpec] = []
    for model in protocol.models:
        decision = schedule_decision(protocol, rows, model)
        if decision["chosen"] is None:
            todo += decision["needed"]
            continue
        n = decision["chosen"]
        todo += [
            RunSpec(model, v, n, s) for s in protocol.seeds for v in protocol.variants
            if (model, v, n, s) not in done
        ]  # fmt: skip
    return todo


# ------------------------------------------------------------------------------------------- one run


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks/camvid_study.py")
    return {"git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(dirty)}


def train_or_resume(cfg: Any, out: Path, iters: int) -> None:
    """Train the run to ``iters`` iterations: resume from its newest checkpoint, or start fresh.

    A folder without a checkpoint (killed before the first one) is cleared first, so nothing of a dead start
    mixes into the logs.
    """
    from sbcb.train import run_training
    from sbcb.train.checkpoint import CheckpointManager, load_checkpoint
    from sbcb.train.run import config_of_checkpoint

    latest = CheckpointManager(out).latest() if out.exists() else None
    if latest is not None:
        ckpt = load_checkpoint(latest)
        _check_same_run(config_of_checkpoint(ckpt, source=str(latest)), cfg, latest)
        step = int(ckpt.get("step", 0))
        if step >= iters:
            return
        print(f"[camvid_study] resuming {out} from iteration {step}", flush=True)
        outcome = run_training(cfg, resume=latest)
    else:
        if out.exists():
            shutil.rmtree(out)
        outcome = run_training(cfg)
    if outcome.code != 0:
        raise RuntimeError(f"sbcb train failed in {out} (exit code {outcome.code})")


# Keys that may differ between a run's checkpoint and the protocol without changing the result.
NEUTRAL_KEYS = ("root", "out", "progress", "workers")


def _check_same_run(stored: Any, cfg: Any, path: Path) -> None:
    """Refuse to continue (or reuse) a checkpoint trained with other settings (e.g. an older protocol)."""
    a, b = stored.flat(), cfg.flat()
    changed = [k for k in b if k not in NEUTRAL_KEYS and a.get(k) != b[k]]
    if changed:
        diff = ", ".join(f"{k}: {a.get(k)} there, {b[k]} here" for k in changed)
        raise RuntimeError(f"{path} was trained with other settings ({diff}); move that run folder away first")


def evaluate_run(protocol: Protocol, cfg: Any, out: Path) -> dict[str, Any]:
    """`sbcb eval out/last.pt` on val (same code path and defaults), then per-image BF 3 px and predictions."""
    import numpy as np
    import torch

    from sbcb.cli.main import main as sbcb_main
    from sbcb.metrics.boundary_f import boundary_fscore
    from sbcb.models import strip_model
    from sbcb.train.checkpoint import load_model
    from sbcb.train.evaluation import predict_logits
    from sbcb.train.run import build_datasets

    ckpt = out / "last.pt"
    argv = ["eval", str(ckpt), "--dataset", "camvid", "--root", cfg.data.root, "--split", cfg.data.val_split,
            "--out", str(out / "eval_val"), "--no-progress", "--device", protocol.device,
            "--sbd-thresholds", str(protocol.eval_sbd_thresholds),
            "--radii", *[f"{r:g}" for r in protocol.eval_radii]]  # fmt: skip
    t0 = time.perf_counter()
    if sbcb_main(argv) != 0:
        raise RuntimeError(f"sbcb {' '.join(argv)} failed")
    metrics = json.loads((out / "eval_val" / "eval.json").read_text())
    metrics["eval_seconds"] = time.perf_counter() - t0

    # Per-image boundary F (3 px) of the stripped model and its predictions, for the paired-difference picture.
    _, val_set, info = build_datasets(cfg, train=False, val_boundaries=False)
    model = strip_model(load_model(ckpt)).to(protocol.device).eval()
    per_image, names, preds = [], [], []
    with torch.no_grad():
        for i in range(len(val_set)):
            sample = val_set[i]
            logits = predict_logits(model, sample["image"][None].to(protocol.device).float())
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
            per_image.append(float(np.mean(boundary_fscore(pred, sample["label"].numpy(), info.num_classes, 3))))
            names.append(str(sample.get("name", i)))
            preds.append(pred)
    np.savez_compressed(out / "val_pred.npz", names=np.array(names), preds=np.stack(preds))
    metrics["per_image_bf3"] = per_image
    metrics["image_names"] = names
    return metrics


def read_curve(out: Path) -> list[dict[str, float]]:
    """Validation points from the run's ``val_log.csv``: step, miou, bf3 and (SBCB) sbd_mf."""
    path = out / "val_log.csv"
    if not path.exists():
        return []
    points = []
    for row in csv.DictReader(path.open()):
        point = {"step": int(float(row["step"]))}
        for k in ("miou", "bf3", "sbd_mf"):
            if row.get(k) not in (None, ""):
                point[k] = float(row[k])
        points.append(point)
    return points


def train_seconds(out: Path) -> tuple[float | None, float | None]:
    """(median seconds per iteration, total training seconds) from ``train_log.csv``."""
    path = out / "train_log.csv"
    if not path.exists():
        return None, None
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return None, None
    secs = [float(r["sec_per_it"]) for r in rows]
    steps = [int(float(r["step"])) for r in rows]
    total = sum(s * (b - a) for s, a, b in zip(secs, [0, *steps[:-1]], steps))
    return statistics.median(secs), total


def run_one(protocol: Protocol, spec: RunSpec, *, root: str | Path, runs_dir: Path, results: Path) -> dict[str, Any]:
    """Train (or resume), evaluate and record one run; returns the appended result line."""
    import torch

    torch.set_num_threads(protocol.threads)
    cfg = study_config(protocol, spec, root=root, runs_dir=runs_dir)
    out = spec.folder(runs_dir)
    train_or_resume(cfg, out, spec.iters)
    metrics = evaluate_run(protocol, cfg, out)
    sec_per_it, seconds = train_seconds(out)
    row: dict[str, Any] = {
        "model": spec.model,
        "variant": spec.variant,
        "iters": spec.iters,
        "seed": spec.seed,
        "protocol": protocol.name,
        "protocol_hash": protocol.hash(),
        **git_state(),
        "run_dir": str(out.relative_to(REPO) if out.is_relative_to(REPO) else out),
        "eval_size": list(protocol.eval_size),
        "bf_radii_px_at_eval_size": list(protocol.eval_radii),
        "miou": metrics["miou"],
        "aacc": metrics["aacc"],
        "iou": metrics["iou"],
        **{f"bf{r:g}": metrics.get(f"bf{r:g}") for r in protocol.eval_radii},
        "bf_per_class": metrics.get("bf_per_class"),
        "sbd_mf": metrics.get("sbd_mf"),
        "sbd_mois": metrics.get("sbd_mois"),
        "sbd_map": metrics.get("sbd_map"),
        "sbd_ods_f": metrics.get("sbd_ods_f"),
        "curve": read_curve(out),
        "per_image_bf3": metrics["per_image_bf3"],
        "image_names": metrics["image_names"],
        "sec_per_it": sec_per_it,
        "train_seconds": seconds,
        "eval_seconds": metrics["eval_seconds"],
        "load_average_1min": os.getloadavg()[0],
        "host": platform.node(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    # the val predictions travel with the results (run folders may not survive): the boundary picture needs both
    # runs of a seed, which may finish on different machines
    preds = preds_file(results, protocol, spec)
    preds.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "val_pred.npz", preds)
    append_row(results_file(results, protocol), row)
    return row


def results_file(results: Path, protocol: Protocol) -> Path:
    return Path(results) / f"{stem(protocol)}_runs.jsonl"


def preds_file(results: Path, protocol: Protocol, spec: RunSpec) -> Path:
    """A finished run's val predictions (uint8 label maps, ``np.savez_compressed``, ~0.3 MB), kept with the results."""
    return Path(results) / f"{stem(protocol)}_preds" / f"{spec.model}-{spec.variant}-{spec.iters}it-seed{spec.seed}.npz"


def stem(protocol: Protocol) -> str:
    return "camvid_study" if protocol.name == "cpu" else f"camvid_study_{protocol.name}"


# ------------------------------------------------------------------------------------------- scheduler


def run_study(
    protocol: Protocol,
    *,
    root: str | Path,
    runs_dir: Path,
    results: Path,
    max_runs: int | None = None,
    inline: bool = False,
    pick: Sequence[tuple[str, int]] | None = None,
) -> int:
    """Run unfinished runs, ``protocol.parallel`` at a time, until the study (as far as decidable) is done.

    Each run is a child process (``_job``) with its own thread budget and a log in its run folder; with
    ``inline`` (or ``parallel`` 1 and ``inline``) runs execute here one after the other (tests, debugging).
    After each finished run the next runs are recomputed from the results file, so the schedule rule can open
    the next ladder rung or the study runs. ``pick`` limits this invocation to those ``(variant, seed)`` runs
    (in that order) among the startable ones, e.g. to pair a long and a short run inside one working session.
    Returns 0, or 1 when a run failed (it is not retried here).
    """
    path = results_file(results, protocol)
    failed: set[tuple[str, str, int, int]] = set()
    running: dict[tuple[str, str, int, int], subprocess.Popen] = {}
    started = 0
    while True:
        todo = [s for s in next_runs(protocol, read_rows(path, protocol)) if s.key not in failed]
        todo = [s for s in todo if s.key not in running]
        if pick is not None:
            todo = picked(todo, pick)
        can_start = max_runs is None or started < max_runs
        if inline:
            if not todo or not can_start:
                break
            spec = todo[0]
            print(f"[camvid_study] {spec}", flush=True)
            try:
                run_one(protocol, spec, root=root, runs_dir=runs_dir, results=results)
            except Exception as e:  # report, keep going with the others
                print(f"[camvid_study] {spec} failed: {type(e).__name__}: {e}", flush=True)
                failed.add(spec.key)
            started += 1
            continue
        while todo and can_start and len(running) < protocol.parallel:
            spec = todo.pop(0)
            running[spec.key] = _spawn(protocol, spec, root=root, runs_dir=runs_dir, results=results)
            started += 1
            can_start = max_runs is None or started < max_runs
            print(f"[{time.strftime('%H:%M:%S')}] started {spec} (log: {log_path(spec, runs_dir)})", flush=True)
        if not running:
            break
        time.sleep(2.0)
        for key, proc in list(running.items()):
            if proc.poll() is not None:
                del running[key]
                status = job_status(proc.returncode)
                print(f"[{time.strftime('%H:%M:%S')}] {RunSpec(*key)} {status}", flush=True)
                if proc.returncode != 0:
                    failed.add(key)
    left = next_runs(protocol, read_rows(path, protocol))
    print(f"[camvid_study] {len(read_rows(path, protocol))} finished runs in {path}; {len(left)} startable left")
    return 1 if failed else 0


def job_status(returncode: int) -> str:
    """How a ``_job`` child ended: 0 finished; 128 + signal number when training was interrupted and saved."""
    if returncode == 0:
        return "finished"
    if returncode > 128:
        return f"interrupted by signal {returncode - 128}; saved, and the next `run` resumes it"
    return f"FAILED (exit {returncode}; see its log)"


def picked(todo: Sequence[RunSpec], pick: Sequence[tuple[str, int]]) -> list[RunSpec]:
    """The runs of ``todo`` named by ``pick`` (``(variant, seed)`` pairs), in ``pick``'s order."""
    chosen = [s for s in todo if (s.variant, s.seed) in pick]
    return sorted(chosen, key=lambda s: list(pick).index((s.variant, s.seed)))


def log_path(spec: RunSpec, runs_dir: Path) -> Path:
    """A run's output log, beside its folder (a folder without a checkpoint is cleared at a fresh start)."""
    return spec.folder(runs_dir).parent / f"seed{spec.seed}.study.log"


def _spawn(protocol: Protocol, spec: RunSpec, *, root: str | Path, runs_dir: Path, results: Path) -> subprocess.Popen:
    out = spec.folder(runs_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    job = {"protocol": asdict(protocol), "spec": asdict(spec), "root": str(root), "runs_dir": str(runs_dir),
           "results": str(results)}  # fmt: skip
    threads = str(protocol.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    log = log_path(spec, runs_dir).open("a")
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "_job", json.dumps(job)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip


def protocol_from_dict(d: Mapping[str, Any]) -> Protocol:
    fields = {f.name for f in dataclasses.fields(Protocol)}

    def frozen(v: Any) -> Any:  # JSON lists back to (nested) tuples
        return tuple(frozen(x) for x in v) if isinstance(v, list) else v

    return Protocol(**{k: frozen(v) for k, v in d.items() if k in fields})


# ------------------------------------------------------------------------------------------- statistics


def paired_stats(differences: Sequence[float], *, confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample std, n and the two-sided t-interval of paired differences; the verdict.

    ``established`` is True only when the interval excludes 0. With one difference there is no interval.
    """
    from scipy import stats

    d = [float(x) for x in differences]
    n = len(d)
    mean = statistics.fmean(d) if d else float("nan")
    std = statistics.stdev(d) if n > 1 else float("nan")
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = float("nan")
    established = bool(n > 1 and (low > 0 or high < 0))
    return {"n": n, "mean": mean, "std": std, "low": low, "high": high, "established": established}


def verdict(s: Mapping[str, Any], scale: float = 100.0, unit: str = "points") -> str:
    if s["n"] < 2:
        return f"not established at this scale ({s['n']} paired seed{'s' if s['n'] != 1 else ''})"
    ci = f"95 % CI [{scale * s['low']:+.2f}, {scale * s['high']:+.2f}] {unit}"
    if s["established"]:
        return f"established {'gain' if s['mean'] > 0 else 'loss'} ({ci})"
    return f"not established at this scale ({ci})"


def study_summary(protocol: Protocol, rows: Sequence[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """Per variant the mean/std of every metric, per non-baseline variant the paired statistics."""
    decision = schedule_decision(protocol, rows, model)
    n = decision["chosen"]
    out: dict[str, Any] = {"schedule": {k: v for k, v in decision.items() if k != "needed"}, "variants": {},
                           "paired": {}}  # fmt: skip
    if n is None:
        return out
    done = finished(rows)
    by_variant = {v: {s: done[(model, v, n, s)] for s in protocol.seeds if (model, v, n, s) in done}
                  for v in protocol.variants}  # fmt: skip
    metrics = (*protocol.metrics, "sbd_mf")
    for v, runs in by_variant.items():
        entry: dict[str, Any] = {"n": len(runs), "seeds": sorted(runs)}
        for m in metrics:
            values = [r[m] for r in runs.values() if r.get(m) is not None]
            if values:
                entry[m] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1
                            else float("nan"), "values": values}  # fmt: skip
        out["variants"][v] = entry
    base = by_variant.get("baseline", {})
    for v, runs in by_variant.items():
        if v == "baseline":
            continue
        seeds = sorted(set(runs) & set(base))
        paired: dict[str, Any] = {"seeds": seeds}
        for m in protocol.metrics:
            diffs = [runs[s][m] - base[s][m] for s in seeds]
            paired[m] = {**paired_stats(diffs), "differences": diffs}
        k = len(base[seeds[0]]["iou"]) if seeds else 0
        per_class = []
        for c in range(k):
            diffs = [runs[s]["iou"][c] - base[s]["iou"][c] for s in seeds
                     if runs[s]["iou"][c] is not None and base[s]["iou"][c] is not None]  # fmt: skip
            per_class.append({**paired_stats(diffs), "differences": diffs})
        paired["iou"] = per_class
        out["paired"][v] = paired
    return out


# ------------------------------------------------------------------------------------------- report


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _ms(cell: Mapping[str, Any] | None) -> str:
    if not cell:
        return "—"
    std = cell["std"]
    return f"{100 * cell['mean']:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def write_report(
    protocol: Protocol, *, results: Path, runs_dir: Path, root: str | Path | None = None, command: str = ""
) -> dict[str, Any]:
    """Regenerate ``{stem}.md``, ``{stem}.json`` and the pictures from the results file alone."""
    from sbcb.data.camvid import CAMVID_CLASSES

    rows = read_rows(results_file(results, protocol), protocol)
    st = stem(protocol)
    h, w = protocol.eval_size
    summaries = {m: study_summary(protocol, rows, m) for m in protocol.models}
    n_val = len(rows[0]["per_image_bf3"]) if rows else 101
    lines = [
        f"# CamVid study ({protocol.name} preset): baseline vs SBCB, paired seeds",
        "",
        f"`{command or 'python benchmarks/camvid_study.py report'}` — regenerated from "
        f"`{results_file(results, protocol).name}` ({len(rows)} finished runs of protocol `{protocol.hash()}`).",
        "",
        f"CamVid train -> val ({n_val} images) at **{h}x{w}**; boundary F radii 3/5/9/12 px are pixels of the {h}x{w} "
        f"image ({', '.join(f'{r / protocol.image_scale:g}' for r in protocol.eval_radii)} px at 360x480). "
        "Final checkpoints (`last.pt`) evaluated as `sbcb eval RUN/last.pt --dataset camvid --root DIR --split val`. "
        "Percent; differences in points.",
    ]
    outcome = outcome_text(protocol, rows, summaries[protocol.models[0]])
    lines += ["", outcome]
    for model, summ in summaries.items():
        sched = summ["schedule"]
        lines += ["", f"## {model} ({STUDY_MODELS[model]['arch']})", "", "### Schedule", ""]
        if len(protocol.ladder) > 1:
            probe = ", ".join(map(str, protocol.probe_seeds))
            lines += [f"Baseline mIoU at each rung of the ladder (seeds {probe}); gain = mean minus the previous rung.",
                      "", "| iterations | mIoU per seed | mean | gain |", "|---|---|---|---|"]  # fmt: skip
            for r in sched["rungs"]:
                per_seed = ", ".join(f"s{s}: {_pct(v)}" for s, v in sorted(r["miou"].items())) or "—"
                gain = "—" if r["gain"] is None else f"{100 * r['gain']:+.2f}"
                lines.append(f"| {r['iters']} | {per_seed} | {_pct(r['mean'])} | {gain} |")
            lines.append("")
        chosen = sched["chosen"]
        lines.append(f"Schedule: **{chosen if chosen is not None else 'not decided yet'}** — {sched['reason']}.")
        if chosen is None:
            continue
        lines += ["", "### Results (mean ± sample std over seeds)", ""]
        bf_cols = [f"BF {m[2:]}px" for m in protocol.metrics[1:]]
        lines += [
            "| " + " | ".join(["variant", "n", "mIoU", *bf_cols, "SBD mF"]) + " |",
            "|" + "---|" * (4 + len(bf_cols)),
        ]
        for v, e in summ["variants"].items():
            cells = " | ".join(_ms(e.get(m)) for m in (*protocol.metrics, "sbd_mf"))
            lines.append(f"| {v} | {e['n']} | {cells} |")
        for v, p in summ["paired"].items():
            lines += ["", f"### Paired differences: {v} − baseline (seeds {', '.join(map(str, p['seeds']))})", ""]
            lines += ["| metric | per seed | mean | std | 95 % t-interval | verdict |", "|" + "---|" * 6]
            for m in protocol.metrics:
                s = p[m]
                per = ", ".join(f"{100 * d:+.2f}" for d in s["differences"])
                ci = "—" if s["n"] < 2 else f"[{100 * s['low']:+.2f}, {100 * s['high']:+.2f}]"
                std = "—" if math.isnan(s["std"]) else f"{100 * s['std']:.2f}"
                mean = "—" if not s["n"] else f"{100 * s['mean']:+.2f}"
                lines.append(f"| Δ{m} | {per} | {mean} | {std} | {ci} | {verdict(s).split(' (')[0]} |")
            lines += ["", "Per-class IoU difference (mean, 95 % t-interval):", "",
                      "| class | mean | 95 % t-interval | verdict |", "|---|---|---|---|"]  # fmt: skip
            for name, s in zip(CAMVID_CLASSES, p["iou"]):
                ci = "—" if s["n"] < 2 else f"[{100 * s['low']:+.2f}, {100 * s['high']:+.2f}]"
                mean = "—" if not s["n"] else f"{100 * s['mean']:+.2f}"
                lines.append(f"| {name} | {mean} | {ci} | {verdict(s).split(' (')[0]} |")
            lines += ["", f"**Outcome ({v}):** ΔmIoU {verdict(p['miou'])}; ΔBF 3px {verdict(p['bf3'])}."]
        lines += ["", "Per run:", ""]
        lines += ["| " + " | ".join(["variant", "seed", "mIoU", *bf_cols, "SBD mF", "s/it", "commit"]) + " |"]
        lines += ["|" + "---|" * (6 + len(bf_cols))]
        for r in sorted((r for r in rows if r["model"] == model and r["iters"] == chosen),
                        key=lambda r: (r["seed"], r["variant"])):  # fmt: skip
            vals = " | ".join(_pct(r.get(m)) for m in (*protocol.metrics, "sbd_mf"))
            spi = "—" if r.get("sec_per_it") is None else f"{r['sec_per_it']:.2f}"
            lines.append(f"| {r['variant']} | {r['seed']} | {vals} | {spi} | {(r.get('git_commit') or '?')[:8]} |")
    pictures = _pictures(protocol, rows, summaries, results=results, runs_dir=runs_dir, root=root)
    if pictures:
        lines += ["", "Pictures: " + ", ".join(f"`{p}`" for p in pictures) + "."]
    lines += ["", "Protocol (fixed before the runs; see the script's docstring):", "", "```",
              *[f"{k}: {v}" for k, v in asdict(protocol).items()], f"hash: {protocol.hash()}", "```"]  # fmt: skip
    if protocol.amended_ladders:
        earlier = ", ".join(f"`{h}`" for h in protocol.accepted_hashes()[1:])
        lines += ["", f"Amendment: {AMENDMENT} Runs finished under the earlier ladder (hash {earlier}, which differs "
                  "from the current one by the ladder alone) count as this protocol's."]  # fmt: skip
    doc = {
        "benchmark": st,
        "protocol": asdict(protocol),
        "protocol_hash": protocol.hash(),
        "accepted_hashes": list(protocol.accepted_hashes()),
        "runs": len(rows),
        "outcome": outcome,
        "summary": summaries,
        "pictures": pictures,
        "environment": P.environment(),
        "generated_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    Path(results).mkdir(parents=True, exist_ok=True)
    (Path(results) / f"{st}.json").write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    (Path(results) / f"{st}.md").write_text("\n".join(lines) + "\n")
    return doc


# ------------------------------------------------------------------------------------------- outcome text

DOCS_MARK = ("<!-- camvid-study:outcome -->", "<!-- /camvid-study:outcome -->")
VARIANT_NAMES = {"casenet": "SBCB (CASENet)", "bbcb": "BBCB"}


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def outcome_text(protocol: Protocol, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """One paragraph of the primary model's outcome so far, generated from the result lines alone.

    README.md and docs/evidence.md carry it between `DOCS_MARK` (``report --docs`` rewrites it there), so
    every number they state comes from ``camvid_study_runs.jsonl``. Numbers in percent / points.
    """
    model = protocol.models[0]
    sched = summary["schedule"]
    n = sched["chosen"]
    if n is None:
        return f"Outcome so far: **not decided: the schedule probes are still running** ({sched['reason']})."
    done = finished(rows)
    parts: list[str] = []
    for v, p in summary["paired"].items():
        k, need = len(p["seeds"]), len(protocol.seeds)
        miou, bf3 = p["miou"], p[protocol.metrics[1]]
        name = VARIANT_NAMES.get(v, v)
        if k == 0:
            parts.append(f"**not decided: no paired seed of {name} yet**")
        elif k < need:
            per = "; ".join(f"seed {s}: ΔmIoU {_pts(a)}, ΔBF3 {_pts(b)}"
                            for s, a, b in zip(p["seeds"], miou["differences"], bf3["differences"]))  # fmt: skip
            so_far = (
                "one seed gives no interval" if k == 1 else
                f"so far ΔmIoU {verdict(miou)}, ΔBF3 {verdict(bf3)}"
            )  # fmt: skip
            parts.append(f"**not decided: {k} of {need} paired seeds** ({per} points; {so_far})")
        else:
            parts.append(
                f"{name} - baseline over {k} paired seeds: **ΔmIoU {_pts(miou['mean'])} points, "
                f"{verdict(miou)}; ΔBF3 {_pts(bf3['mean'])} points, {verdict(bf3)}**"
            )
    finished_at_n: list[str] = []
    for v in protocol.variants:
        seeds = [s for s in protocol.seeds if (model, v, n, s) in done]
        if not seeds:
            continue
        got = [done[(model, v, n, s)] for s in seeds]
        runs = ", ".join(f"seed {s} {100 * r['miou']:.1f} mIoU / {100 * r['bf3']:.1f} BF3" for s, r in zip(seeds, got))
        mf = [r.get("sbd_mf") for r in got]
        mf_text = "" if v == "baseline" or None in mf else " (SBD mF " + " / ".join(f"{100 * x:.1f}" for x in mf) + ")"
        finished_at_n.append(f"{VARIANT_NAMES.get(v, v)} {runs}{mf_text}")
    left = next_runs(protocol, rows)
    head = "Outcome so far" if left else "Outcome"
    text = f"{head}: {'; '.join(parts)}. At {n} iterations: {'; '.join(finished_at_n)}."
    rungs = [r for r in sched["rungs"] if r["miou"]]
    if len(rungs) > 1:
        probes = " / ".join(map(str, protocol.probe_seeds))
        per_rung = ", ".join(
            " / ".join(f"{100 * r['miou'][s]:.1f}" for s in protocol.probe_seeds if s in r["miou"])
            + (" mIoU" if i == 0 else "") + f" at {r['iters']}" + (" iterations" if i == 0 else "")
            for i, r in enumerate(rungs)
        )  # fmt: skip
        last_gain = rungs[-1]["gain"]
        if sched["reason"].startswith("budget limit"):
            why = (f"the last doubling still gained {_pts(last_gain)} points, so the study runs at **{n} iterations, "
                   "the budget limit, where the baseline is not yet converged**")  # fmt: skip
        else:
            why = f"the study runs at **{n} iterations** ({sched['reason']})"
        text += f" The schedule probes (baseline, seeds {probes}): {per_rung}; {why}."
    if left:
        by_variant = {v: [s.seed for s in left if s.variant == v] for v in protocol.variants}
        which = ", ".join(f"{v} seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))}"
                          for v, ss in by_variant.items() if ss)  # fmt: skip
        text += f" {len(left)} run{'s are' if len(left) > 1 else ' is'} left ({which})."
    else:
        text += " Every run of the study has finished."
    return text


def update_docs(paths: Iterable[Path], text: str) -> list[Path]:
    """Replace what stands between the `DOCS_MARK` pair in each file with ``text``; the files changed.

    A file without both markers is left alone (and not listed), so the command never writes where nobody asked.
    """
    start, end = DOCS_MARK
    changed = []
    for path in paths:
        old = Path(path).read_text()
        i, j = old.find(start), old.find(end)
        if i < 0 or j < i:
            continue
        new = old[: i + len(start)] + text + old[j:]
        if new != old:
            Path(path).write_text(new)
            changed.append(Path(path))
    return changed


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _pictures(
    protocol: Protocol,
    rows: Sequence[Mapping[str, Any]],
    summaries: Mapping[str, Any],
    *,
    results: Path,
    runs_dir: Path,
    root: str | Path | None,
) -> list[str]:
    """Curves and paired-difference plots from the results file; the boundary picture when predictions exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = stem(protocol)
    names: list[str] = []
    model = protocol.models[0]
    summ = summaries[model]
    chosen = summ["schedule"]["chosen"]
    done = finished(rows)
    if not rows:
        return names
    # validation curves: every variant at the chosen schedule (thin: seeds, thick: mean) + the ladder probes
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=90)
    colours = {"baseline": "#3182bd", "casenet": "#e6550d", "bbcb": "#31a354"}
    for ax, metric, label in zip(axes[:2], ("miou", "bf3"), ("val mIoU (%)", "val BF 3 px (%)")):
        for v in protocol.variants:
            curves = [done[(model, v, chosen, s)]["curve"] for s in protocol.seeds if (model, v, chosen, s) in done]
            curves = [c for c in curves if c]
            for c in curves:
                ax.plot([p["step"] for p in c], [100 * p[metric] for p in c], color=colours.get(v), lw=0.6, alpha=0.4)
            if curves and all(len(c) == len(curves[0]) for c in curves):
                mean = [statistics.fmean(100 * c[i][metric] for c in curves) for i in range(len(curves[0]))]
                steps = [p["step"] for p in curves[0]]
                ax.plot(steps, mean, color=colours.get(v), lw=2, label=f"{v} (n={len(curves)})")
        ax.set(xlabel="iteration", ylabel=label, title=f"{model}, {chosen} iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for n in protocol.ladder:
        for s in protocol.probe_seeds:
            r = done.get((model, "baseline", n, s))
            if r and r["curve"]:
                ax.plot([p["step"] for p in r["curve"]], [100 * p["miou"] for p in r["curve"]], lw=1,
                        label=f"{n} it, seed {s}")  # fmt: skip
    ax.set(xlabel="iteration", ylabel="val mIoU (%)", title="baseline schedule ladder")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(Path(results) / f"{st}_curves.png")
    plt.close(fig)
    names.append(f"{st}_curves.png")

    paired = summ["paired"]
    if paired:
        fig, ax = plt.subplots(figsize=(7, 3.4), dpi=90)
        x = 0
        ticks = []
        for v, p in paired.items():
            for m in protocol.metrics:
                s = p[m]
                ax.scatter([x] * s["n"], [100 * d for d in s["differences"]], color="k", s=10, zorder=3)
                if s["n"] > 1:
                    ax.errorbar([x + 0.2], [100 * s["mean"]], yerr=[[100 * (s["mean"] - s["low"])],
                                [100 * (s["high"] - s["mean"])]], fmt="o", color=colours.get(v), capsize=3)  # fmt: skip
                ticks.append((x, f"Δ{m}" if len(paired) == 1 else f"{v} Δ{m}"))
                x += 1
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks([t for t, _ in ticks], [n for _, n in ticks], rotation=20, fontsize=8)
        ax.set_ylabel("paired difference (points)")
        ax.set_title("per-seed differences (dots), mean and 95 % t-interval", fontsize=9)
        fig.tight_layout()
        fig.savefig(Path(results) / f"{st}_paired.png")
        plt.close(fig)
        names.append(f"{st}_paired.png")
        picture = _boundary_picture(protocol, done, model, chosen, results=results, runs_dir=runs_dir, root=root)
        if picture:
            names.append(picture)
    return names


def _has_preds(
    protocol: Protocol, model: str, variant: str, iters: int, seed: int, *, results: Path, runs_dir: Path
) -> bool:
    """Whether both runs of a seed (baseline and `variant`) have val predictions, kept or in their run folders."""
    specs = [RunSpec(model, v, iters, seed) for v in ("baseline", variant)]
    return all(
        preds_file(results, protocol, s).exists() or (s.folder(runs_dir) / "val_pred.npz").exists() for s in specs
    )


def _boundary_picture(
    protocol: Protocol,
    done: Mapping[tuple[str, str, int, int], Mapping[str, Any]],
    model: str,
    chosen: int,
    *,
    results: Path,
    runs_dir: Path,
    root: str | Path | None,
    rows_shown: int = 4,
) -> str | None:
    """Val images with the largest per-image BF 3 px difference (SBCB - baseline) of one seed's paired runs.

    Columns: image, GT, baseline prediction, SBCB prediction. Uses the first paired seed whose two runs have val
    predictions (`preds_file`, else the run folders' ``val_pred.npz``) and needs the CamVid root; None otherwise.
    """
    import numpy as np

    if root is None:
        return None
    variant = next((v for v in protocol.variants if v != "baseline"), None)
    if variant is None:
        return None
    paired = [
        s for s in protocol.seeds if (model, "baseline", chosen, s) in done and (model, variant, chosen, s) in done
    ]
    seed = next(
        (s for s in paired if _has_preds(protocol, model, variant, chosen, s, results=results, runs_dir=runs_dir)), None
    )
    if seed is None:
        return None
    base, other = done[(model, "baseline", chosen, seed)], done[(model, variant, chosen, seed)]
    paths = []
    for v in ("baseline", variant):  # the copy kept with the results, else the run folder's
        spec = RunSpec(model, v, chosen, seed)
        kept = preds_file(results, protocol, spec)
        paths.append(kept if kept.exists() else spec.folder(runs_dir) / "val_pred.npz")
    if not all(p.exists() for p in paths):
        return None
    from sbcb.data.camvid import CAMVID_INFO, CamVid
    from sbcb.data.transforms import Rescale
    from sbcb.viz import colorize, save_png

    diff = np.asarray(other["per_image_bf3"]) - np.asarray(base["per_image_bf3"])
    order = np.argsort(-np.abs(diff))[:rows_shown]
    preds = [np.load(p)["preds"] for p in paths]
    raw = CamVid(root, "val")
    rescale = Rescale(protocol.image_scale)
    tiles_rows = []
    for i in order:
        sample = raw[int(i)]
        image, label, _ = rescale(sample["image"], sample["label"])
        tiles = [image, colorize(label, CAMVID_INFO.colors, ignore_index=CAMVID_INFO.ignore_index)]
        tiles += [colorize(p[int(i)], CAMVID_INFO.colors) for p in preds]
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        tiles_rows.append(np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
    hgap = np.full((4, tiles_rows[0].shape[1], 3), 255, np.uint8)
    name = f"{stem(protocol)}_boundaries.png"
    save_png(Path(results) / name, np.concatenate([t for r in tiles_rows for t in (r, hgap)][:-1], axis=0))
    (Path(results) / f"{stem(protocol)}_boundaries.txt").write_text(
        f"seed {seed}; rows: val images {', '.join(base['image_names'][int(i)] for i in order)}; "
        f"BF3 {variant} - baseline: {', '.join(f'{100 * diff[int(i)]:+.1f}' for i in order)} points; "
        "columns: image, GT, baseline, " + variant + "\n"
    )
    return name


# ------------------------------------------------------------------------------------------- plan


def plan(protocol: Protocol, *, results: Path, step_seconds: Mapping[str, float], val_seconds: float) -> str:
    """The run list (finished, startable now, later) and the expected wall time per schedule outcome."""
    rows = read_rows(results_file(results, protocol), protocol)
    done = finished(rows)
    lines = [f"protocol {protocol.name} ({protocol.hash()}): {len(done)} runs finished"]
    for model in protocol.models:
        d = schedule_decision(protocol, rows, model)
        lines.append(f"{model}: schedule {d['chosen'] or 'undecided'} ({d['reason']})")
    now = next_runs(protocol, rows)
    lines.append(f"startable now ({len(now)}): " + ", ".join(f"{s.variant}-{s.iters}it-seed{s.seed}" for s in now))

    def run_hours(variant: str, iters: int) -> float:
        sps = step_seconds["baseline" if variant == "baseline" else "sbcb"]
        return (iters * sps + (iters / protocol.val_every + 1) * val_seconds) / 3600

    lines.append(f"step seconds: {dict(step_seconds)}, validation {val_seconds:.0f} s; {protocol.parallel} in parallel")
    chosen = {schedule_decision(protocol, rows, m)["chosen"] for m in protocol.models}
    for i, n in enumerate(protocol.ladder):
        if None not in chosen and n not in chosen:
            continue  # decided: only the chosen schedule's remaining runs matter
        # the runs this outcome needs: probes up to rung i+1, then every seed and variant at n
        needed = {(m, "baseline", r, s) for m in protocol.models for r in protocol.ladder[: i + 2]
                  for s in protocol.probe_seeds}  # fmt: skip
        needed |= {(m, v, n, s) for m in protocol.models for v in protocol.variants for s in protocol.seeds}
        left = [k for k in needed if k not in done]
        hours = sum(run_hours(k[1], k[2]) for k in left) / protocol.parallel
        lines.append(f"if the schedule is {n}: {len(left)} runs left, about {hours:.1f} h wall")
    return "\n".join(lines)


def logged_step_seconds(rows: Iterable[Mapping[str, Any]]) -> dict[str, float] | None:
    """Median logged ``sec_per_it`` of the finished runs, for ``baseline`` and for the SBCB variants (``sbcb``);
    None unless both kinds have one. What `plan` assumes by default: this machine's speed as the runs saw it."""
    kinds: dict[str, list[float]] = {"baseline": [], "sbcb": []}
    for r in rows:
        if r.get("sec_per_it"):
            kinds["baseline" if r["variant"] == "baseline" else "sbcb"].append(float(r["sec_per_it"]))
    if not all(kinds.values()):
        return None
    return {k: round(statistics.median(v), 3) for k, v in kinds.items()}


def measure(protocol: Protocol, root: str | Path, iters: int = 12) -> tuple[dict[str, float], float]:
    """Seconds per training step (median of the logged steps after the first 2) and one validation's seconds."""
    import tempfile

    step: dict[str, float] = {}
    val = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for variant, key in (("baseline", "baseline"), ("casenet", "sbcb")):
            spec = RunSpec(protocol.models[0], variant, iters, 0)
            cfg = study_config(dataclasses.replace(protocol, val_every=iters), spec, root=root, runs_dir=Path(tmp))
            cfg = cfg.replace(log_every=1)
            from sbcb.train import run_training

            t0 = time.perf_counter()
            run_training(cfg)
            out = spec.folder(Path(tmp))
            secs = [float(r["sec_per_it"]) for r in csv.DictReader((out / "train_log.csv").open())][2:]
            step[key] = statistics.median(secs)
            val = max(val, time.perf_counter() - t0 - sum(secs) - 2 * step[key])
    return step, val


QUICK_SUBSET = (16, 8)  # --quick: train / val images


def subset_root(root: str | Path, where: Path, *, n_train: int, n_val: int) -> Path:
    """A CamVid root holding only the first images of train and val (`--quick`): links plus list files."""
    where.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in (split, f"{split}annot"):
            link = where / folder
            if not link.exists():
                link.symlink_to(Path(root).resolve() / folder, target_is_directory=True)
        names = sorted(p.name for p in (Path(root) / split).glob("*.png"))[:n]
        (where / f"{split}.txt").write_text("".join(f"{split}/{x} {split}annot/{x}\n" for x in names))
    return where


# ------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("plan", "run", "report", "_job"))
    p.add_argument("job", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "camvid"), help="CamVid folder")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    preset.add_argument("--gpu", dest="preset", action="store_const", const="gpu", help="= --preset gpu")
    preset.add_argument("--quick", dest="preset", action="store_const", const="quick", help="= --preset quick")
    p.add_argument("--models", nargs="+", choices=sorted(STUDY_MODELS), help="default: lraspp (the primary)")
    p.add_argument("--variants", nargs="+", choices=sorted(STUDY_VARIANTS), help="default: baseline casenet")
    p.add_argument("--parallel", type=int, help="runs at once (default: the preset's, 2)")
    p.add_argument("--workers", type=int, help="DataLoader workers per run (default: the preset's; speed only)")
    p.add_argument("--max-runs", type=int, help="start at most this many runs in this invocation")
    p.add_argument(
        "--pick",
        nargs="+",
        metavar="VARIANT:SEED",
        type=_variant_seed,
        help="run only these startable runs, in this order (e.g. casenet:0 baseline:2)",
    )
    p.add_argument("--inline", action="store_true", help="run here, one after the other (no child processes)")
    p.add_argument("--runs-dir", type=Path, help=f"run folders (default: {RUNS}, or {RUNS}_<preset>)")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help=f"results (default: {RESULTS})")
    p.add_argument("--docs", action="store_true",
                   help="report: also write the outcome paragraph into README.md and docs/evidence.md (between "
                   f"{DOCS_MARK[0]} and {DOCS_MARK[1]})")  # fmt: skip
    p.add_argument("--measure", action="store_true", help="plan: measure a step of each variant now")
    p.add_argument("--step-seconds", type=float, nargs=2, metavar=("BASE", "SBCB"),
                   help="plan: seconds per step (default: the median logged by the finished runs, else the "
                   "docstring's busy-machine measurement 1.4 3.9)")  # fmt: skip
    p.add_argument("--val-seconds", type=float,
                   help="plan: seconds per validation (default: 10 with the logged step times, measured 2026-12-06; "
                   "45 with the busy-machine ones)")  # fmt: skip
    return p.parse_args(argv)


def _variant_seed(text: str) -> tuple[str, int]:
    variant, _, seed = text.partition(":")
    if variant not in STUDY_VARIANTS or not seed.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected VARIANT:SEED with VARIANT in {sorted(STUDY_VARIANTS)}, got {text!r}"
        )
    return variant, int(seed)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "_job":  # a child process of `run`
        job = json.loads(args.job)
        protocol = protocol_from_dict(job["protocol"])
        spec = RunSpec(**job["spec"])
        from sbcb.train.loop import TrainingInterrupted

        try:
            run_one(protocol, spec, root=job["root"], runs_dir=Path(job["runs_dir"]), results=Path(job["results"]))
        except TrainingInterrupted as e:  # Ctrl-C / SIGTERM: saved; one line, not a traceback
            print(f"camvid_study: {spec}: {e}", flush=True)
            return 128 + int(e.signum)
        return 0
    protocol = PRESETS[args.preset]
    changes: dict[str, Any] = {}
    if args.models:
        changes["models"] = tuple(args.models)
    if args.variants:
        changes["variants"] = tuple(dict.fromkeys(["baseline", *args.variants]))
    if args.parallel:
        changes["parallel"] = args.parallel
    if args.workers is not None:
        changes["workers"] = args.workers
    protocol = dataclasses.replace(protocol, **changes)
    command = "python benchmarks/camvid_study.py " + " ".join(_portable(argv if argv is not None else sys.argv[1:]))
    if args.runs_dir is None:
        args.runs_dir = RUNS.parent / stem(protocol)
    if protocol.name == "quick" and Path(args.root).is_dir():  # a smoke run: 16 train / 8 val images
        args.root = str(subset_root(args.root, args.runs_dir / "quick_camvid", n_train=QUICK_SUBSET[0],
                                    n_val=QUICK_SUBSET[1]))  # fmt: skip
    if args.command == "plan":
        logged = logged_step_seconds(read_rows(results_file(args.results_dir, protocol), protocol))
        if args.step_seconds:
            step, val = {"baseline": args.step_seconds[0], "sbcb": args.step_seconds[1]}, 45.0
        elif logged:
            step, val = logged, 10.0  # the runs' own speed; one validation took ~9 s alongside it (2026-12-06)
        else:
            step, val = {"baseline": 1.4, "sbcb": 3.9}, 45.0  # the docstring's busy-machine measurement
        if args.val_seconds is not None:
            val = args.val_seconds
        if args.measure:
            import torch

            torch.set_num_threads(protocol.threads)
            step, val = measure(protocol, args.root)
            print(f"measured (load average {os.getloadavg()[0]:.1f}): {step}, validation {val:.0f} s")
        print(plan(protocol, results=args.results_dir, step_seconds=step, val_seconds=val))
        return 0
    if args.command == "run":
        from sbcb.data.camvid import CamVid

        try:
            CamVid(args.root, "train"), CamVid(args.root, "val")
        except Exception as e:  # a wrong --root says so before any run starts
            print(f"error: can't read CamVid under {args.root}: {e}", file=sys.stderr)
            return 2
        return run_study(protocol, root=args.root, runs_dir=args.runs_dir, results=args.results_dir,
                         max_runs=args.max_runs, inline=args.inline, pick=args.pick)  # fmt: skip
    root = args.root if Path(args.root).exists() else None
    doc = write_report(protocol, results=args.results_dir, runs_dir=args.runs_dir, root=root, command=command)
    print((args.results_dir / f"{doc['benchmark']}.md").read_text())
    if args.docs:
        changed = update_docs([REPO / "README.md", REPO / "docs" / "evidence.md"], doc["outcome"])
        print("outcome written to: " + (", ".join(str(p.relative_to(REPO)) for p in changed) or "nothing changed"))
    return 0


def _portable(argv: Sequence[str]) -> list[str]:
    """The command line as a reader can rerun it: without options that only say where this machine keeps things.

    ``--runs-dir`` only adds predictions of runs whose folders are still here; finished runs' predictions are
    kept with the results, so the report reads the same without it.
    """
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--runs-dir":
            skip = True
        elif not a.startswith("--runs-dir="):
            out.append(a)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
