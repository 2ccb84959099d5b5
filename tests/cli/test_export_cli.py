"""`sbcb export` without `--size` samples at the checkpoint's training crop (rounded down to multiples of 32)."""

from __future__ import annotations

from sbcb.cli.export import default_size
from sbcb.train.config import Config


def test_default_size_reads_the_sectioned_config():
    cfg = Config()
    cfg.data.crop = (100, 170)  # -> (96, 160): 100 // 32 * 32 = 96, 170 // 32 * 32 = 160
    assert default_size({"config": cfg.to_dict()}) == [96, 160]


def test_default_size_without_a_config():
    assert default_size({}) == [256, 512]
    cfg = Config()
    cfg.data.crop = (20, 40)  # never below one output-stride cell: max(32, 0) = 32, 40 // 32 * 32 = 32
    assert default_size({"config": cfg.to_dict()}) == [32, 32]
