"""Side layers: the SBCB layer's op order, the original layer's upsampling by the stride, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sbcb.heads.side_layers import OriginalSideLayer, SideLayer, init_weights


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sbcb_side_layer_parameters():
    # 64 -> 19: 1x1 64*19 = 1,216; BN 38; 3x3 9*19*19 = 3,249 -> 4,503; + 19 with the 3x3 bias
    assert count(SideLayer(64, 19)) == 4_503
    assert count(SideLayer(64, 19, bias=True)) == 4_522


def test_sbcb_side_layer_order_matches_spec():
    """1x1 + BN + ReLU at feature resolution, then bilinear (align_corners False), then reflect-pad 3x3."""
    layer = SideLayer(6, 3, bias=True)
    with torch.no_grad():
        layer.conv.bias.normal_()
    x = torch.randn(2, 6, 5, 7)
    y = F.conv2d(x, layer.reduce.weight)
    y = F.relu(F.batch_norm(y, None, None, layer.norm.weight, layer.norm.bias, training=True, eps=layer.norm.eps))
    y = F.interpolate(y, size=(11, 13), mode="bilinear", align_corners=False)
    y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), layer.conv.weight, layer.conv.bias)
    torch.testing.assert_close(layer(x, (11, 13)), y)
    # Resizing before the 1x1 conv would give a different map (the ReLU does not commute with resizing).
    z = F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False)
    z = F.relu(F.batch_norm(F.conv2d(z, layer.reduce.weight), None, None, training=True))
    z = F.conv2d(F.pad(z, (1, 1, 1, 1), mode="reflect"), layer.conv.weight, layer.conv.bias)
    assert not torch.allclose(layer(x, (11, 13)), z, atol=1e-3)


def coverage(n: int, s: int) -> torch.Tensor:
    # Transposed conv, kernel 2s, stride s, padding s/2: input i writes output rows i*s - s/2 .. i*s + 3s/2 - 1.
    # Inside the map every output row is written by 2 inputs; the outer s/2 rows on each edge by only 1.
    c = torch.full((n,), 2.0)
    c[: s // 2] = 1.0
    c[n - s // 2 :] = 1.0
    return c


@pytest.mark.parametrize("s", [2, 4, 8])
def test_original_side_layer_upsamples_by_the_stride(s):
    layer = OriginalSideLayer(1, 1, stride=s, norm=False)
    with torch.no_grad():
        layer.reduce.weight.fill_(1.0)
        layer.upsample.weight.fill_(1.0)
    h, w = 3, 5
    out = layer(torch.ones(1, 1, h, w), (h * s, w * s))
    assert out.shape == (1, 1, h * s, w * s)
    # All-ones kernel on an all-ones input: each output pixel = (#inputs covering its row) * (#covering its column).
    expected = coverage(h * s, s)[:, None] * coverage(w * s, s)[None, :]
    torch.testing.assert_close(out[0, 0], expected)


def test_original_side_layer_crops_a_padded_feature_and_resizes_otherwise():
    layer = OriginalSideLayer(3, 2, stride=4)
    x = torch.randn(2, 3, 5, 5)  # a 17x18 input gives ceil(17/4) = 5 rows at stride 4 -> 20 rows after x4
    full = layer(x, (20, 20))
    torch.testing.assert_close(layer(x, (17, 18)), full[..., :17, :18])
    # Half-size output: the x4 result is bilinearly resized, not cropped.
    half = F.interpolate(full, size=(10, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(layer(x, (10, 10)), half)


def test_original_side_layer_stride_one_and_bad_strides():
    layer = OriginalSideLayer(4, 2, stride=1)
    assert isinstance(layer.upsample, torch.nn.Identity)
    assert layer(torch.randn(2, 4, 6, 6), (6, 6)).shape == (2, 2, 6, 6)
    with pytest.raises(ValueError, match="even integer"):
        OriginalSideLayer(4, 2, stride=3)


def test_init_sets_bn_and_biases():
    layer = SideLayer(16, 4, bias=True)
    with torch.no_grad():
        layer.norm.weight.fill_(3.0)
        layer.conv.bias.fill_(2.0)
    init_weights(layer, init="normal")
    assert torch.equal(layer.norm.weight, torch.ones(4)) and torch.equal(layer.norm.bias, torch.zeros(4))
    assert torch.equal(layer.conv.bias, torch.zeros(4))
    with pytest.raises(ValueError, match="init must be one of"):
        init_weights(layer, init="xavier")


@pytest.mark.parametrize("bias", [False, True])
def test_binary_sides_one_grouped_conv_equals_each_side_alone(bias):
    # The merged path (one grouped 3x3 conv over the stacked resized maps) must give the per-side values and
    # gradients; a mixed list (one original side layer) takes the per-side path.
    from sbcb.heads.side_layers import binary_sides

    torch.manual_seed(0)
    sides = [SideLayer(c, 1, bias=bias) for c in (3, 5, 7)]
    for s in sides:
        if bias:
            torch.nn.init.normal_(s.conv.bias)
    feats = [torch.randn(2, c, 12 // r, 20 // r, requires_grad=True) for c, r in zip((3, 5, 7), (1, 2, 4))]
    merged = binary_sides(sides, feats, (12, 20))
    alone = torch.cat([s(f, (12, 20)) for s, f in zip(sides, feats)], dim=1)
    assert merged.shape == (2, 3, 12, 20)
    torch.testing.assert_close(merged, alone)
    g = torch.randn_like(alone)
    grads_merged = torch.autograd.grad(merged, feats + [s.conv.weight for s in sides], g)
    grads_alone = torch.autograd.grad(alone, feats + [s.conv.weight for s in sides], g)
    for a, b in zip(grads_merged, grads_alone):
        torch.testing.assert_close(a, b)
    mixed = [sides[0], OriginalSideLayer(5, 1, stride=2)]
    out = binary_sides(mixed, feats[:2], (12, 20))
    torch.testing.assert_close(out[:, 1:], mixed[1](feats[1], (12, 20)))
