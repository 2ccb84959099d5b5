"""Shared checks for the adapter tests: wrap, measure sides, strip exactness, one training step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sbcb.wrapper import SBCB

K = 4
BATCH = 2


def sgd_step(module: nn.Module, *, lr: float) -> None:
    """Plain SGD by hand (torch.optim's first import pulls in torch._dynamo, seconds on these machines)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None


def _logits(output: Any) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def check_wrapped(
    build: Callable[[], nn.Module],
    expected: Sequence[tuple[int, int]],
    *,
    size: tuple[int, int] = (64, 64),
    **sbcb_kwargs: Any,
) -> SBCB:
    """Wrap a model built twice from the same seed and check the SBCB contract against the never-wrapped twin.

    Args:
        build: Builds the (unmodified) model.
        expected: (channels, stride) of each side, from an independent source (the library's own feature info,
            the architecture's published table).
        size: Input (H, W).
    """
    torch.manual_seed(0)
    model = build()
    torch.manual_seed(0)
    twin = build()
    net = SBCB(model, num_classes=K, probe_size=size, **sbcb_kwargs)
    assert [(i.num_chs, i.reduction) for i in net.side_infos] == list(expected)

    x = torch.randn(BATCH, 3, *size)
    net.eval()  # a train-mode forward would update BatchNorm statistics and break the comparison with the twin
    twin.eval()
    with torch.no_grad():
        feats = net.extract_features(x)
    h, w = size
    for f, (c, r) in zip(feats, expected):
        assert tuple(f.shape) == (BATCH, c, h // r, w // r)

    # strip right after construction: the very same object, equal to the never-wrapped twin (buffers included)
    stripped = net.strip()
    assert stripped is model
    sa, sb = stripped.state_dict(), twin.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sum(p.numel() for p in stripped.parameters()) == sum(p.numel() for p in twin.parameters())
    with torch.no_grad():
        assert torch.equal(_logits(stripped(x)), _logits(twin(x)))
        assert torch.equal(net(x), _logits(twin(x)))  # eval-mode forward of the wrapper = plain logits
    assert _no_hooks(stripped)

    # one training step with on-the-fly boundary GT
    net.train()
    out = net.forward_outputs(x)
    assert out.seg.shape == (BATCH, K, h, w)
    assert all(v.shape[-2:] == size for v in out.sbd.values())
    mask = torch.zeros(BATCH, h, w, dtype=torch.long)
    mask[:, :, w // 2 :] = 1
    mask[:, h // 2 :, : w // 4] = 2
    mask[:, : h // 8] = 255
    losses = net(x, mask)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first_side = net.side_infos[0].module
    grads = [p.grad for p in model.get_submodule(first_side).parameters() if p.grad is not None]
    head_grads = [p.grad for p in net.head.parameters() if p.grad is not None]
    assert head_grads and all(torch.isfinite(g).all() for g in head_grads)
    if grads:  # the SBD loss reaches the tapped backbone layers
        assert any(g.abs().sum() > 0 for g in grads)
    sgd_step(net, lr=0.01)
    stripped = net.strip()
    assert _no_hooks(stripped) and list(stripped.state_dict()) == list(sb)
    return net
