"""CCNet's criss-cross attention against a per-pixel loop written straight from the paper (values and gradients)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sbcb.models.ccnet import CrissCrossAttention, RecurrentCrissCross


def reference_criss_cross(x: torch.Tensor, cca: CrissCrossAttention) -> torch.Tensor:
    """Slow definition: pixel (h, w) attends to its column (every h' != h) and its whole row (w' incl. w)."""
    q, k, v = cca.query(x), cca.key(x), cca.value(x)
    b, _, height, width = x.shape
    out = torch.zeros_like(v)
    for n in range(b):
        for h in range(height):
            for w in range(width):
                positions = [(g, w) for g in range(height) if g != h] + [(h, u) for u in range(width)]
                energies = torch.stack([(q[n, :, h, w] * k[n, :, g, u]).sum() for g, u in positions])
                weights = F.softmax(energies, dim=0)
                out[n, :, h, w] = sum(wt * v[n, :, g, u] for wt, (g, u) in zip(weights, positions))
    return cca.gamma * out + x


def test_criss_cross_equals_the_dense_reference_values_and_gradients():
    torch.manual_seed(0)
    cca = CrissCrossAttention(16).double()
    with torch.no_grad():
        cca.gamma.fill_(0.7)  # 0 at init would hide the attention term
    x = torch.randn(2, 16, 4, 5, dtype=torch.float64, requires_grad=True)  # non-square: a swapped H/W shows up
    fast = cca(x)
    slow = reference_criss_cross(x, cca)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    weight = torch.randn_like(fast)
    params = [x, *cca.parameters()]
    grads_fast = torch.autograd.grad((fast * weight).sum(), params)
    grads_slow = torch.autograd.grad((slow * weight).sum(), params)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, gs, rtol=1e-10, atol=1e-10)


def test_recurrence_two_reuses_one_attention():
    torch.manual_seed(0)
    block = RecurrentCrissCross(16, recurrence=2).double()
    with torch.no_grad():
        block.attention.gamma.fill_(0.5)
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64)
    once = reference_criss_cross(x, block.attention)
    torch.testing.assert_close(block(x), reference_criss_cross(once, block.attention))
    # the second step connects every pixel to every other: perturbing a corner changes the opposite corner
    y = x.clone()
    y[..., 0, 0] += 1.0
    assert not torch.allclose(block(x)[..., -1, -1], block(y)[..., -1, -1])
    assert torch.allclose(
        reference_criss_cross(x, block.attention)[..., -1, -1], reference_criss_cross(y, block.attention)[..., -1, -1]
    )
