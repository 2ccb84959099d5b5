"""CASENet head (and BBCB = CASENet with K = 1): parameter counts, the fuse, bias options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sbcb.heads import CASENetHead

R101_SIDES = [64, 256, 512, 2048]  # stem, layer1, layer2, layer4 (sides 1, 2, 3, 5)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_r101_k19():
    # SBCB side layer C_in -> C_out: 1x1 C_in*C_out (no bias) + BN 2*C_out + 3x3 9*C_out**2, no bias anywhere.
    # side 1: 64*1 + 2 + 9 = 75;  side 2: 256 + 2 + 9 = 267;  side 3: 512 + 2 + 9 = 523
    # side 5: 2048*19 = 38,912 + 2*19 = 38 + 9*19*19 = 3,249  -> 42,199
    # fuse: grouped 1x1, K groups of N: weight K*N = 19*4 = 76, no bias
    # total: 75 + 267 + 523 + 42,199 + 76 = 43,140 (paper Tab. 4a: "+0.05M")
    assert count(CASENetHead(R101_SIDES, 19)) == 43_140


def test_parameter_count_bbcb():
    # K = 1: sides 1-3 as above (75 + 267 + 523 = 865); side 5: 2048 + 2 + 9 = 2,059; fuse 1*4 = 4
    # total 865 + 2,059 + 4 = 2,928 (paper Tab. 4a: "+0.01M")
    assert count(CASENetHead(R101_SIDES, 1)) == 2_928


def test_bias_options_add_exactly_their_biases():
    # last_bias adds K = 19 (semantic 3x3), fuse_bias adds K = 19, side_bias adds 1 per binary side (3).
    assert count(CASENetHead(R101_SIDES, 19, last_bias=True, fuse_bias=True)) == 43_140 + 19 + 19
    assert count(CASENetHead(R101_SIDES, 19, side_bias=True)) == 43_140 + 3


def explicit_sliced_concat(semantic: torch.Tensor, binary: list[torch.Tensor]) -> torch.Tensor:
    """[B, K*N, H, W]: for k = 0..K-1 the block [S_k, s_1, ..., s_{N-1}] (spec §3.3), built channel by channel."""
    channels = []
    for k in range(semantic.shape[1]):
        channels.append(semantic[:, k : k + 1])
        channels.extend(binary)
    return torch.cat(channels, dim=1)


@pytest.mark.parametrize("n,k", [(2, 1), (4, 19), (5, 3), (6, 150)])
@pytest.mark.parametrize("side_layer", ["sbcb", "original"])
def test_fuse_equals_grouped_conv_on_the_explicit_concat(n, k, side_layer):
    channels = [2 + i for i in range(n)]
    strides = [2 ** min(i + 1, 3) for i in range(n)]
    size = (16, 24)
    feats = [torch.randn(2, c, size[0] // s, size[1] // s) for c, s in zip(channels, strides)]
    head = CASENetHead(channels, k, side_layer=side_layer, strides=strides, fuse_bias=True)
    with torch.no_grad():
        head.fuse.bias.normal_()  # a nonzero bias, so its placement is checked too
    out = head(feats, size)

    sides = [layer(f, size) for layer, f in zip(head.sides, feats)]
    concat = explicit_sliced_concat(sides[-1], sides[:-1])
    assert concat.shape[1] == k * n
    reference = F.conv2d(concat, head.fuse.weight, head.fuse.bias, groups=k)
    torch.testing.assert_close(out["fuse"], reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["last"], sides[-1])


def test_fuse_hand_worked_k2_n3():
    # Sides give constant maps: S = (S_0, S_1) = (1, 2), s_1 = 10, s_2 = 100. Fuse weight rows:
    # class 0: (w00, w01, w02) = (1, 2, 3)  -> 1*1 + 2*10 + 3*100 = 321, + bias 0.5 = 321.5
    # class 1: (4, 5, 6)                    -> 4*2 + 5*10 + 6*100 = 658, + bias -1  = 657
    from sbcb.heads.side_layers import fuse_sliced

    semantic = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    binary = torch.tensor([10.0, 100.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    weight = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(2, 3, 1, 1)
    out = fuse_sliced(semantic, binary, weight, torch.tensor([0.5, -1.0]))
    assert torch.equal(out, torch.tensor([321.5, 657.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3))


def test_official_layout_has_no_bias_and_kaiming_fan_out_init():
    head = CASENetHead(R101_SIDES, 19)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * 4 + 1 and all(m.bias is None for m in convs)  # 2 per side + fuse, no conv bias
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / fan_out); semantic 1x1 conv 2048 -> 19 has fan_out 19,
    # so std = sqrt(2/19) = 0.3244 over 38,912 samples (sampling error ~0.4 %).
    w = head.sides[-1].reduce.weight
    assert abs(w.std().item() - (2 / 19) ** 0.5) < 0.01
    head = CASENetHead(R101_SIDES, 19, init="normal")
    assert abs(head.sides[-1].reduce.weight.std().item() - 0.01) < 0.0005
