"""Boundary losses against slow per-image references, hand-worked cases and PyTorch's pos_weight BCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sbcb.heads import CASENetHead, DDSHead
from sbcb.losses import BinaryEdgeLoss, MultiLabelEdgeLoss, binary_target, resize_boundaries, sbd_loss_terms

# The heads declare their loss plans (the SBD loss never looks at head names).
CASENET = CASENetHead([4, 8], 4).loss_plan  # DFF declares the same plan
DDS5 = DDSHead([2, 3, 4, 5, 6], 4).loss_plan  # 5 sides

LOG2 = math.log(2.0)


def reference_multilabel(logits, target, **options):
    return reference_multilabel_tensor(logits, target, **options).item()


def reference_multilabel_tensor(logits, target, *, ignore=None, mode="image", sensitivity=10.0, class_weights=None):
    """Slow, obviously-correct spec §4.2: loop over images, float64, BCE written from its definition.

    Differentiable in `logits` (plain autograd through the definition), so it also checks the loss's own backward.
    """
    losses = []
    for b in range(logits.shape[0]):
        x = logits[b].double()
        y = target[b].double()
        k = x.shape[0]
        valid = torch.ones(x.shape[1:], dtype=torch.float64) if ignore is None else (~ignore[b]).double()
        y = y * valid
        t = valid.sum().item()
        if mode == "image":
            p = y.sum().item()
            w = torch.full((k, 1, 1), t if p == 0 else min(max((t - p) / p, 1.0), t), dtype=torch.float64)
        else:
            w = torch.empty(k, 1, 1, dtype=torch.float64)
            for c in range(k):
                p = y[c].sum().item()
                w[c] = (t if p == 0 else min(max((t - p) / p, 1.0), t)) / sensitivity
        prob = torch.sigmoid(x)
        ell = -(w * y * torch.log(prob) + (1 - y) * torch.log(1 - prob)) * valid
        if class_weights is not None:
            ell = ell * torch.tensor(class_weights, dtype=torch.float64).view(k, 1, 1)
        losses.append(ell.sum() / max(k * t, 1.0))
    return torch.stack(losses).mean()


def random_case(b=3, k=4, h=6, w=7, p=0.15):
    logits = torch.randn(b, k, h, w) * 3
    target = torch.rand(b, k, h, w) < p
    if b > 1:
        target[1] = False  # an image with no positives (pos weight T = H*W; must stay finite)
    return logits, target


def test_multilabel_hand_worked():
    # One image, K = 1, 2x2, one positive, logits 0: T = 4, P = 1, w = (4-1)/1 = 3.
    # BCE at x = 0 is log 2 per element; the positive counts 3 times: (3 + 1 + 1 + 1) log 2 / 4 = 1.5 log 2.
    target = torch.tensor([[[[1, 0], [0, 0]]]], dtype=torch.bool)
    assert MultiLabelEdgeLoss()(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(1.5 * LOG2)
    # Multi-label overlap: K = 2, every pixel positive in both channels: P = 8 > T = 4, (4-8)/8 < 1 -> w = 1.
    # Each element: -log sigmoid(0) = log 2, mean log 2.
    full = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    assert MultiLabelEdgeLoss()(torch.zeros(1, 2, 2, 2), full).item() == pytest.approx(LOG2)


def test_multilabel_matches_slow_reference():
    logits, target = random_case()
    assert MultiLabelEdgeLoss()(logits, target).item() == pytest.approx(reference_multilabel(logits, target), rel=1e-5)
    # The image without positives alone: plain mean BCE (its weight multiplies y = 0).
    alone = MultiLabelEdgeLoss()(logits[1:2], target[1:2])
    torch.testing.assert_close(alone, F.binary_cross_entropy_with_logits(logits[1:2], target[1:2].float()))


def test_multilabel_equals_torch_pos_weight_bce_per_image():
    # One weight shared by every class of an image: w = clamp((T - P) / P, 1, T) with P over all channels.
    logits, target = random_case(b=1, k=3, h=8, w=8)
    p, t = target.sum().item(), 64
    pos_weight = torch.tensor(min(max((t - p) / p, 1.0), t))
    expected = F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=pos_weight)
    torch.testing.assert_close(MultiLabelEdgeLoss()(logits, target), expected)


def test_multilabel_ignore_mask_matches_reference():
    logits, target = random_case()
    ignore = torch.rand(3, 6, 7) < 0.3
    ignore[2] = True  # an image with no valid pixel contributes 0
    got = MultiLabelEdgeLoss()(logits, target, ignore).item()
    assert got == pytest.approx(reference_multilabel(logits, target, ignore=ignore), rel=1e-5)
    assert got != pytest.approx(MultiLabelEdgeLoss()(logits, target).item(), rel=1e-3)


def test_multilabel_per_class_options_match_reference():
    logits, target = random_case()
    got = MultiLabelEdgeLoss(pos_weight="class")(logits, target).item()
    assert got == pytest.approx(reference_multilabel(logits, target, mode="class"), rel=1e-5)
    weights = [0.5, 1.0, 2.0, 3.0]
    got = MultiLabelEdgeLoss(class_weights=weights)(logits, target).item()
    assert got == pytest.approx(reference_multilabel(logits, target, class_weights=weights), rel=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "class"},
        {"class_weights": [0.5, 1.0, 2.0, 3.0]},
        {"ignore": True},
        {"ignore": True, "mode": "class"},
    ],
    ids=["image", "class", "class_weights", "ignore", "ignore_class"],
)
def test_multilabel_gradient_matches_autograd_through_the_reference(options):
    # The loss has a hand-written backward (sigmoid at negatives, w * (sigmoid - 1) at positives); the reference is
    # the BCE definition differentiated by autograd in float64.
    torch.manual_seed(3)
    logits, target = random_case()
    options = dict(options)
    if options.get("ignore"):
        options["ignore"] = torch.rand(3, 6, 7) < 0.3
    mode = options.get("mode", "image")
    loss = MultiLabelEdgeLoss(pos_weight=mode, class_weights=options.get("class_weights"))
    x = logits.clone().requires_grad_()
    (got,) = torch.autograd.grad(loss(x, target, options.get("ignore")), x)
    x64 = logits.double().requires_grad_()
    (expected,) = torch.autograd.grad(reference_multilabel_tensor(x64, target, **options), x64)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-9)


def test_multilabel_gradcheck_and_channels_last_logits():
    torch.manual_seed(4)
    logits, target = random_case(b=2, k=3, h=4, w=5)
    ignore = torch.rand(2, 4, 5) < 0.25
    loss = MultiLabelEdgeLoss(class_weights=[1.0, 2.0, 0.5])
    x64 = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss(x, target, ignore), (x64,))
    # NHWC logits (what the heads produce on the CPU): same value and same gradient, laid out like the input
    x = logits.clone().requires_grad_()
    xcl = logits.contiguous(memory_format=torch.channels_last).requires_grad_()
    a, b = loss(x, target, ignore), loss(xcl, target, ignore)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad(a, x)[0], torch.autograd.grad(b, xcl)[0])


def reference_binary(logits, target, pos_factor=1.0, neg_factor=1.0):
    """Spec §4.3 element by element: batch statistics, y > 1 ignored, mean over all elements."""
    x, y = logits.flatten().tolist(), target.flatten().tolist()
    n_pos, n_neg = y.count(1), y.count(0)
    total = 0.0
    for xi, yi in zip(x, y):
        if yi == 1:
            total += pos_factor * n_neg / (n_pos + n_neg) * -math.log(1 / (1 + math.exp(-xi)))
        elif yi == 0:
            total += neg_factor * n_pos / (n_pos + n_neg) * -math.log(1 - 1 / (1 + math.exp(-xi)))
    return total / len(x)


def test_binary_hand_worked():
    # y = [1, 0, 0, 0], x = 0: N+ = 1, N- = 3; positive weight 3/4, negatives 1/4 each.
    # mean = (3/4 + 3 * 1/4) log 2 / 4 = 0.375 log 2
    target = torch.tensor([[[[1, 0], [0, 0]]]])
    assert BinaryEdgeLoss()(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(0.375 * LOG2)
    # An ignored label (2) weighs 0 but still counts in the mean's denominator:
    # y = [1, 0, 0, 2]: N+ = 1, N- = 2; (2/3 + 2 * 1/3) log 2 / 4 = (1/3) log 2
    target = torch.tensor([[[[1, 0], [0, 2]]]])
    assert BinaryEdgeLoss()(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(LOG2 / 3)


def test_binary_matches_slow_reference_with_batch_statistics():
    logits = torch.randn(3, 1, 5, 6) * 2
    target = (torch.rand(3, 1, 5, 6) < 0.2).to(torch.uint8)
    target[0, 0, 0, :3] = 255
    target[1] = 0  # no positives in this image; the statistics are the batch's, so it is still weighted
    assert BinaryEdgeLoss()(logits, target).item() == pytest.approx(reference_binary(logits, target), rel=1e-5)
    got = BinaryEdgeLoss(neg_factor=1.1)(logits, target).item()
    assert got == pytest.approx(reference_binary(logits, target, neg_factor=1.1), rel=1e-5)


def test_binary_equals_torch_weighted_bce():
    logits = torch.randn(2, 1, 4, 4)
    target = torch.rand(2, 1, 4, 4) < 0.3
    n_pos, n = target.sum().item(), target.numel()
    weight = torch.where(target, (n - n_pos) / n, n_pos / n)
    expected = F.binary_cross_entropy_with_logits(logits, target.float(), weight=weight)
    torch.testing.assert_close(BinaryEdgeLoss()(logits, target), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_finite_and_fp32_under_autocast_with_large_logits(dtype):
    h = w = 32
    target = torch.zeros(2, 3, h, w, dtype=torch.bool)
    target[:, :, 3, 4] = True  # P = 3 per image, T = 1024: pos weight (1024 - 3) / 3 = 340.3
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        # |logits| up to ~4e4: softplus/exp of them overflows fp16 (max 65,504) unless the loss runs in fp32.
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 1e4)
        conv.bias.zero_()
    x = torch.randn(2, 3, h, w)
    with torch.autocast("cpu", dtype=dtype):
        logits = conv(x)
        assert logits.dtype == dtype and torch.isfinite(logits).all()
        ml = MultiLabelEdgeLoss()(logits, target)
        bl = BinaryEdgeLoss()(logits[:, :1], target[:, :1])
    for loss in (ml, bl):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ml.backward()
    assert torch.isfinite(conv.weight.grad).all()
    # Same P in both images, so one pos weight: PyTorch's stable BCE in float64 on the same low-precision logits.
    expected = F.binary_cross_entropy_with_logits(
        logits.double(), target.double(), pos_weight=torch.tensor((1024 - 3) / 3, dtype=torch.float64)
    )
    assert ml.item() == pytest.approx(expected.item(), rel=1e-5)


def test_resize_boundaries_keeps_thin_lines_on_integer_downscale():
    b = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    b[0, 0, 1, 3] = True  # one pixel in the top-right 2x2 block
    small = resize_boundaries(b, (2, 2))
    assert small.dtype == torch.bool
    assert small[0, 0].tolist() == [[False, True], [False, False]]
    # Nearest sampling takes pixels (0,0), (0,2), (2,0), (2,2) and would lose it.
    assert not F.interpolate(b.float(), size=(2, 2), mode="nearest").any()


def test_resize_boundaries_non_integer_and_upscale_use_nearest():
    b = torch.rand(2, 3, 5, 5) < 0.5
    # 5 -> 3: nearest takes source index floor(i * 5 / 3) = 0, 1, 3
    idx = torch.tensor([0, 1, 3])
    assert torch.equal(resize_boundaries(b, (3, 3)), b[:, :, idx][:, :, :, idx])
    # 5 -> 10 (x2): every pixel becomes a 2x2 block
    assert torch.equal(resize_boundaries(b, (10, 10)), b.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert resize_boundaries(b, (5, 5)) is b


def test_binary_target_is_the_union():
    b = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    b[0, 0, 0, 0] = b[0, 2, 0, 0] = b[0, 1, 1, 1] = True
    ignore = torch.tensor([[[False, True], [False, False]]])
    assert binary_target(b, ignore)[0, 0].tolist() == [[1, 2], [0, 1]]


def test_terms_casenet_and_dff_weight_alpha_on_fuse_and_last():
    logits, target = random_case(b=2, k=4, h=6, w=8)
    outputs = {"fuse": logits, "last": logits.flip(0)}
    terms = sbd_loss_terms(outputs, target, plan=CASENET)
    assert list(terms) == ["loss_sbd_fuse", "loss_sbd_last"]
    torch.testing.assert_close(terms["loss_sbd_fuse"], 5.0 * MultiLabelEdgeLoss()(logits, target))
    torch.testing.assert_close(terms["loss_sbd_last"], 5.0 * MultiLabelEdgeLoss()(logits.flip(0), target))
    assert sbd_loss_terms(outputs, target, plan=CASENET, alpha=2.0)["loss_sbd_fuse"].item() == pytest.approx(
        terms["loss_sbd_fuse"].item() * 2 / 5
    )


def test_terms_dds_binary_sides_get_beta_and_the_union():
    b, k, n, h, w = 2, 4, 5, 6, 8
    target = torch.rand(b, k, h, w) < 0.1
    outputs = {f"side{i}": torch.randn(b, 1, h, w) for i in range(1, n)}
    outputs["side5"] = torch.randn(b, k, h, w)
    outputs["fuse"] = torch.randn(b, k, h, w)
    terms = sbd_loss_terms(outputs, target, plan=DDS5, beta=0.5)
    assert list(terms) == ["loss_sbd_fuse", "loss_sbd_side1", "loss_sbd_side2", "loss_sbd_side3", "loss_sbd_side4",
                           "loss_sbd_side5"]  # fmt: skip
    union = target.any(dim=1, keepdim=True)
    for i in range(1, n):
        torch.testing.assert_close(terms[f"loss_sbd_side{i}"], 0.5 * BinaryEdgeLoss()(outputs[f"side{i}"], union))
    torch.testing.assert_close(terms["loss_sbd_side5"], 5.0 * MultiLabelEdgeLoss()(outputs["side5"], target))
    torch.testing.assert_close(terms["loss_sbd_fuse"], 5.0 * MultiLabelEdgeLoss()(outputs["fuse"], target))


def test_terms_bbcb_binary_on_fuse_and_last():
    target = torch.rand(2, 19, 6, 8) < 0.05
    outputs = {"fuse": torch.randn(2, 1, 6, 8), "last": torch.randn(2, 1, 6, 8)}
    terms = sbd_loss_terms(outputs, target, plan=CASENET, binary=True)
    union = target.any(dim=1, keepdim=True)
    torch.testing.assert_close(terms["loss_sbd_last"], BinaryEdgeLoss()(outputs["last"], union))
    with pytest.raises(ValueError, match="num_classes=1"):
        sbd_loss_terms({"fuse": torch.randn(2, 19, 6, 8), "last": outputs["last"]}, target, plan=CASENET, binary=True)


def test_terms_reduced_output_size_resizes_the_gt():
    target = torch.rand(2, 3, 8, 12) < 0.1
    outputs = {"fuse": torch.randn(2, 3, 4, 6), "last": torch.randn(2, 3, 4, 6)}
    terms = sbd_loss_terms(outputs, target, plan=CASENET)
    small = resize_boundaries(target, (4, 6))
    torch.testing.assert_close(terms["loss_sbd_fuse"], 5.0 * MultiLabelEdgeLoss()(outputs["fuse"], small))


def test_terms_errors():
    target = torch.rand(2, 3, 4, 4) < 0.1
    with pytest.raises(ValueError, match=r"needs outputs \['fuse', 'last'\]"):
        sbd_loss_terms({"fuse": torch.randn(2, 3, 4, 4)}, target, plan=CASENET)
    with pytest.raises(ValueError, match="K = 3"):
        sbd_loss_terms({"fuse": torch.randn(2, 5, 4, 4), "last": torch.randn(2, 5, 4, 4)}, target, plan=CASENET)
    with pytest.raises(ValueError, match="side1"):
        sbd_loss_terms({"fuse": torch.randn(2, 3, 4, 4), "side2": torch.randn(2, 3, 4, 4)}, target, plan=DDS5)
    with pytest.raises(ValueError, match="a loss plan maps"):
        sbd_loss_terms({}, target, plan={})
