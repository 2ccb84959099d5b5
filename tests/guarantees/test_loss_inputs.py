"""Issue 16 items 5 and 9 (masks): an all-ignore batch gives zero loss, never NaN; numpy masks work; fractional
float masks are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sbcb.segmentor import Segmentor

pytest.importorskip("segmentation_models_pytorch")


def _nets():
    from sbcb.models import build_model

    tiny = dict(arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, num_classes=3)
    tiny["factory_kwargs"] = {"decoder_channels": [16, 16, 8]}
    base = build_model(**tiny, sbcb_head="none")
    return [Segmentor(base, num_classes=3), build_model(**tiny, sbcb_head="casenet", fcn_aux=True)]


@pytest.mark.parametrize("which", [0, 1])
def test_an_all_ignore_batch_has_zero_loss_and_finite_gradients(which):
    net = _nets()[which].train()
    x = torch.randn(2, 3, 32, 32)
    losses = net(x, torch.full((2, 32, 32), 255))
    for name, value in losses.items():
        assert math.isfinite(float(value)), (name, float(value))
    # the CE terms have no labelled pixel: exactly zero (the SBD terms follow the wrapper's own ignore rules)
    assert float(losses["loss_seg"]) == 0.0 and float(losses.get("loss_aux", 0.0)) == 0.0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_a_partly_labelled_batch_is_still_the_mean_over_labelled_pixels():
    net = _nets()[0].train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    y[0] = 255
    logits = net(x)
    ref = torch.nn.functional.cross_entropy(logits, y, ignore_index=255)
    assert torch.allclose(net(x, y)["loss_seg"], ref, rtol=1e-5)


def test_a_numpy_mask_works_like_a_tensor():
    net = _nets()[1].train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    torch.manual_seed(0)
    a = net(x, y)
    torch.manual_seed(0)
    b = net(x, y.numpy().astype(np.uint8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fractional_float_masks_are_refused():
    net = _nets()[0].train()
    y = torch.randint(0, 3, (2, 32, 32)).float()
    net(torch.randn(2, 3, 32, 32), y)  # integral floats are fine
    y[0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="fractional"):
        net(torch.randn(2, 3, 32, 32), y)
    with pytest.raises(TypeError, match="masks"):
        net(torch.randn(2, 3, 32, 32), [[1, 2]])
