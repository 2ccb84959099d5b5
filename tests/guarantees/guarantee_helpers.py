"""Shared pieces of the issue-16 tests: a tiny folder dataset, the tiny model flags, a CLI runner, file hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

TINY_MODEL = [
    "--arch", "unet", "--encoder", "tu-mobilenetv3_small_050", "--encoder-depth", "3",
    "--arch-kwargs", '{"decoder_channels": [16, 16, 8]}', "--workers", "0", "--no-progress",
]  # fmt: skip
TINY_SYNTHETIC = [
    "--dataset", "synthetic", "--num-samples", "4", "--val-samples", "2", "--image-size", "32", "32",
    "--crop", "32", "32", "--batch-size", "2", *TINY_MODEL,
]  # fmt: skip


def make_folder(root: Path, *, n: int = 3, size: tuple[int, int] = (32, 40), yaml: bool = True) -> Path:
    """``root/images/{train,val}/s{i}.png`` + ``labels/...`` with 3 classes (+ ``dataset.yaml``)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"s{i}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "labels" / split / f"s{i}.png"), rng.integers(0, 3, size, dtype=np.uint8))
    if yaml:
        (root / "dataset.yaml").write_text("class_names: [a, b, c]\n")
    return root


def folder_flags(root: Path) -> list[str]:
    return ["--dataset", "folder", "--root", str(root), "--crop", "32", "32", "--batch-size", "2", *TINY_MODEL]


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (nothing already written may change on a refused command)."""
    if not root.exists():
        return {}
    if root.is_file():
        return {str(root): hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    """The single ``sbcb CMD: error: ...`` line of a refused command (asserts there is exactly one, no traceback)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0], err
    return lines[0]
