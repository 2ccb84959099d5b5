"""Lightning: an SBCB model trains a few steps on the synthetic streets, logs losses and metrics, strips on export."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from sbcb.data.loader import TransformedDataset, build_dataloader
from sbcb.data.synthetic import SyntheticStreets
from sbcb.data.transforms import build_eval_transform
from sbcb.models import build_model

# Importing lightning takes ~8 s on the shared machine, so it happens inside the (slow-marked) tests, not at
# collection time of the default suite.
pytestmark = pytest.mark.slow
LIGHTNING_MISSING = 'the Lightning integration needs: pip install "sbcb[lightning]"'

K = 11  # SyntheticStreets classes
KWARGS = dict(
    num_classes=K,
    arch="unet",
    encoder="tu-mobilenetv3_small_050",
    encoder_depth=3,
    factory_kwargs={"decoder_channels": [16, 16, 8]},
)


def _loader(split: str):
    ds = TransformedDataset(SyntheticStreets(4, size=(64, 64), split=split), build_eval_transform(K))
    return build_dataloader(ds, batch_size=2, shuffle=split == "train")


def test_fit_logs_losses_and_metrics_and_strips(tmp_path):
    L = pytest.importorskip("lightning", reason=LIGHTNING_MISSING)
    pytest.importorskip("segmentation_models_pytorch", reason="the tiny test model is an smp Unet")
    from sbcb.integrations.lightning import SegmentationModule

    torch.manual_seed(0)
    net = build_model(**KWARGS)
    before = {k: v.clone() for k, v in net.strip().state_dict().items()}
    module = SegmentationModule(net, num_classes=K, boundary_radii=(3,), boundary_iou_width=2, config=KWARGS)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="run"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, _loader("train"), _loader("val"))
    rows = list(csv.DictReader((tmp_path / "run" / "version_0" / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v != ""}
    # Eq. 1's terms from the wrapper, and the validation metrics of sbcb.integrations.torchmetrics
    assert {"train/loss", "train/loss_seg", "train/loss_sbd_fuse", "train/loss_sbd_last"} <= logged
    assert {"val/miou", "val/aacc", "val/bf3", "val/biou"} <= logged
    val = next(row for row in rows if row.get("val/miou"))
    assert 0.0 <= float(val["val/miou"]) <= 1.0 and 0.0 <= float(val["val/biou"]) <= 1.0
    # Trained (weights moved), and the deployable model is the baseline architecture, head gone.
    deployable = module.deployable()
    baseline = build_model(**{**KWARGS, "sbcb_head": "none"})
    assert deployable.state_dict().keys() == baseline.state_dict().keys()
    assert any(not torch.equal(v, before[k]) for k, v in deployable.state_dict().items())
    out = module.save_pretrained(tmp_path / "shared")
    assert json.loads((out / "config.json").read_text())["stripped"] is True


def test_plain_model_trains_through_the_call():
    """A bare module is put in a Segmentor: its training step is net(images, masks), cross-entropy with ignore."""
    pytest.importorskip("lightning", reason=LIGHTNING_MISSING)
    from sbcb.integrations.lightning import SegmentationModule

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, K, 1)
    module = SegmentationModule(conv, num_classes=K)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, K, (2, 8, 8))
    y[0, 0, 0] = 255
    losses = module.net(x, y)
    assert set(losses) == {"loss_seg"}
    assert torch.allclose(losses["loss_seg"], torch.nn.functional.cross_entropy(conv(x), y, ignore_index=255))
    assert module.deployable() is conv
