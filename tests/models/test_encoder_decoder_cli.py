"""`sbcb train --arch ocr --encoder resnet18` end to end on tiny synthetic images, baseline and SBCB."""

from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("yaml")


def _columns(path) -> set[str]:
    with open(path) as f:
        return set(next(csv.reader(f)))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sbcb_train_cli_with_an_encoder_decoder_arch(tmp_path, one_thread):
    from sbcb.cli.main import main
    from sbcb.train.checkpoint import load_model

    tiny = ["--dataset", "synthetic", "--num-samples", "2", "--val-samples", "1", "--image-size", "32", "64",
            "--crop", "32", "64", "--arch", "ocr", "--encoder", "resnet18", "--arch-kwargs",
            '{"channels": 32, "key_channels": 16}', "--batch-size", "2", "--workers", "0", "--no-progress",
            "--iters", "2", "--val-every", "2"]  # fmt: skip
    assert main(["train", *tiny, "--sbcb-head", "none", "--out", str(tmp_path / "base")]) == 0
    # the baseline trains OCR's soft-region head too (its loss_aux), as mmseg's OCRNet recipe does
    assert {"loss_seg", "loss_aux"} <= _columns(tmp_path / "base" / "train_log.csv")
    assert type(load_model(tmp_path / "base" / "last.pt")).__name__ == "EncoderDecoder"

    assert main(["train", *tiny, "--out", str(tmp_path / "sbcb")]) == 0
    assert {"loss_seg", "loss_sbd_fuse", "loss_sbd_last", "loss_aux"} <= _columns(tmp_path / "sbcb" / "train_log.csv")
    net = load_model(tmp_path / "sbcb" / "last.pt")
    assert type(net).__name__ == "SBCB" and type(net.strip()).__name__ == "EncoderDecoder"
