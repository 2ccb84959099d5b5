"""`sbcb train` with ``--fusion`` and with ``--arch gscnn``, end to end on tiny synthetic images: the trainer trains
the extra losses through the call contract, the checkpoint rebuilds, and `sbcb export` keeps what inference needs."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

pytest.importorskip("segmentation_models_pytorch")

from sbcb.cli.main import main  # noqa: E402
from sbcb.train.checkpoint import load_checkpoint, load_model  # noqa: E402

TINY = [
    "--dataset", "synthetic", "--num-samples", "4", "--val-samples", "2", "--image-size", "64", "64",
    "--crop", "64", "64", "--encoder", "resnet18", "--batch-size", "2", "--workers", "0", "--no-progress",
    "--iters", "1", "--val-split", "none",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def logged_losses(run) -> set[str]:
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    return {key for key in rows[0] if key.startswith("loss_")}


def test_train_with_channel_merge_then_export_keeps_the_used_branches(tmp_path, capsys):
    run = tmp_path / "cm"
    assert main(["train", *TINY, "--arch", "deeplabv3plus", "--fusion", "channel-merge", "--out", str(run)]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["fusion"] == "channel-merge"
    assert load_checkpoint(run / "last.pt")["model"]["kwargs"]["fusion"] == "channel-merge"
    assert {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"} <= logged_losses(run)
    trained = load_model(run / "last.pt")
    assert type(trained).__name__ == "ChannelMerge" and not trained.inference_only

    stripped = tmp_path / "cm_stripped.pt"
    capsys.readouterr()
    assert main(["export", str(run / "last.pt"), "--stripped", str(stripped), "--size", "64", "64", "--no-check"]) == 0
    assert "kept at inference" in capsys.readouterr().out
    deployed = load_model(stripped)
    assert type(deployed).__name__ == "ChannelMerge" and deployed.inference_only and deployed.post_sides is None
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(deployed(x), trained(x), atol=1e-5)


@pytest.mark.onnx
def test_two_stream_exports_to_onnx_from_the_cli(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    run = tmp_path / "ts"
    assert main(["train", *TINY, "--arch", "deeplabv3plus", "--fusion", "two-stream", "--out", str(run)]) == 0
    assert {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"} <= logged_losses(run)
    capsys.readouterr()
    # checked in onnxruntime on two shapes (exit 1 above the tolerance)
    assert main(["export", str(run / "last.pt"), "--onnx", str(tmp_path / "ts.onnx"), "--size", "64", "64"]) == 0
    assert "max abs diff vs PyTorch, onnx 2x3x96x32" in capsys.readouterr().out


@pytest.mark.parametrize(("head", "extra"), [("none", set()), ("casenet", {"loss_sbd_fuse", "loss_sbd_last"})])
def test_train_gscnn_alone_and_with_sbcb(tmp_path, head, extra):
    run = tmp_path / head
    assert main(["train", *TINY, "--arch", "gscnn", "--sbcb-head", head, "--out", str(run)]) == 0
    assert logged_losses(run) >= {"loss_seg", "loss_edge", "loss_att", "loss_dual"} | extra
    model = load_model(run / "last.pt")
    assert type(model).__name__ == ("GSCNN" if head == "none" else "SBCB")


def test_fusion_refuses_other_heads(tmp_path, capsys):
    assert main(["train", *TINY, "--fusion", "two-stream", "--bbcb", "--out", str(tmp_path / "x")]) == 2
    assert "brings its own CASENet head" in capsys.readouterr().err
