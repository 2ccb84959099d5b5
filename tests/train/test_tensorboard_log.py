"""TensorBoard logger: rows logged like the CSV logger's are read back from the event file."""

from __future__ import annotations

import pytest

from sbcb.train.tensorboard_log import TensorBoardLogger


def _read(log_dir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_rows_come_back_from_the_event_file(tmp_path):
    pytest.importorskip("tensorboard", reason='TensorBoard logging needs: pip install "sbcb[tensorboard]"')
    logger = TensorBoardLogger(tmp_path)
    logger.log("train_log.csv", {"step": 1, "lr": 0.01, "loss": 2.5, "loss_seg": 1.5})
    logger.log("train_log.csv", {"step": 2, "lr": 0.009, "loss": 2.0, "loss_seg": 1.25})
    logger.log("val_log.csv", {"step": 2, "miou": 0.375, "bf3": float("nan"), "name": "x", "ok": True})
    logger.close()
    got = _read(tmp_path / "tb")
    assert set(got) == {"train/lr", "train/loss", "train/loss_seg", "val/miou"}  # NaN, str and bool skipped
    assert got["train/loss"] == [(1, 2.5), (2, 2.0)]  # values exact in float32
    assert got["val/miou"] == [(2, 0.375)]


def test_disabled_rank_writes_nothing(tmp_path):
    logger = TensorBoardLogger(tmp_path, enabled=False)
    logger.log("train_log.csv", {"step": 1, "loss": 1.0})
    logger.close()
    assert not (tmp_path / "tb").exists()
