"""`sbcb check-data` reports every problem at once, names each bad file and exits non-zero."""

from __future__ import annotations

import cv2
import numpy as np

from sbcb.cli.main import main


def make_folder(root, n=5):
    root.mkdir(exist_ok=True)
    (root / "dataset.yaml").write_text("class_names: [a, b, c]\n")
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / f"images/train/s{i}.png"), rng.integers(0, 255, (6, 8, 3)).astype(np.uint8))
        cv2.imwrite(str(root / f"labels/train/s{i}.png"), rng.integers(0, 3, (6, 8)).astype(np.uint8))
    return root


def test_clean_dataset_exits_zero(tmp_path, capsys):
    make_folder(tmp_path)
    assert main(["check-data", "--dataset", "folder", "--root", str(tmp_path)]) == 0
    assert "folder/train: OK, 5 sample(s) checked" in capsys.readouterr().out


def test_every_problem_is_reported(tmp_path, capsys):
    root = make_folder(tmp_path)
    cv2.imwrite(str(root / "images/train/lonely.png"), np.zeros((6, 8, 3), np.uint8))  # no label
    p = root / "images/train/s1.png"
    p.write_bytes(p.read_bytes()[:-25])  # truncated
    cv2.imwrite(str(root / "labels/train/s2.png"), np.full((6, 8), 9, np.uint8))  # value 9 not a class
    cv2.imwrite(str(root / "labels/train/s3.png"), np.zeros((5, 8), np.uint8))  # size mismatch
    code = main(["check-data", "--dataset", "folder", "--root", str(root), "--split", "train", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "folder/train: 4 problem(s), 5 sample(s) scanned" in out
    assert "lonely.png" in out and "s1.png is truncated" in out
    assert "s2.png: label values 9 (48 px)" in out and "s3.png is 8x5" in out
    assert "found 4 problem(s)" in out


def test_missing_root_and_split(tmp_path, capsys):
    code = main(["check-data", "--dataset", "cityscapes", "--root", str(tmp_path / "cs"), "--split", "val"])
    out = capsys.readouterr().out
    assert code == 1 and "root folder" in out and "does not exist" in out
    make_folder(tmp_path / "f")
    assert main(["check-data", "--dataset", "folder", "--root", str(tmp_path / "f"), "--split", "val"]) == 1
    assert "missing folder(s)" in capsys.readouterr().out


def test_root_required(tmp_path, capsys):
    assert main(["check-data", "--dataset", "camvid"]) == 2
    assert "--root is required" in capsys.readouterr().err
