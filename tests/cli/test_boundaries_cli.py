"""Tests for `sbcb boundaries`: output equals the library GT, resumable, atomic, clear errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from sbcb.boundaries import mask_to_boundaries, read_boundary_png
from sbcb.cli.main import main


def _write_dataset(root, n: int = 3, with_instances: bool = True):
    rng = np.random.default_rng(0)
    labels, instances = {}, {}
    for i in range(n):
        rel = f"city{i % 2}/img{i}"
        label = cv2.resize(rng.integers(0, 4, (4, 5)).astype(np.uint8), (25, 20), interpolation=cv2.INTER_NEAREST)
        label[rng.random((20, 25)) < 0.05] = 255  # ignore
        label[0, :3] = 200  # a non-class value
        inst = np.zeros((20, 25), np.uint16)
        inst[5:12, 3:9], inst[5:12, 9:15] = 1001, 1002  # two touching instances
        (root / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "inst" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "labels" / f"{rel}_labelIds.png"), label)
        cv2.imwrite(str(root / "inst" / f"{rel}_instanceIds.png"), inst)
        labels[rel], instances[rel] = label, inst.astype(np.int32)
    return labels, instances


def _args(root, *extra):
    return [
        "boundaries",
        str(root / "labels"),
        str(root / "out"),
        "--num-classes",
        "4",
        "--instances",
        str(root / "inst"),
        "--label-suffix",
        "_labelIds.png",
        "--instance-suffix",
        "_instanceIds.png",
        *extra,
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_writes_the_library_gt_and_resumes(tmp_path, workers):
    labels, instances = _write_dataset(tmp_path)
    assert main(_args(tmp_path, "--workers", workers)) == 0
    for rel, label in labels.items():
        out = tmp_path / "out" / f"{rel}_labelIds.png"
        expected = mask_to_boundaries(label, 4, 2.0, 255, instances[rel])
        assert np.array_equal(read_boundary_png(out, 4), expected)
        assert expected[:, 5:12, 8:10].any()  # the instance seam is in there: IS GT was used
    assert not list((tmp_path / "out").rglob("*.tmp.png"))  # no temporary files left
    # resume: finished files are not rewritten, a missing one is
    done = tmp_path / "out" / "city0/img0_labelIds.png"
    os.utime(done, (1, 1))
    missing = tmp_path / "out" / "city1/img1_labelIds.png"
    missing.unlink()
    assert main(_args(tmp_path, "--workers", workers)) == 0
    assert done.stat().st_mtime == 1 and missing.exists()
    assert main(_args(tmp_path, "--overwrite", "--workers", "1")) == 0
    assert done.stat().st_mtime > 1


def test_errors_are_clear(tmp_path, capsys):
    _write_dataset(tmp_path, n=1)
    bad = tmp_path / "labels" / "city0" / "colour_labelIds.png"
    cv2.imwrite(str(bad), np.zeros((4, 4, 3), np.uint8))
    assert main(_args(tmp_path, "--workers", "1")) == 2
    assert "single-channel" in capsys.readouterr().err
    bad.unlink()
    wide = tmp_path / "labels" / "city0" / "wide_labelIds.png"
    cv2.imwrite(str(wide), np.full((4, 4), 1000, np.uint16))
    cv2.imwrite(str(tmp_path / "inst" / "city0" / "wide_instanceIds.png"), np.zeros((4, 4), np.uint16))
    assert main(_args(tmp_path, "--workers", "1")) == 2
    assert "8-bit class ids" in capsys.readouterr().err
    assert main(_args(tmp_path, "--num-classes", "30")) == 2
    assert "24" in capsys.readouterr().err
    assert main(["boundaries", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
