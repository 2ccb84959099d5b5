"""Issue 16 item 3: `sbcb eval-sbd --cache` never answers with counts of other inputs; a corrupt cache is named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbcb.cli.main import main
from sbcb.metrics.sbd import save_edge_png, save_prediction


def _setup(tmp_path):
    rng = np.random.default_rng(0)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for name in ("a", "b"):
        edges = np.zeros((2, 24, 24), bool)
        edges[:, rng.integers(2, 22), :] = True
        save_edge_png(gt / f"{name}_edge.png", edges)
        save_prediction(pred, name, edges.astype(np.float32))  # perfect predictions
    return pred, gt


def _ods(tmp_path, pred, gt, *extra):
    out = tmp_path / "r.json"
    args = ["eval-sbd", "--pred", str(pred), "--gt", str(gt), "--num-classes", "2", "--quick", "--no-progress"]
    assert main([*args, "--cache", str(tmp_path / "cache"), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())["mean_ods_f"]


def test_changed_predictions_are_recounted(tmp_path):
    pred, gt = _setup(tmp_path)
    assert _ods(tmp_path, pred, gt) == pytest.approx(1.0)
    for name in ("a", "b"):  # the same files, now all zero
        save_prediction(pred, name, np.zeros((2, 24, 24), np.float32))
    assert _ods(tmp_path, pred, gt) == 0.0


def test_another_prediction_folder_is_recounted(tmp_path):
    pred, gt = _setup(tmp_path)
    assert _ods(tmp_path, pred, gt) == pytest.approx(1.0)
    zeros = tmp_path / "zeros"
    for name in ("a", "b"):
        save_prediction(zeros, name, np.zeros((2, 24, 24), np.float32))
    assert _ods(tmp_path, zeros, gt) == 0.0


def test_a_corrupt_cache_file_is_named(tmp_path, capsys):
    pred, gt = _setup(tmp_path)
    _ods(tmp_path, pred, gt)
    bad = sorted((tmp_path / "cache").glob("a.*.npy"))[0]
    bad.write_bytes(b"garbage")
    assert main(["eval-sbd", "--pred", str(pred), "--gt", str(gt), "--num-classes", "2", "--quick",
                 "--no-progress", "--cache", str(tmp_path / "cache")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(bad) in err and "corrupt" in err and "Traceback" not in err
