"""benchmarks/camvid_study.py: the --quick path on a fake CamVid folder, the statistics, the schedule rule and
the results file's accumulation and resume logic. Never the real CamVid."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
pytest.importorskip("scipy")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "camvid_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("camvid_study", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["camvid_study"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def camvid(tmp_path):
    """A fake CamVid (SegNet layout): 3 train and 2 val images of 64x96 with road, sky, a car and a void corner."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for i in range(n):
            label = np.zeros((64, 96), np.uint8)  # sky
            label[32:] = 3  # road
            label[20:50, 10 + 8 * i : 40 + 8 * i] = 8  # car
            label[:4, :4] = 11  # void
            image = np.stack([label * 20, label * 10, 255 - label * 20], -1) + rng.integers(0, 20, (64, 96, 3))
            cv2.imwrite(str(tmp_path / split / f"f{i}.png"), image.astype(np.uint8))
            cv2.imwrite(str(tmp_path / f"{split}annot" / f"f{i}.png"), label)
    return tmp_path


def tiny(study, **changes):
    """The quick preset made tinier still: half of 64x96 images, 32x48 crops, 3 iterations, a checkpoint each."""
    base = dict(image_scale=0.5, crop=(32, 48), ladder=(3,), ckpt_every=1, val_every=3, eval_sbd_thresholds=3,
                val_sbd_thresholds=3, eval_radii=(3,))  # fmt: skip
    return dataclasses.replace(study.PRESETS["quick"], **{**base, **changes})


# ------------------------------------------------------------------------------------------- statistics


def test_paired_stats_hand_worked(study):
    # d = 1, 2, 3: mean 2, std sqrt(((-1)^2 + 0 + 1^2) / 2) = 1; t(0.975, 2 dof) = 4.302653;
    # half-width 4.302653 * 1 / sqrt(3) = 2.484138 -> [-0.484138, 4.484138] contains 0: not established.
    s = study.paired_stats([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    assert s["low"] == pytest.approx(-0.484138, abs=1e-6) and s["high"] == pytest.approx(4.484138, abs=1e-6)
    assert not s["established"]
    assert study.verdict(s, scale=1.0, unit="pt") == "not established at this scale (95 % CI [-0.48, +4.48] pt)"
    # d = 0.02 .. 0.06 (5 seeds): mean 0.04, std sqrt((4+1+0+1+4)e-4 / 4) = 0.0158114; t(0.975, 4) = 2.776445;
    # half-width 2.776445 * 0.0158114 / sqrt(5) = 0.0196324 -> [0.0203676, 0.0596324] excludes 0: a gain.
    s = study.paired_stats([0.02, 0.03, 0.04, 0.05, 0.06])
    assert s["std"] == pytest.approx(0.0158114, abs=1e-7)
    assert s["low"] == pytest.approx(0.0203676, abs=1e-7) and s["high"] == pytest.approx(0.0596324, abs=1e-7)
    assert s["established"] and study.verdict(s).startswith("established gain (95 % CI [+2.04, +5.96] points")
    # the same differences negated are an established loss; one seed has no interval
    assert study.verdict(study.paired_stats([-0.02, -0.03, -0.04, -0.05, -0.06])).startswith("established loss")
    one = study.paired_stats([0.5])
    assert not one["established"] and study.verdict(one) == "not established at this scale (1 paired seed)"


def _row(study, protocol, variant, iters, seed, miou):
    return {"model": "lraspp", "variant": variant, "iters": iters, "seed": seed, "miou": miou,
            "protocol_hash": protocol.hash()}  # fmt: skip


def test_schedule_rule(study):
    protocol = study.PRESETS["cpu"]  # ladder 2000, 4000, 8000; probe seeds 0, 1; 1 point
    rows = []
    d = study.schedule_decision(protocol, rows, "lraspp")
    assert d["chosen"] is None and [(s.iters, s.seed) for s in d["needed"]] == [(2000, 0), (2000, 1), (4000, 0),
                                                                               (4000, 1)]  # fmt: skip
    # 2000 -> 4000 gains ((0.45 - 0.40) + (0.47 - 0.42)) / 2 = 0.05 = 5 points: go on to 8000
    rows += [_row(study, protocol, "baseline", n, s, m) for n, s, m in
             [(2000, 0, 0.40), (2000, 1, 0.42), (4000, 0, 0.45), (4000, 1, 0.47)]]  # fmt: skip
    d = study.schedule_decision(protocol, rows, "lraspp")
    assert d["chosen"] is None and [(s.iters, s.seed) for s in d["needed"]] == [(8000, 0), (8000, 1)]
    assert d["rungs"][1]["gain"] == pytest.approx(0.05)
    # 4000 -> 8000 gains ((0.452 - 0.45) + (0.478 - 0.47)) / 2 = 0.005 = 0.5 point < 1: 4000 is the schedule
    rows += [_row(study, protocol, "baseline", 8000, 0, 0.452), _row(study, protocol, "baseline", 8000, 1, 0.478)]
    d = study.schedule_decision(protocol, rows, "lraspp")
    assert d["chosen"] == 4000 and "+0.50 mIoU points" in d["reason"]
    # next: every seed and variant at 4000 except the two finished baseline probes, seed-major
    todo = study.next_runs(protocol, rows)
    assert [(s.variant, s.seed) for s in todo][:3] == [("casenet", 0), ("casenet", 1), ("baseline", 2)]
    assert len(todo) == 8 and {s.iters for s in todo} == {4000}
    # a ladder that never flattens ends at the budget limit
    big = [_row(study, protocol, "baseline", n, s, 0.1 * i) for i, n in enumerate(protocol.ladder) for s in (0, 1)]
    d = study.schedule_decision(protocol, big, "lraspp")
    assert d["chosen"] == 8000 and d["reason"].startswith("budget limit")


def test_amended_ladder_keeps_earlier_runs(study, tmp_path):
    protocol = study.PRESETS["cpu"]
    # the hash the first runs were tagged with (committed result lines) is this protocol with the old ladder
    # alone: nothing that trains or evaluates a run changed
    old = dataclasses.replace(protocol, ladder=(2000, 4000, 8000, 16000))
    assert old.hash() == "df30ca8cd931" and protocol.accepted_hashes() == (protocol.hash(), "df30ca8cd931")
    path = study.results_file(tmp_path / "results", protocol)
    rows = [{**_row(study, protocol, "baseline", n, s, m), "protocol_hash": "df30ca8cd931", "iou": [m] * 11,
             "curve": [{"step": n, "miou": m, "bf3": 0.2}], "per_image_bf3": [0.5], "image_names": ["a"],
             **{f"bf{r}": m / 2 for r in (3, 5, 9, 12)}}
            for n, s, m in [(2000, 0, 0.40), (2000, 1, 0.42), (4000, 0, 0.45), (4000, 1, 0.47), (8000, 0, 0.48),
                            (8000, 1, 0.50)]]  # fmt: skip
    rows.append({**_row(study, protocol, "casenet", 8000, 0, 0.9), "protocol_hash": "0123456789ab"})  # other
    for row in rows:
        study.append_row(path, row)
    read = study.read_rows(path, protocol)
    assert len(read) == 6  # the foreign-hash line is not this protocol's
    # 4000 -> 8000 gained ((0.48 - 0.45) + (0.50 - 0.47)) / 2 = 3 points and 8000 is the last rung: budget limit
    d = study.schedule_decision(protocol, read, "lraspp")
    assert d["chosen"] == 8000 and d["reason"].startswith("budget limit") and "+3.00" in d["reason"]
    todo = study.next_runs(protocol, read)
    assert [(s.variant, s.seed) for s in todo][:3] == [("casenet", 0), ("casenet", 1), ("baseline", 2)]
    assert len(todo) == 8
    # --pick casenet:2 baseline:0: a finished run is not startable, the rest keep pick's order
    assert study.parse_args(["run", "--pick", "casenet:2", "baseline:0"]).pick == [("casenet", 2), ("baseline", 0)]
    assert [(s.variant, s.seed) for s in study.picked(todo, [("casenet", 2), ("baseline", 0)])] == [("casenet", 2)]
    assert [(s.variant, s.seed) for s in study.picked(todo, [("baseline", 3), ("casenet", 1)])] == [
        ("baseline", 3), ("casenet", 1)]  # fmt: skip
    with pytest.raises(SystemExit):
        study.parse_args(["run", "--pick", "casenet"])
    # the report states the schedule, the amendment and the earlier hash
    doc = study.write_report(protocol, results=tmp_path / "results", runs_dir=tmp_path / "runs")
    md = (tmp_path / "results" / "camvid_study.md").read_text()
    assert doc["accepted_hashes"] == [protocol.hash(), "df30ca8cd931"] and doc["runs"] == 6
    assert "Schedule: **8000** — budget limit: doubling 4000 -> 8000 still gained +3.00 mIoU points" in md
    assert "Amendment: on 2026-12-06, before any SBCB run had started" in md and "`df30ca8cd931`" in md
    # --workers changes speed, not the protocol's hash
    assert study.parse_args(["run", "--workers", "1"]).workers == 1
    assert dataclasses.replace(protocol, workers=1, parallel=1).hash() == protocol.hash()
    # the amendment survives the child process's JSON round trip
    assert study.protocol_from_dict(json.loads(json.dumps(dataclasses.asdict(protocol)))) == protocol


def test_seed_pairing_same_init_stream_and_schedule(study, camvid, tmp_path):
    from sbcb.models import build_model, strip_model
    from sbcb.train.loop import seed_everything
    from sbcb.train.run import model_kwargs

    protocol = tiny(study)
    cfgs = [study.study_config(protocol, study.RunSpec("lraspp", v, 3, 7), root=camvid, runs_dir=tmp_path)
            for v in ("baseline", "casenet")]  # fmt: skip
    base, sbcb = cfgs
    # same data, transforms, optimisation, seed and schedule; only the head differs
    assert base.data == sbcb.data and base.train == sbcb.train and base.train.seed == 7
    assert (base.model.sbcb_head, sbcb.model.sbcb_head) == ("none", "casenet")
    models = []
    for cfg in cfgs:  # as run_training builds them
        seed_everything(cfg.train.seed)
        models.append(strip_model(build_model(**model_kwargs(cfg, 11))))
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # weights and BN buffers


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow  # 4 runs with evaluation: about 8 s of CPU
def test_quick_end_to_end_then_report(study, camvid, tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    where = ["--root", str(camvid), "--runs-dir", str(runs), "--results-dir", str(results)]
    assert study.main(["run", "--quick", "--inline", *where]) == 0
    protocol = study.PRESETS["quick"]
    rows = study.read_rows(study.results_file(results, protocol), protocol)
    assert sorted((r["variant"], r["seed"]) for r in rows) == [("baseline", 0), ("baseline", 1), ("casenet", 0),
                                                                ("casenet", 1)]  # fmt: skip
    row = next(r for r in rows if r["variant"] == "casenet")
    assert row["bf_radii_px_at_eval_size"] == [3, 5, 9, 12] and len(row["iou"]) == 11 and row["sbd_mf"] is not None
    assert len(row["per_image_bf3"]) == 2 and [p["step"] for p in row["curve"]] == [2, 4]
    assert row["git_commit"] and row["protocol_hash"] == protocol.hash()
    # the recorded metrics are those of `sbcb eval RUN/last.pt` with the study's settings
    run_dir = runs / "lraspp" / "casenet-4it" / "seed0"
    stored = json.loads((run_dir / "eval_val" / "eval.json").read_text())
    seed0 = next(r for r in rows if r["variant"] == "casenet" and r["seed"] == 0)
    assert seed0["miou"] == stored["miou"] and seed0["bf12"] == stored["bf12"]

    # each run's val predictions are kept with the results, so the report's pictures need no run folder
    kept = sorted(p.name for p in (results / "camvid_study_quick_preds").iterdir())
    assert kept == [f"lraspp-{v}-4it-seed{s}.npz" for v in ("baseline", "casenet") for s in (0, 1)]
    assert np.load(results / "camvid_study_quick_preds" / kept[0])["preds"].shape == (2, 16, 24)  # 2 val at 1/4
    shutil.rmtree(runs / "lraspp")
    assert study.main(["report", "--quick", *where]) == 0
    md = (results / "camvid_study_quick.md").read_text()
    assert "Paired differences: casenet − baseline (seeds 0, 1)" in md and "95 % t-interval" in md
    doc = json.loads((results / "camvid_study_quick.json").read_text())
    assert doc["summary"]["lraspp"]["paired"]["casenet"]["miou"]["n"] == 2
    assert set(doc["pictures"]) == {f"camvid_study_quick_{p}.png" for p in ("curves", "paired", "boundaries")}
    assert all((results / p).stat().st_size > 0 for p in doc["pictures"])


def test_report_from_the_results_file_alone(study, tmp_path):
    protocol = study.PRESETS["quick"]  # one fixed schedule (4 iterations), seeds 0 and 1
    results = tmp_path / "results"
    path = study.results_file(results, protocol)
    for seed, base, gain in ((0, 0.30, 0.02), (1, 0.34, 0.04)):
        for variant, miou in (("baseline", base), ("casenet", base + gain)):
            row = {**_row(study, protocol, variant, 4, seed, miou), "iou": [miou] * 11, "sbd_mf": None,
                   "curve": [{"step": 2, "miou": miou / 2, "bf3": 0.1}, {"step": 4, "miou": miou, "bf3": 0.2}],
                   "per_image_bf3": [0.5, 0.6], "image_names": ["a", "b"], "git_commit": "abc"}  # fmt: skip
            row.update({f"bf{r}": miou / 2 for r in (3, 5, 9, 12)})
            study.append_row(path, row)
    doc = study.write_report(protocol, results=results, runs_dir=tmp_path / "runs")
    paired = doc["summary"]["lraspp"]["paired"]["casenet"]
    # differences 0.02 and 0.04: mean 0.03, std sqrt(2) * 0.01 = 0.0141421; t(0.975, 1) = 12.706205;
    # half-width 12.706205 * 0.0141421 / sqrt(2) = 0.1270620 -> [-0.0970620, 0.1570620]: not established
    assert paired["miou"]["mean"] == pytest.approx(0.03) and paired["miou"]["low"] == pytest.approx(-0.097062, abs=1e-6)
    assert paired["bf3"]["mean"] == pytest.approx(0.015) and not paired["miou"]["established"]
    md = (results / "camvid_study_quick.md").read_text()
    assert "| Δmiou | +2.00, +4.00 | +3.00 | 1.41 | [-9.71, +15.71] | not established at this scale |" in md
    assert "**Outcome (casenet):** ΔmIoU not established at this scale (95 % CI [-9.71, +15.71] points)" in md
    assert doc["pictures"] == ["camvid_study_quick_curves.png", "camvid_study_quick_paired.png"]  # no predictions


def _full_row(study, protocol, variant, iters, seed, miou, bf3, sbd_mf=None):
    row = {**_row(study, protocol, variant, iters, seed, miou), "iou": [miou] * 11, "sbd_mf": sbd_mf, "bf3": bf3}
    return {**row, **{f"bf{r}": bf3 for r in (5, 9, 12)}}


def test_outcome_text_and_docs_from_the_results_file(study, tmp_path):
    protocol = study.PRESETS["cpu"]
    # probes: 2000 -> 4000 gains 5 points, 4000 -> 8000 gains ((0.48 - 0.45) + (0.50 - 0.47)) / 2 = 3: budget limit
    probes = [(2000, 0, 0.40), (2000, 1, 0.42), (4000, 0, 0.45), (4000, 1, 0.47), (8000, 0, 0.48), (8000, 1, 0.50)]
    rows = [_full_row(study, protocol, "baseline", n, s, m, 0.40) for n, s, m in probes]
    rows.append(_full_row(study, protocol, "casenet", 8000, 0, 0.50, 0.42, sbd_mf=0.14))
    text = study.outcome_text(protocol, rows, study.study_summary(protocol, rows, "lraspp"))
    assert text == (
        "Outcome so far: **not decided: 1 of 5 paired seeds** (seed 0: ΔmIoU +2.00, ΔBF3 +2.00 points; one seed "
        "gives no interval). At 8000 iterations: baseline seed 0 48.0 mIoU / 40.0 BF3, seed 1 50.0 mIoU / 40.0 BF3; "
        "SBCB (CASENet) seed 0 50.0 mIoU / 42.0 BF3 (SBD mF 14.0). The schedule probes (baseline, seeds 0 / 1): "
        "40.0 / 42.0 mIoU at 2000 iterations, 45.0 / 47.0 at 4000, 48.0 / 50.0 at 8000; the last doubling still "
        "gained +3.00 points, so the study runs at **8000 iterations, the budget limit, where the baseline is not "
        "yet converged**. 7 runs are left (baseline seeds 2, 3, 4, casenet seeds 1, 2, 3, 4)."
    )
    # all 5 seeds: mIoU differences 2..6 points -> the hand-worked interval of test_paired_stats_hand_worked,
    # [+2.04, +5.96]; BF3 differences 2, 0, 3, -1, 1 points: mean 1, deviations 1, -1, 2, -2, 0 -> std sqrt(10 / 4)
    # = 1.5811; half-width t(0.975, 4) 2.776445 * 1.5811 / sqrt(5) = 1.9632 -> [-0.96, +2.96]: not established
    base = {2: 0.49, 3: 0.47, 4: 0.46}
    rows += [_full_row(study, protocol, "baseline", 8000, s, m, 0.40) for s, m in base.items()]
    rows = [r for r in rows if r["variant"] != "casenet"]
    for s, b, dm, db in zip(range(5), (0.48, 0.50, 0.49, 0.47, 0.46), (0.02, 0.03, 0.04, 0.05, 0.06),
                            (0.02, 0.0, 0.03, -0.01, 0.01)):  # fmt: skip
        rows.append(_full_row(study, protocol, "casenet", 8000, s, b + dm, 0.40 + db, sbd_mf=0.1))
    text = study.outcome_text(protocol, rows, study.study_summary(protocol, rows, "lraspp"))
    assert text.startswith(
        "Outcome: SBCB (CASENet) - baseline over 5 paired seeds: **ΔmIoU +4.00 points, established gain "
        "(95 % CI [+2.04, +5.96] points); ΔBF3 +1.00 points, not established at this scale (95 % CI [-0.96, +2.96] "
        "points)**. At 8000 iterations: baseline seed 0 48.0 mIoU / 40.0 BF3, "
    )
    assert text.endswith("Every run of the study has finished.")

    # --docs rewrites only what stands between the markers, in files that have both
    start, end = study.DOCS_MARK
    marked, plain = tmp_path / "README.md", tmp_path / "other.md"
    marked.write_text(f"Intro. {start}old outcome{end}\nNext line.\n")
    plain.write_text("No markers here.\n")
    assert study.update_docs([marked, plain], "New outcome.") == [marked]
    assert marked.read_text() == f"Intro. {start}New outcome.{end}\nNext line.\n"
    assert plain.read_text() == "No markers here.\n"
    assert study.update_docs([marked], "New outcome.") == []  # unchanged: nothing written
    # the report's recorded command line holds nothing machine-specific
    assert study._portable(["report", "--runs-dir", "/work/x", "--root", "r", "--runs-dir=/y"]) == ["report", "--root",
                                                                                                 "r"]  # fmt: skip


def test_plan_assumes_the_logged_speed_of_finished_runs(study, tmp_path):
    protocol = study.PRESETS["cpu"]
    probes = [(2000, 0, 0.40), (2000, 1, 0.42), (4000, 0, 0.45), (4000, 1, 0.47), (8000, 0, 0.48), (8000, 1, 0.50)]
    rows = [{**_full_row(study, protocol, "baseline", n, s, m, 0.4), "sec_per_it": t}
            for (n, s, m), t in zip(probes, (0.8, 0.9, 1.0, 0.7, 0.6, 0.85))]  # fmt: skip
    assert study.logged_step_seconds(rows) is None  # no SBCB run yet: nothing to assume for it
    rows.append({**_full_row(study, protocol, "casenet", 8000, 0, 0.5, 0.4), "sec_per_it": 1.2})
    # baseline median of 0.6, 0.7, 0.8, 0.85, 0.9, 1.0 = (0.8 + 0.85) / 2 = 0.825
    assert study.logged_step_seconds(rows) == {"baseline": 0.825, "sbcb": 1.2}
    path = study.results_file(tmp_path, protocol)
    for row in rows:
        study.append_row(path, row)
    text = study.plan(protocol, results=tmp_path, step_seconds={"baseline": 0.825, "sbcb": 1.2}, val_seconds=10)
    # decided at 8000: only its 7 runs left (casenet 1-4, baseline 2-4); 8000 steps + 33 validations of 10 s each:
    # baseline (6600 + 330) / 3600 = 1.925 h, SBCB (9600 + 330) / 3600 = 2.758 h;
    # (3 * 1.925 + 4 * 2.758) / 2 parallel = 8.4 h
    assert text.splitlines()[-1] == "if the schedule is 8000: 7 runs left, about 8.4 h wall"
    assert "schedule is 2000" not in text


def test_repository_docs_carry_the_generated_outcome(study):
    # README.md and docs/evidence.md state exactly what the committed results file says (report --docs)
    protocol = study.PRESETS["cpu"]
    rows = study.read_rows(study.results_file(study.RESULTS, protocol), protocol)
    text = study.outcome_text(protocol, rows, study.study_summary(protocol, rows, protocol.models[0]))
    start, end = study.DOCS_MARK
    for doc in (study.REPO / "README.md", study.REPO / "docs" / "evidence.md"):
        assert f"{start}{text}{end}" in doc.read_text(), f"{doc.name}: run `camvid_study.py report --docs`"


class Killed(Exception):
    pass


def test_killed_run_resumes_and_finished_runs_are_not_repeated(study, camvid, tmp_path, monkeypatch):
    import sbcb.train.loop as loop
    import sbcb.train.run as run

    protocol = tiny(study, seeds=(0,), variants=("baseline",))
    runs, results = tmp_path / "runs", tmp_path / "results"
    calls: list[object] = []
    real_run_training = run.run_training
    monkeypatch.setattr(run, "run_training", lambda cfg, resume=None: calls.append(resume) or real_run_training(
        cfg, resume=resume))  # fmt: skip

    # killed in its third step, after the checkpoints of iterations 1 and 2
    real_step, steps = loop._step, []

    def dying_step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise Killed
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_step", dying_step)
    assert study.run_study(protocol, root=camvid, runs_dir=runs, results=results, inline=True) == 1
    path = study.results_file(results, protocol)
    assert study.read_rows(path, protocol) == [] and calls == [None]
    run_dir = runs / "lraspp" / "baseline-3it" / "seed0"
    assert (run_dir / "iter_0000002.pt").exists()

    monkeypatch.setattr(loop, "_step", real_step)
    assert study.run_study(protocol, root=camvid, runs_dir=runs, results=results, inline=True) == 0
    assert len(calls) == 2 and Path(calls[1]).name == "iter_0000002.pt"  # continued, not restarted
    rows = study.read_rows(path, protocol)
    assert len(rows) == 1 and [p["step"] for p in rows[0]["curve"]] == [3]

    # finished: a third invocation trains nothing and appends nothing; a torn line (a kill mid-write) is skipped
    with path.open("a") as f:
        f.write('{"model": "lraspp", "varia')
    assert study.run_study(protocol, root=camvid, runs_dir=runs, results=results, inline=True) == 0
    assert len(calls) == 2 and len(study.read_rows(path, protocol)) == 1
    # another protocol's lines are not its results, and its run may not reuse this protocol's run folder
    other = dataclasses.replace(protocol, lr=0.02)
    assert study.read_rows(path, other) == [] and len(study.next_runs(other, study.read_rows(path, other))) == 1
    with pytest.raises(RuntimeError, match=r"was trained with other settings \(lr: 0.01 there, 0.02 here\)"):
        study.run_one(other, study.RunSpec("lraspp", "baseline", 3, 0), root=camvid, runs_dir=runs, results=results)
    assert len(calls) == 2


def test_an_interrupted_job_says_so_in_one_line_and_is_not_a_failure(study, tmp_path, monkeypatch, capsys):
    import signal

    from sbcb.train.loop import TrainingInterrupted

    protocol = tiny(study, seeds=(0,), variants=("baseline",))
    spec = study.RunSpec("lraspp", "baseline", 3, 0)
    out = spec.folder(tmp_path / "runs")

    def stopped(*args, **kwargs):  # what a SIGTERM in iteration 5 leaves: saved, then TrainingInterrupted
        raise TrainingInterrupted(5, out / "iter_0000005.pt", out, signal.SIGTERM)

    monkeypatch.setattr(study, "run_one", stopped)
    job = {"protocol": dataclasses.asdict(protocol), "spec": dataclasses.asdict(spec), "root": str(tmp_path),
           "runs_dir": str(tmp_path / "runs"), "results": str(tmp_path / "results")}  # fmt: skip
    assert study.main(["_job", json.dumps(job)]) == 128 + 15
    printed = capsys.readouterr().out
    assert "interrupted after iteration 5" in printed and "--resume" in printed and "Traceback" not in printed
    assert "next `run` resumes it" in study.job_status(143) and "signal 15" in study.job_status(143)
    assert study.job_status(0) == "finished"
    assert study.job_status(1).startswith("FAILED") and study.job_status(-9).startswith("FAILED")  # SIGKILL: -9
