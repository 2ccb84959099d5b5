"""`sbcb demo`: files written, their content, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sbcb.cli.main import main
from sbcb.data.synthetic import SyntheticStreets
from sbcb.viz import colorize, read_png


def test_demo_writes_side_by_side_pngs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--render-only", "--out", str(out), "--num-samples", "2", "--size", "32", "64", "--seed", "4"])
        == 0
    )
    printed = capsys.readouterr().out
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["val_000000.png", "val_000001.png"]
    ds = SyntheticStreets(2, size=(32, 64), seed=4, split="val")
    for i, f in enumerate(files):
        assert str(f) in printed
        picture = read_png(f)
        assert picture.shape == (32, 3 * 64 + 2 * 4, 3)  # three panels, two 4-px gaps
        np.testing.assert_array_equal(picture[:, :64], ds[i]["image"])
        np.testing.assert_array_equal(picture[:, 68:132], colorize(ds[i]["label"], ds.info.colors))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-samples", "0"], "--num-samples must be at least 1"),
        (["--num-samples", "-2"], "--num-samples must be at least 1"),
        (["--size", "-32", "64"], "--size H W must both be at least"),
        (["--size", "32", "0"], "--size H W must both be at least"),
        (["--seed", "-1"], "--seed must be a non-negative"),
    ],
)
def test_demo_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "sbcb demo: error:" in err and message in err
    assert not out.exists()  # nothing written


def test_demo_out_pointing_at_a_file(tmp_path, capsys):
    f = tmp_path / "taken.png"
    f.write_bytes(b"not a folder")
    assert main(["demo", "--out", str(f)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert f.read_bytes() == b"not a folder"


def test_demo_sizing_default_and_long(tmp_path):
    """Default: the 4-minute run (150 iterations at output stride 16); --long: the paper's stride 8, 300 iterations;
    an explicit --iters wins over both."""
    import argparse

    from sbcb.cli import demo

    parser = demo.add_parser(argparse.ArgumentParser().add_subparsers())
    for flags, iters in (([], 150), (["--long"], 300), (["--long", "--iters", "7"], 7)):
        args = parser.parse_args(["--out", str(tmp_path), *flags])
        demo._validate(args)
        assert args.iters == iters
    assert (demo.OUTPUT_STRIDE, demo.LONG_OUTPUT_STRIDE) == (16, 8)
    pytest.importorskip("segmentation_models_pytorch")
    assert demo._takes_output_stride("deeplabv3plus") and not demo._takes_output_stride("unet")


def test_demo_estimate_times_the_baseline_step():
    """The estimate is printed before training from baseline steps timed now: 2 models x iters x step x 1.3."""
    pytest.importorskip("segmentation_models_pytorch")
    from sbcb.cli import demo
    from sbcb.train.config import Config

    cfg = Config.from_flat(
        {"dataset": "synthetic", "image_size": [32, 32], "crop": [32, 32], "arch": "unet", "iters": 10,
         "encoder": "tu-mobilenetv3_small_050", "batch_size": 2, "sbcb_head": "none",
         "arch_kwargs": '{"encoder_depth": 3, "decoder_channels": [16, 16, 8]}'},
        source="test",
    )  # fmt: skip
    seconds, line = demo._estimate(cfg, num_classes=11)
    assert seconds is not None and seconds > 0
    printed_step = line.split("(")[1].split(" s per")[0]  # to 2 decimals
    assert f"{seconds / (10 * 2.1 * 1.3):.2f}" == printed_step
    assert line.startswith("estimate: about") and "10 iterations x 2 models" in line
