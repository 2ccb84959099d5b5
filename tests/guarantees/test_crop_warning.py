"""A training crop that no random scale can fill is warned about before the first step (not refused)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from guarantee_helpers import TINY_MODEL, make_folder  # noqa: E402

from sbcb.cli.main import main  # noqa: E402
from sbcb.train.run import crop_warning, scan_split  # noqa: E402


def test_crop_warning_hand_worked():
    # CamVid (360x480) with the paper's Cityscapes crop 512x1024 and scales 0.5-2: the largest scaled image is
    # 720x960, so 1024 > 960 columns can never be filled
    text = crop_warning((512, 1024), (360, 480), image_scale=1.0, scale_range=(0.5, 2.0))
    assert text is not None and "720x960" in text and "at most 512 960" in text
    # the CamVid study: half resolution (180x240 crops of 360x480 at scale 0.5) x 2 = 360x480: fillable
    assert crop_warning((180, 240), (360, 480), image_scale=0.5, scale_range=(0.5, 2.0)) is None
    # Pascal-VOC-like: 512x512 crops of <= 500x500 images are padded at scale 1 but filled at 2 -> no warning
    assert crop_warning((512, 512), (500, 500), image_scale=1.0, scale_range=(0.5, 2.0)) is None
    # no random scale: a crop one pixel taller than every image is always padded
    text = crop_warning((33, 40), (32, 40), image_scale=1.0, scale_range=(1.0, 1.0))
    assert text is not None and "at most 32 40" in text


def test_scan_split_returns_the_largest_height_and_width():
    images = [np.zeros((20, 50, 3), np.uint8), np.zeros((30, 10, 3), np.uint8)]
    assert scan_split([{"image": im} for im in images]) == (30, 50)
    assert scan_split([]) == (0, 0)


@pytest.mark.parametrize("crop, warned", [(96, True), (32, False)])
def test_sbcb_train_warns_before_the_first_step(tmp_path, crop, warned):
    data = make_folder(tmp_path / "data", size=(32, 40))  # scales up to 2: at most 64x80 can be filled
    argv = ["train", "--dataset", "folder", "--root", str(data), "--batch-size", "2", *TINY_MODEL, "--crop",
            str(crop), str(crop), "--iters", "1", "--val-every", "0", "--out", str(tmp_path / "run")]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    about_crop = [str(w.message) for w in caught if str(w.message).startswith("--crop")]
    if warned:
        assert about_crop == [
            "--crop 96 96 is larger than every training image even at the largest random scale (2 x the largest "
            "image 32x40 = 64x80): every crop is partly ignore padding, which costs compute and teaches nothing; "
            "pass --crop of at most 64 80"
        ]
    else:
        assert about_crop == []


def test_the_cli_prints_sbcb_warnings_as_one_prefixed_line(tmp_path, capsys, monkeypatch):
    data = make_folder(tmp_path / "data", size=(32, 40))
    argv = ["train", "--dataset", "folder", "--root", str(data), "--batch-size", "2", *TINY_MODEL, "--crop", "96",
            "96", "--iters", "1", "--val-every", "0", "--out", str(tmp_path / "run")]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # Python's own display (pytest records warnings instead): write warnings.formatwarning's text to stderr
        monkeypatch.setattr(warnings, "showwarning", lambda m, c, f, n, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(m, c, f, n, line)))  # fmt: skip
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "sbcb train: warning: --crop 96 96 is larger than every training image" in err
        assert "UserWarning" not in err and "run.py" not in err
        # other libraries' warnings keep Python's format; the formatter is removed when the command ends
        before = warnings.formatwarning
        assert main(["check-data", "--dataset", "folder", "--root", str(data)]) == 0
        assert warnings.formatwarning is before
    from sbcb.cli.main import _warning_formatter

    fmt = _warning_formatter("sbcb train", warnings.formatwarning)
    assert fmt("from elsewhere", UserWarning, "/elsewhere/lib.py", 7) == warnings.formatwarning(
        "from elsewhere", UserWarning, "/elsewhere/lib.py", 7)  # fmt: skip
    assert fmt("two\n- lines", UserWarning, main.__code__.co_filename, 1) == "sbcb train: warning: two; lines\n"
