"""The argparse pieces `sbcb eval` and `sbcb predict` share (`sbcb.cli`)."""

from __future__ import annotations

import argparse

import pytest

from sbcb.cli import add_inference_arguments, inference_options
from sbcb.cli.errors import UserError


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_inference_arguments(p)
    return p.parse_args(argv)


def test_inference_options_default_and_override_the_crop():
    assert inference_options(_parse(), default_crop=None) == {
        "mode": "whole",
        "crop": None,
        "stride": None,
        "scales": [1.0],
        "flip": False,
    }
    args = _parse("--mode", "slide", "--scales", "0.5", "1.0", "--flip")
    assert inference_options(args, default_crop=[64, 128])["crop"] == [64, 128]
    args = _parse("--mode", "slide", "--crop", "32", "32", "--stride", "16", "16")
    assert inference_options(args, default_crop=[64, 128]) == {
        "mode": "slide",
        "crop": [32, 32],
        "stride": [16, 16],
        "scales": [1.0],
        "flip": False,
    }


def test_slide_without_any_crop_is_a_user_error():
    with pytest.raises(UserError, match="--mode slide needs --crop H W"):
        inference_options(_parse("--mode", "slide"), default_crop=None)
