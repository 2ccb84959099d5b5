"""``data.image_scale``: a fixed rescale before the transforms, kept in the checkpoint so `sbcb eval` needs no flag."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from sbcb.cli.main import main
from sbcb.data.transforms import Rescale
from sbcb.train.checkpoint import load_checkpoint, load_model
from sbcb.train.config import Config, ConfigError
from sbcb.train.evaluation import evaluate
from sbcb.train.run import build_datasets, config_of_checkpoint

pytest.importorskip("torchvision")


def test_rescale_half_is_2x2_block_mean_and_top_left_label():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)[..., None].repeat(3, axis=2) * 10
    label = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], np.uint8)
    out_image, out_label, instance = Rescale(0.5)(image, label)
    # block (0,0) holds 0, 10, 40, 50 -> mean 25; block (0,1): 20, 30, 60, 70 -> 45; (1,0): 80, 90, 120, 130 -> 105
    np.testing.assert_array_equal(out_image[..., 0], [[25, 45], [105, 125]])
    # nearest neighbour keeps the top-left pixel of each 2x2 block: label values are never blended
    np.testing.assert_array_equal(out_label, [[1, 3], [9, 11]])
    assert instance is None and out_image.dtype == np.uint8


def test_image_scale_must_be_positive():
    with pytest.raises(ConfigError, match="image_scale must be > 0"):
        Config.from_flat({"image_scale": 0})


TINY = [
    "--dataset", "synthetic", "--num-samples", "2", "--val-samples", "2", "--image-size", "64", "96",
    "--image-scale", "0.5", "--crop", "32", "48", "--arch", "lraspp_mobilenet_v3_large", "--batch-size", "2",
    "--workers", "0", "--no-progress", "--device", "cpu",
]  # fmt: skip


def test_eval_of_a_half_scale_run_needs_no_flag(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--iters", "1", "--val-every", "1", "--out", str(run)]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["config"]["data"]["image_scale"] == 0.5
    assert ckpt["model"]["kwargs"]["arch"] == "lraspp_mobilenet_v3_large"  # a registered name, no module path

    cfg = config_of_checkpoint(ckpt)
    _, val_set, info = build_datasets(cfg, train=False)
    assert tuple(val_set[0]["image"].shape) == (3, 32, 48)  # 64x96 synthetic images at half resolution

    out = tmp_path / "eval"
    args = ["eval", str(run / "last.pt"), "--out", str(out), "--no-progress", "--sbd-thresholds", "5", "--radii", "3"]
    assert main(args) == 0
    got = json.loads((out / "eval.json").read_text())

    # The same numbers from a val set rescaled by hand (cv2 area resize, nearest labels) ...
    from sbcb.data.registry import build_dataset

    raw = build_dataset("synthetic", None, "val", num_samples=2, size=(64, 96), seed=0)
    model = load_model(run / "last.pt")
    samples = []
    for i in range(len(raw)):
        r = raw[i]
        image = cv2.resize(r["image"], (48, 32), interpolation=cv2.INTER_AREA)
        label = cv2.resize(r["label"], (48, 32), interpolation=cv2.INTER_NEAREST)
        mean = np.array([123.675, 116.28, 103.53], np.float32)
        std = np.array([58.395, 57.12, 57.375], np.float32)
        target = label.astype(np.int64)
        target[target >= info.num_classes] = 255
        samples.append({"image": torch.from_numpy(((image - mean) / std).transpose(2, 0, 1).copy()),
                        "label": torch.from_numpy(target)})  # fmt: skip
    ref = evaluate(model, samples, num_classes=info.num_classes, sbd=False, boundary_radii=(3,), progress=False)
    assert got["miou"] == pytest.approx(ref["miou"], abs=1e-12) and got["bf3"] == pytest.approx(ref["bf3"], abs=1e-12)
    # ... and not those of the full-resolution images (the check above could not pass by accident).
    full = build_datasets(cfg.replace(image_scale=1.0), train=False, val_boundaries=False)[1]
    assert tuple(full[0]["image"].shape) == (3, 64, 96)
