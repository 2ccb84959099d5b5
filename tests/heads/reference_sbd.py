"""Slow, obviously-correct reference of the SBD heads and losses (test-only, issue 17).

Each function recomputes a head's outputs (or a loss) from the module's own parameters the literal way the spec
defines it: every side layer as its plain op sequence in NCHW, the CASENet/DDS fuse as the grouped 1x1 conv over the
explicit sliced concatenation, DFF's fuse as an explicit weighted sum over that concatenation, and the losses as
``F.binary_cross_entropy_with_logits`` with per-element weights. The library's fast paths are tested against these
for values and gradients (tests/heads/test_fast_paths.py).

BatchNorm layers are called as modules, so in training mode both the reference and the fast path use batch
statistics (the same values) and each call updates the running statistics; compare in one mode at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.heads import CASENetHead, DDSHead, DFFHead
from sbcb.heads.side_layers import BasicBlock, OriginalSideLayer, SideBlock, SideLayer


def side_layer(layer: nn.Module, x: Tensor, size: tuple[int, int]) -> Tensor:
    """One side layer, ``[B, C_in, h, w]`` -> ``[B, C_out, H, W]``, as the spec writes it (spec §3.2)."""
    if isinstance(layer, SideBlock):
        for block in layer.blocks:
            x = basic_block(block, x)
        return side_layer(layer.side, x, size)
    if isinstance(layer, SideLayer):
        x = F.relu(layer.norm(F.conv2d(x, layer.reduce.weight)))
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), layer.conv.weight, layer.conv.bias)
    if isinstance(layer, OriginalSideLayer):
        x = layer.norm(F.conv2d(x, layer.reduce.weight, layer.reduce.bias))
        if layer.stride > 1:
            s = layer.stride
            x = F.conv_transpose2d(x, layer.upsample.weight, stride=s, padding=s // 2)
        h, w = x.shape[-2:]
        oh, ow = size
        if (h, w) == (oh, ow):
            return x
        if oh <= h < oh + layer.stride and ow <= w < ow + layer.stride:
            return x[..., :oh, :ow]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    raise TypeError(f"no reference for {type(layer).__name__}")


def basic_block(block: BasicBlock, x: Tensor) -> Tensor:
    """ResNet BasicBlock: conv-BN-ReLU, conv-BN, + identity, ReLU."""
    y = F.relu(block.bn1(F.conv2d(x, block.conv1.weight, padding=1)))
    y = block.bn2(F.conv2d(y, block.conv2.weight, padding=1))
    return F.relu(y + x)


def sliced_concat(semantic: Tensor, binary: list[Tensor]) -> Tensor:
    """``[B, K*N, H, W]``: for each class k the block ``[S_k, s_1, ..., s_{N-1}]`` (spec §3.3)."""
    channels = []
    for k in range(semantic.shape[1]):
        channels.append(semantic[:, k : k + 1])
        channels.extend(binary)
    return torch.cat(channels, dim=1)


def head_outputs(head: nn.Module, features: list[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
    """The reference output dict of a CASENet, DFF or DDS head (same keys as the head's forward)."""
    sides = [side_layer(layer, f, size) for layer, f in zip(head.sides, features)]
    k = head.num_classes
    if isinstance(head, CASENetHead):
        fuse = F.conv2d(sliced_concat(sides[-1], sides[:-1]), head.fuse.weight, head.fuse.bias, groups=k)
        return {"fuse": fuse, "last": sides[-1]}
    if isinstance(head, DDSHead):
        fuse = F.conv2d(sliced_concat(sides[-1], sides[:-1]), head.fuse.weight, head.fuse.bias, groups=k)
        outputs = {f"side{i + 1}": s for i, s in enumerate(sides)}
        outputs["fuse"] = fuse
        return outputs
    if isinstance(head, DFFHead):
        n = len(sides)
        weights = side_layer(head.weight_branch, features[-1], size)
        awl = head.awl
        if awl.pre_relu:
            weights = F.relu(weights)
        for m in awl.layers:
            weights = F.conv2d(weights, m.weight) if isinstance(m, nn.Conv2d) else m(weights)
        if awl.sigmoid:
            weights = torch.sigmoid(weights)
        concat = sliced_concat(sides[-1], sides[:-1])  # channel k*N + j
        fuse = (weights * concat).reshape(concat.shape[0], k, n, *size).sum(dim=2)
        return {"fuse": fuse, "last": sides[-1]}
    raise TypeError(f"no reference for {type(head).__name__}")


def multilabel_loss(
    logits: Tensor,
    target: Tensor,
    ignore_mask: Tensor | None = None,
    *,
    pos_weight: str = "image",
    class_sensitivity: float = 10.0,
    class_weights: list[float] | None = None,
) -> Tensor:
    """`MultiLabelEdgeLoss` by its definition: BCE with a per-element pos weight, mean over K*T, mean over B."""
    bsz, k, h, w = logits.shape
    x = logits.double()
    y = target.bool()
    valid = torch.ones(bsz, 1, h, w, dtype=torch.bool) if ignore_mask is None else ~ignore_mask.bool().unsqueeze(1)
    y = y & valid
    pixels = valid.flatten(1).sum(1).double()  # T_b
    if pos_weight == "image":
        counts = y.flatten(1).sum(1).double().view(bsz, 1)
    else:
        counts = y.flatten(2).sum(2).double()  # [B, K]
    t = pixels.view(bsz, 1)
    ratio = torch.where(counts > 0, (t - counts) / counts.clamp(min=1), torch.full_like(counts, float("inf")))
    weight = torch.minimum(ratio.clamp(min=1), t.expand_as(ratio))
    if pos_weight == "class":
        weight = weight / class_sensitivity
    pw = weight.view(bsz, -1, 1, 1).expand(bsz, k, h, w)
    multiplier = valid.double().expand(bsz, k, h, w)
    if class_weights is not None:
        multiplier = multiplier * torch.tensor(class_weights, dtype=torch.float64).view(1, k, 1, 1)
    element = F.binary_cross_entropy_with_logits(x, y.double(), weight=multiplier, pos_weight=pw, reduction="none")
    per_image = element.flatten(1).sum(1) / (k * pixels).clamp(min=1)
    return per_image.mean()


def binary_loss(logits: Tensor, target: Tensor, *, pos_factor: float = 1.0, neg_factor: float = 1.0) -> Tensor:
    """`BinaryEdgeLoss` by its definition: HED weights from batch counts, labels > 1 weigh 0, mean over all."""
    x = logits.double()
    y = target.long()
    pos, neg = y == 1, y == 0
    n_pos, n_neg = pos.sum().double(), neg.sum().double()
    total = (n_pos + n_neg).clamp(min=1)
    weight = pos * (pos_factor * n_neg / total) + neg * (neg_factor * n_pos / total)
    return F.binary_cross_entropy_with_logits(x, pos.double(), weight=weight, reduction="mean")


def resize_boundaries(boundaries: Tensor, size: tuple[int, int]) -> Tensor:
    """`sbcb.losses.resize_boundaries` by its definition: block-any for integer downscales, nearest otherwise."""
    b = boundaries.bool()
    bsz, k, big_h, big_w = b.shape
    h, w = size
    if (big_h, big_w) == (h, w):
        return b
    if big_h % h == 0 and big_w % w == 0:
        fh, fw = big_h // h, big_w // w
        return F.max_pool2d(b.float(), (fh, fw)).bool()
    return F.interpolate(b.float(), size=(h, w), mode="nearest").bool()
