"""`sbcb eval-sbd` on tiny folders: table, JSON equal to the Python API, user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sbcb.cli.main import main
from sbcb.metrics.sbd import SBDEvaluator, save_edge_png, save_prediction


def _write_case(tmp_path, k=3):
    rng = np.random.default_rng(0)
    ev = SBDEvaluator(k, thresholds=9)
    for name in ("x/one", "x/two"):
        gt = np.zeros((k, 30, 40), bool)
        gt[:, 10, 5:35] = True
        gt[1, 5:25, 20] = True
        pred = np.clip(np.roll(gt, 1, axis=1) * rng.uniform(0.3, 1, gt.shape) + 0.02 * rng.random(gt.shape), 0, 1)
        save_prediction(tmp_path / "pred", name, pred)
        save_edge_png(tmp_path / "gt" / f"{name}_edge.png", gt)
        ev.update(pred, gt)
    return ev.compute()


def test_cli_writes_json_equal_to_api(tmp_path, capsys):
    ref = _write_case(tmp_path)
    out = tmp_path / "res.json"
    argv = ["eval-sbd", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "3"]
    rc = main([*argv, "--quick", "--out", str(out), "--no-progress", "--class-names", "a,b,c"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ODS-F" in text and "mean" in text and "\nb " in text
    data = json.loads(out.read_text())
    np.testing.assert_allclose(data["per_class"]["ods_f"], ref["ods_f"])
    assert data["mean_ap"] == pytest.approx(ref["mean_ap"])
    assert data["num_images"] == 2 and data["settings"]["thresholds"][0] == pytest.approx(0.1)


def test_cli_user_errors(tmp_path, capsys):
    assert main(["eval-sbd", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path)]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    assert main(["eval-sbd", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert "no GT files" in capsys.readouterr().err
