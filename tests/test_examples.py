"""The user-facing example runs end to end and its stripped model loads into a plain baseline."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_plain_training_loop(tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch")
    import torch

    weights = tmp_path / "stripped.pth"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "examples" / "plain_training_loop.py"), "--steps", "2", "--size", "64", "64"]
    proc = subprocess.run([*cmd, "--save", str(weights)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split() for line in proc.stdout.strip().splitlines()]
    assert [int(line[0]) for line in lines] == [0, 1]
    for line in lines:
        values = dict(item.split("=") for item in line[1:])
        assert set(values) == {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"}
        assert all(math.isfinite(float(v)) for v in values.values())
    # the stripped checkpoint is a plain DeepLabV3+ state_dict: loads strictly into a model built without SBCB
    from sbcb.data import SyntheticStreets

    baseline = smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=SyntheticStreets.info.num_classes)
    baseline.load_state_dict(torch.load(weights, weights_only=True), strict=True)
