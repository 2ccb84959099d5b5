"""DDS head: parameter count (counted on the meta device), side blocks, the fuse with bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sbcb.heads import DDSHead
from sbcb.heads.side_layers import BasicBlock


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_r101_k19_all_five_sides():
    # BasicBlock at C: two 3x3 C->C convs (18*C**2) + two BNs (4*C); two blocks per side: 36*C**2 + 8*C.
    #   sum C**2 over [64, 256, 512, 1024, 2048] = 4,096 + 65,536 + 262,144 + 1,048,576 + 4,194,304 = 5,574,656
    #   36 * 5,574,656 = 200,687,616; 8 * (64 + 256 + 512 + 1024 + 2048 = 3,904) = 31,232 -> 200,718,848
    # Side layers with a 3x3 bias: 76 + 268 + 524 + (1024 + 12 = 1,036) + 42,218 = 44,122
    # Fuse: grouped 1x1, 19 groups of 5: 95 weights + 19 bias = 114
    # total: 200,718,848 + 44,122 + 114 = 200,763,084 (paper: 261.0M - 60.2M)
    with torch.device("meta"):  # 800 MB of fp32 weights otherwise
        head = DDSHead([64, 256, 512, 1024, 2048], 19)
    assert count(head) == 200_763_084


def test_basic_block_count_and_identity_path():
    # 18*C**2 + 4*C at C = 8: 1,152 + 32 = 1,184
    block = BasicBlock(8)
    assert count(block) == 1_184
    # With conv2's weights at zero the residual branch is BN(0) = 0, so the block is relu(x).
    with torch.no_grad():
        block.conv2.weight.zero_()
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_fuse_equals_grouped_conv_on_the_explicit_concat():
    n, k, size = 5, 4, (12, 16)
    channels = [2, 3, 4, 5, 6]
    feats = [torch.randn(2, c, 6, 8) for c in channels]
    head = DDSHead(channels, k)
    with torch.no_grad():
        head.fuse.bias.normal_()
    out = head(feats, size)
    # The side outputs are the side blocks applied one by one.
    for i, (block, f) in enumerate(zip(head.sides, feats)):
        torch.testing.assert_close(out[f"side{i + 1}"], block.side(block.blocks(f), size))
    blocks = []
    for c in range(k):  # [S_c, s_1, s_2, s_3, s_4] per class
        blocks += [out["side5"][:, c : c + 1]] + [out[f"side{j}"] for j in range(1, n)]
    reference = F.conv2d(torch.cat(blocks, dim=1), head.fuse.weight, head.fuse.bias, groups=k)
    torch.testing.assert_close(out["fuse"], reference, rtol=1e-5, atol=1e-5)
