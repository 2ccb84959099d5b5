"""The baseline's call contract (`sbcb.Segmentor`): logits without masks, the flat loss dict with them."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbcb.contract import HasAuxiliaryHeads, TrainOutput
from sbcb.segmentor import Segmentor

K = 3


class WithAux(nn.Module):
    """A model with a training-only auxiliary head (`sbcb.contract.HasAuxiliaryHeads`)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.cls = nn.Conv2d(4, K, 1)
        self.booster = nn.Conv2d(4, K, 1)

    def forward(self, x):
        return self.cls(self.body(x))

    def forward_train(self, x):
        f = self.body(x)
        return TrainOutput(self.cls(f), {"booster": self.booster(f)})

    def auxiliary_losses(self, aux, masks):
        return {"loss_booster": 0.5 * F.cross_entropy(aux["booster"], masks, ignore_index=255)}


def test_baseline_call_and_model_auxiliary_losses():
    torch.manual_seed(0)
    model = WithAux()
    assert isinstance(model, HasAuxiliaryHeads)
    net = Segmentor(model, num_classes=K).train()
    x = torch.randn(2, 3, 16, 16)
    masks = torch.randint(0, K, (2, 16, 16))
    masks[0, 0] = 7  # outside 0..K-1: ignored by the CE term, like 255
    assert torch.equal(net(x), model(x))  # no masks: the model's own forward, in train mode too
    losses = net(x, masks)
    assert list(losses) == ["loss_seg", "loss_booster"]
    target = torch.where(masks < K, masks, torch.full_like(masks, 255))
    torch.testing.assert_close(losses["loss_seg"], F.cross_entropy(model(x), target, ignore_index=255))
    booster = model.booster(model.body(x))
    torch.testing.assert_close(losses["loss_booster"], 0.5 * F.cross_entropy(booster, target, ignore_index=255))
    net.eval()  # auxiliary heads run only in training mode
    assert list(net(x, masks)) == ["loss_seg"]
    assert net.strip() is model


def test_trainer_merges_a_baseline_models_auxiliary_losses(tmp_path):
    from sbcb.train.loop import TrainSettings, train

    data = [{"image": torch.randn(3, 16, 16), "label": torch.randint(0, K, (16, 16))} for _ in range(4)]
    settings = TrainSettings(iters=2, batch_size=2, ckpt_every=2, val_every=0, workers=0)
    train(WithAux(), data, settings=settings, out_dir=tmp_path, num_classes=K, progress=False)
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert len(rows) == 2 and {"loss_seg", "loss_booster"} <= set(rows[0])
    # the checkpoint holds the user's model's own keys (the Segmentor is only the call contract)
    from sbcb.train.checkpoint import load_checkpoint

    assert set(load_checkpoint(tmp_path / "last.pt")["state_dict"]) == set(WithAux().state_dict())


def test_head_parameters_of_an_smp_model_are_its_decoder_and_heads():
    import pytest

    smp = pytest.importorskip("segmentation_models_pytorch")
    from sbcb import SBCB

    model = smp.FPN("resnet18", encoder_weights=None, classes=K, decoder_pyramid_channels=16)
    net = SBCB(model, num_classes=K, probe_size=(64, 64))
    head = {id(p) for p in net.head_parameters()}
    assert head == {id(p) for name, p in net.named_parameters() if not name.startswith("model.encoder.")}
    baseline = Segmentor(smp.FPN("resnet18", encoder_weights=None, classes=K), num_classes=K, probe_size=(64, 64))
    names = {id(p): n for n, p in baseline.named_parameters()}
    assert {names[id(p)].split(".")[1] for p in baseline.head_parameters()} == {"decoder", "segmentation_head"}


def test_compute_losses_takes_forward_outputs_for_a_baseline_too():
    net = Segmentor(WithAux(), num_classes=K, probe_size=(16, 16))
    images, masks = torch.randn(2, 3, 16, 16), torch.randint(0, K, (2, 16, 16))
    with pytest.raises(TypeError, match="forward_outputs"):
        net.compute_losses(net(images), masks)
    net.eval()
    assert list(net.compute_losses(net.forward_outputs(images), masks)) == ["loss_seg"]
