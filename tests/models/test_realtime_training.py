"""The real-time models under the call contract: a baseline `Segmentor` trains their own auxiliary heads, and
`sbcb train --arch stdc1` runs end to end, baseline and SBCB."""

from __future__ import annotations

import csv

import pytest
import torch
from realtime_checks import synthetic_batch

from sbcb.models import build_segmentor
from sbcb.models.seg_head import seg_cross_entropy
from sbcb.segmentor import Segmentor


def test_segmentor_adds_the_models_own_auxiliary_losses():
    images, masks, k = synthetic_batch()
    torch.manual_seed(0)
    model = build_segmentor("stdc1", num_classes=k, encoder=None).train()
    net = Segmentor(model, num_classes=k)
    torch.manual_seed(1)  # the heads' dropout: the same draws in both forwards
    losses = net(images, masks)
    # the slow, obvious version: the model's own training forward, CE on its logits, its own auxiliary losses
    torch.manual_seed(1)
    out = model.forward_train(images)
    expected = {"loss_seg": seg_cross_entropy(out.logits, masks), **model.auxiliary_losses(out.aux, masks)}
    assert set(losses) == {"loss_seg", "loss_aux_8", "loss_aux_16", "loss_detail_bce", "loss_detail_dice"}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6)
    # inference: logits only, no auxiliary head (the eval-mode call of the stripped model)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(images), model(images))
    assert net.strip() is model


def _columns(path) -> list[str]:
    with open(path) as f:
        return next(csv.reader(f))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sbcb_train_cli_with_a_real_time_arch(tmp_path, one_thread):
    pytest.importorskip("yaml")
    from sbcb.cli.main import main
    from sbcb.train.checkpoint import load_model

    tiny = ["--dataset", "synthetic", "--num-samples", "2", "--val-samples", "1", "--image-size", "32", "64",
            "--crop", "32", "64", "--arch", "stdc1", "--batch-size", "2", "--workers", "0", "--no-progress",
            "--iters", "2", "--val-every", "2"]  # fmt: skip
    assert main(["train", *tiny, "--sbcb-head", "none", "--out", str(tmp_path / "base")]) == 0
    # the baseline trains the model's own heads: auxiliary FCN heads and the Detail Head (STDC's recipe)
    assert {"loss_seg", "loss_aux_8", "loss_aux_16", "loss_detail_bce", "loss_detail_dice"} <= set(
        _columns(tmp_path / "base" / "train_log.csv")
    )
    assert type(load_model(tmp_path / "base" / "last.pt")).__name__ == "STDCSeg"

    args = ["--arch-kwargs", '{"detail_head": false}', "--out", str(tmp_path / "sbcb")]  # P§7.3: SBD replaces it
    assert main(["train", *tiny, *args]) == 0
    columns = set(_columns(tmp_path / "sbcb" / "train_log.csv"))
    assert {"loss_seg", "loss_sbd_fuse", "loss_sbd_last", "loss_aux_8", "loss_aux_16"} <= columns
    assert not {"loss_detail_bce", "loss_detail_dice"} & columns
    net = load_model(tmp_path / "sbcb" / "last.pt")
    assert type(net).__name__ == "SBCB" and type(net.strip()).__name__ == "STDCSeg"
