"""The fast SBD heads and losses equal the slow reference (tests/heads/reference_sbd.py): values and gradients.

fp32 within 1e-5 relative (of the largest magnitude of each compared tensor), on every head (CASENet, DFF, DDS;
BBCB = K 1), both side layers, full and reduced output sizes, with the losses of `sbd_loss_terms` on top; bf16
autocast stays finite.
"""

from __future__ import annotations

import copy

import pytest
import reference_sbd as ref
import torch

from sbcb.heads import build_head
from sbcb.losses import BinaryEdgeLoss, MultiLabelEdgeLoss, binary_target, resize_boundaries, sbd_loss_terms

CHANNELS = {"casenet": [3, 4, 5, 6], "dff": [3, 4, 5, 6], "dds": [3, 4, 5, 6, 7]}
STRIDES = {"casenet": [2, 4, 8, 16], "dff": [2, 4, 8, 16], "dds": [2, 4, 8, 16, 16]}


def close(actual: torch.Tensor, expected: torch.Tensor, what: str, rel: float = 1e-5) -> None:
    """|actual - expected| <= rel * max|expected| elementwise (+ a tiny floor for all-zero tensors)."""
    expected = expected.to(actual.dtype)
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale + 1e-12, msg=lambda m: f"{what}: {m}")


def boundaries_for(bsz: int, k: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Sparse multi-label GT with blocky regions (as masks make), [B, K, H, W] bool."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, k, (bsz, 1, size[0] // 4 + 1, size[1] // 4 + 1), generator=g).float()
    labels = torch.nn.functional.interpolate(coarse, scale_factor=4, mode="nearest")[:, 0, : size[0], : size[1]]
    labels = labels.long()
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :, 1:] |= labels[:, :, 1:] != labels[:, :, :-1]
    onehot = torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).bool()
    return onehot & edge.unsqueeze(1)


def features_for(name: str, bsz: int, size: tuple[int, int], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(bsz, c, size[0] // s, size[1] // s, generator=g).requires_grad_()
        for c, s in zip(CHANNELS[name], STRIDES[name])
    ]


def reference_terms(outputs, boundaries, *, head: str, binary: bool, alpha: float = 5.0, beta: float = 1.0):
    """`sbd_loss_terms` by the reference losses (same routing: fuse/last multi-label, DDS sides binary)."""
    terms = {}
    for key, logits in outputs.items():
        gt = ref.resize_boundaries(boundaries, tuple(logits.shape[-2:]))
        is_binary = binary or (head == "dds" and key.startswith("side") and logits.shape[1] == 1)
        if is_binary:
            terms[key] = beta * ref.binary_loss(logits, binary_target(gt))
        else:
            terms[key] = alpha * ref.multilabel_loss(logits, gt)
    return terms


def run_both(head, feats, out_size, boundaries, *, name, binary):
    """(fast, reference) x (outputs, loss terms, gradients of the summed loss w.r.t. parameters + features)."""
    params = list(head.parameters())
    results = []
    for fast in (True, False):
        out = head(feats, out_size) if fast else ref.head_outputs(head, feats, out_size)
        if fast:  # the library routes by the head's declared plan; the reference by the spec's table of head names
            terms = sbd_loss_terms(out, boundaries, plan=head.loss_plan, binary=binary)
        else:
            terms = reference_terms(out, boundaries, head=name, binary=binary)
        terms = {key.removeprefix("loss_sbd_"): value for key, value in terms.items()}
        grads = torch.autograd.grad(sum(terms.values()), params + feats)
        results.append((out, terms, grads))
    return results


def compare(fast, slow, *, rel: float, what: str, names: list[str], exact=None) -> None:
    """Outputs and loss terms within `rel` of each tensor's max; gradients within `rel` of the largest gradient.

    Gradients use one scale for all of them: some are zero in exact arithmetic (a conv bias before a train-mode BN)
    and are pure rounding noise in fp32, so their own max is no scale. With `exact` (the reference in float64), the
    fp32 tolerance also admits twice the reference's own fp32 error: on cancellation-heavy gradients (DFF's weight
    branch through two train-mode BNs on a few pixels) fp32 itself is not 1e-5 accurate.
    """

    def check(a, b, scale, label, exact_b=None):
        b = b.to(a.dtype)
        slack = rel * scale
        if exact_b is not None:
            slack = slack + 2 * (b - exact_b.to(a.dtype)).abs()
        bad = (a - b).abs() > slack + rel * b.abs()
        assert not bad.any(), f"{what} {label}: max |diff| {(a - b).abs().max().item():.3g}, scale {scale:.3g}"

    (out_f, terms_f, grads_f), (out_s, terms_s, grads_s) = fast, slow
    out_e, terms_e, grads_e = exact if exact is not None else (out_s, terms_s, grads_s)
    assert out_f.keys() == out_s.keys() and terms_f.keys() == terms_s.keys()
    for key in out_f:
        check(out_f[key], out_s[key], out_s[key].abs().max().item(), f"output {key}", exact and out_e[key])
    for key in terms_f:
        check(terms_f[key], terms_s[key], terms_s[key].abs().item(), f"loss {key}", exact and terms_e[key])
    scale = max(g.abs().max().item() for g in grads_s)
    for label, a, b, e in zip(names, grads_f, grads_s, grads_e):
        check(a, b, scale, f"grad {label}", e if exact is not None else None)


@pytest.mark.parametrize("name", ["casenet", "dff", "dds"])
@pytest.mark.parametrize("side_layer", ["sbcb", "original"])
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_head_and_loss_values_and_gradients_equal_the_reference(name, side_layer, k, scale):
    # DFF's weight branch runs two train-mode BNs on the 1/16 feature: at 32x48 that is 12 pixels, whose gradient
    # cancellations leave fp32 itself (reference included) ~1e-4 off float64; 64x96 gives BN 48 pixels.
    bsz, size = 2, (64, 96) if name == "dff" else (32, 48)
    torch.manual_seed(0)
    options = {"strides": STRIDES[name]} if side_layer == "original" else {}
    head = build_head(name, CHANNELS[name], k, side_layer=side_layer, **options).train()
    with torch.no_grad():  # nonzero biases and BN affine, so their placement is checked too
        for p_name, p in head.named_parameters():
            if p_name.endswith("bias") or ".norm." in p_name or ".bn" in p_name:
                p.normal_(0, 0.5)
    out_size = (round(size[0] * scale), round(size[1] * scale))
    feats = features_for(name, bsz, size, seed=1)
    boundaries = boundaries_for(bsz, max(k, 3), size, seed=2)
    gt = boundaries if k == 1 else boundaries[:, :k]
    names = [n for n, _ in head.named_parameters()] + [f"feature{i}" for i in range(len(feats))]
    what = f"{name}/{side_layer}/K={k}/scale={scale}"

    # float64: the same function (only the summation order differs)
    head64 = copy.deepcopy(head).double()
    feats64 = [f.detach().double().requires_grad_() for f in feats]
    fast64, ref64 = run_both(head64, feats64, out_size, gt, name=name, binary=k == 1)
    compare(fast64, ref64, rel=1e-9, what=what + "/fp64", names=names)
    # float32: the fast path within 1e-5 of the reference (or of its own fp32 error)
    fast32, ref32 = run_both(head, feats, out_size, gt, name=name, binary=k == 1)
    compare(fast32, ref32, rel=1e-5, what=what + "/fp32", names=names, exact=ref64)


@pytest.mark.parametrize("name", ["casenet", "dff", "dds"])
def test_head_channels_last_features_and_eval_mode_equal_the_reference(name):
    # Backbones on the CPU often hand over NHWC features; eval mode uses running statistics.
    head = build_head(name, CHANNELS[name], 4).eval()
    feats = [f.detach().contiguous(memory_format=torch.channels_last) for f in features_for(name, 2, (32, 32), 3)]
    fast = head(feats, (32, 32))
    slow = ref.head_outputs(copy.deepcopy(head).double(), [f.double() for f in feats], (32, 32))
    for key in fast:
        close(fast[key], slow[key], f"{name} eval output {key}")


@pytest.mark.parametrize("name", ["casenet", "dff", "dds"])
@pytest.mark.parametrize("k", [1, 5])
def test_bf16_autocast_head_and_loss_are_finite(name, k):
    head = build_head(name, CHANNELS[name], k).train()
    feats = features_for(name, 2, (32, 48), seed=4)
    gt = boundaries_for(2, 5, (32, 48), seed=5)[:, : max(k, 1)] if k > 1 else boundaries_for(2, 5, (32, 48), 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats, (32, 48))
        terms = sbd_loss_terms(out, gt, plan=head.loss_plan, binary=k == 1)
    total = sum(terms.values())
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    for p in head.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(torch.isfinite(f.grad).all() for f in feats)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"pos_weight": "class"},
        {"class_weights": [0.5, 1.0, 2.0, 3.0]},
        {"pos_weight": "class", "class_sensitivity": 3},
    ],
)
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_multilabel_loss_values_and_gradients_equal_the_reference(options, ignore, layout):
    g = torch.Generator().manual_seed(6)
    logits = (4 * torch.randn(3, 4, 9, 11, generator=g)).requires_grad_()
    target = boundaries_for(3, 4, (9, 11), seed=7)
    target[1] = False  # an image without positives: w = T
    target[2, :, :3] = True  # and one with overlapping multi-label positives (P > T/2 per channel)
    mask = torch.rand(3, 9, 11, generator=g) < 0.2 if ignore else None
    x = logits if layout == "nchw" else logits.contiguous(memory_format=torch.channels_last)
    fast = MultiLabelEdgeLoss(**options)(x, target, mask)
    slow = ref.multilabel_loss(logits, target, mask, **options)
    close(fast, slow, "value")
    close(torch.autograd.grad(fast, logits)[0], torch.autograd.grad(slow, logits)[0], "gradient")


@pytest.mark.parametrize("factors", [(1.0, 1.0), (1.0, 1.1)])
@pytest.mark.parametrize("case", ["mixed", "all_ignored", "no_positives"])
def test_binary_loss_values_and_gradients_equal_the_reference(factors, case):
    g = torch.Generator().manual_seed(8)
    logits = (3 * torch.randn(2, 1, 10, 12, generator=g)).requires_grad_()
    target = torch.randint(0, 3, (2, 1, 10, 12), generator=g, dtype=torch.uint8)  # 2 = ignored
    if case == "all_ignored":
        target.fill_(2)
    elif case == "no_positives":
        target[target == 1] = 0
    loss = BinaryEdgeLoss(pos_factor=factors[0], neg_factor=factors[1])
    fast = loss(logits, target)
    slow = ref.binary_loss(logits, target, pos_factor=factors[0], neg_factor=factors[1])
    close(fast, slow, "value")
    close(torch.autograd.grad(fast, logits)[0], torch.autograd.grad(slow, logits)[0], "gradient")


@pytest.mark.parametrize("size", [(16, 24), (8, 8), (10, 15), (64, 96), (32, 48)])
def test_resize_boundaries_equals_the_reference(size):
    b = boundaries_for(2, 3, (32, 48), seed=9)
    assert torch.equal(resize_boundaries(b, size), ref.resize_boundaries(b, size))
    assert torch.equal(resize_boundaries(b.to(torch.uint8), size), ref.resize_boundaries(b, size))
