"""DFF head: parameter count, the adaptive-weight fuse for any N, the official flags."""

from __future__ import annotations

import pytest
import torch

from sbcb.heads import DFFHead


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_r101_k19():
    # Sides with a bias on every 3x3 (C_in*C_out + 2*C_out + 9*C_out**2 + C_out):
    #   side 1: 64 + 2 + 9 + 1 = 76; side 2: 256 + 12 = 268; side 3: 512 + 12 = 524
    #   side 5: 38,912 + 38 + 3,249 + 19 = 42,218                 -> sides 43,086
    # Weight branch, side layer 2048 -> N*K = 76 with bias:
    #   1x1 2048*76 = 155,648; BN 2*76 = 152; 3x3 9*76*76 = 51,984 + bias 76 = 52,060 -> 207,860
    # AWL: three 1x1 convs 76*76 = 5,776 (no bias) + three BNs 152            -> 17,784
    # total: 43,086 + 207,860 + 17,784 = 268,730 (225,590 more than CASENet's 43,140: paper 60.5M vs 60.2M)
    assert count(DFFHead([64, 256, 512, 2048], 19)) == 268_730


def test_blette_variant_flags():
    # bias only on the last side: the three binary-side biases go; the AWL flags add no parameters.
    head = DFFHead([64, 256, 512, 2048], 19, side_bias=False, awl_sigmoid=False)
    assert count(head) == 268_730 - 3


@pytest.mark.parametrize("n,k", [(2, 1), (4, 19), (6, 3)])
@pytest.mark.parametrize("sigmoid", [True, False])
def test_fuse_equals_weighted_sum_over_the_explicit_concat(n, k, sigmoid):
    channels = [2 + i for i in range(n)]
    size = (8, 12)
    feats = [torch.randn(2, c, 4, 6) for c in channels]
    head = DFFHead(channels, k, awl_sigmoid=sigmoid)
    out = head(feats, size)

    sides = [layer(f, size) for layer, f in zip(head.sides, feats)]
    weights = head.awl(head.weight_branch(feats[-1], size))
    assert weights.shape == (2, n * k, *size)
    if sigmoid:
        assert (weights > 0).all() and (weights < 1).all()
    # fuse_k = sum_j w[k*N + j] * x[k*N + j] with x the sliced concat [S_k, s_1..s_{N-1}], by an explicit loop.
    reference = torch.zeros(2, k, *size)
    for c in range(k):
        terms = [sides[-1][:, c]] + [s[:, 0] for s in sides[:-1]]
        for j, x in enumerate(terms):
            reference[:, c] += weights[:, c * n + j] * x
    torch.testing.assert_close(out["fuse"], reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["last"], sides[-1])


def test_awl_order_pre_relu_then_three_convs():
    head = DFFHead([3, 4, 5], 2, awl_pre_relu=True, awl_sigmoid=True).eval()
    awl = head.awl
    x = torch.randn(1, 6, 5, 5)
    # Spec order: ReLU, (conv + BN + ReLU) x 2, conv + BN, sigmoid.
    y = torch.relu(x)
    convs = [m for m in awl.layers if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in awl.layers if isinstance(m, torch.nn.BatchNorm2d)]
    for i, (conv, bn) in enumerate(zip(convs, bns)):
        y = bn(conv(y))
        if i < 2:
            y = torch.relu(y)
    torch.testing.assert_close(awl(x), torch.sigmoid(y))
    # Without the pre-ReLU, a negative input changes the result.
    head.awl.pre_relu = False
    assert not torch.allclose(awl(x), torch.sigmoid(y))
