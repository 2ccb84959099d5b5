"""Boundary losses of SBCB (spec §4): the multi-label SBD loss, the binary HED loss and the Eq. 1 weighting.

All losses take **logits**, compute in float32 whatever the input dtype (the official re-weighting reaches
pos_weight = H*W, beyond fp16's range) and are vectorized over the batch.

- `MultiLabelEdgeLoss`: official DFF-style re-weighted BCE, one positive weight per image (§4.2).
- `BinaryEdgeLoss`: HED class-balanced BCE with batch statistics, labels > 1 ignored (§4.3).
- `sbd_loss_terms`: applies a head's loss plan (output name -> "multilabel" | "binary", declared by the head) with
  the paper's Eq. 1 weights (α = 5, β = 1) and returns a flat dict of named, already weighted scalar terms (§4.4).
- `resize_boundaries`: brings boundary GT to an output's size when the head runs at a reduced resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POS_WEIGHT_MODES = ("image", "class")
LOSS_KINDS = ("multilabel", "binary")  # the values of a head's `loss_plan`


def resize_boundaries(boundaries: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize boundary GT to `size` without losing thin boundaries on integer downscales.

    When both sides shrink by an integer factor (e.g. 512x1024 -> 256x512), an output pixel is positive if **any**
    GT pixel of its ``f_h x f_w`` block is (max-pooling): nearest sampling would drop bands thinner than the factor,
    and bilinear would make soft targets. Any other size change (upscaling, non-integer factors) uses nearest
    sampling (``F.interpolate(mode="nearest")``).

    Args:
        boundaries: ``[B, K, H, W]`` bool (or 0/1 integers; nonzero counts as a boundary).
        size: Target ``(h, w)`` in pixels.

    Returns:
        ``[B, K, h, w]`` bool. The input itself (as bool) when the size already matches.

    Raises:
        ValueError: If `boundaries` is not 4-D or `size` is not two positive ints.
    """
    if boundaries.dim() != 4:
        raise ValueError(f"boundaries must be [B, K, H, W], got shape {list(boundaries.shape)}")
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be two positive ints, got {size!r}")
    b = boundaries if boundaries.dtype == torch.bool else boundaries != 0
    bsz, k, H, W = b.shape
    if (H, W) == (h, w):
        return b
    if H % h == 0 and W % w == 0:
        return b.reshape(bsz, k, h, H // h, w, W // w).any(dim=5).any(dim=3)
    return F.interpolate(b.to(torch.uint8), size=(h, w), mode="nearest").bool()


class _PosWeightedBCESum(torch.autograd.Function):
    """Per-image sum of BCE-with-logits with a per-positive weight and an optional multiplier.

    Element loss: ``m * ((1 - y) * softplus(x) + y * w * softplus(-x))``; forward returns ``[B]`` sums. It is the
    same function as ``F.binary_cross_entropy_with_logits(x, y, pos_weight=w, reduction="none")`` summed, but
    boundaries are sparse (a few % of the K*H*W elements), so the positives come as indices and their terms are
    gathered: the dense work is one softplus pass forward and one sigmoid pass backward, instead of the composite's
    dozen full-size temporaries. The gradient is ``m * sigmoid(x)`` at negatives and ``m * w * (sigmoid(x) - 1)`` at
    positives.
    """

    @staticmethod
    def forward(ctx, x: Tensor, positives: tuple[Tensor, ...], wp: Tensor, multiplier: Tensor | None) -> Tensor:
        # x: [B, K, H, W] float, any memory layout; positives: the 4 index vectors of y's nonzeros; wp: the pos
        # weight of each positive [P]; multiplier: broadcastable to x, or None.
        dense = F.softplus(x)
        if multiplier is not None:
            dense = dense * multiplier
        total = dense.sum(dim=(1, 2, 3))
        del dense
        xp = x[positives]
        mp = None if multiplier is None else multiplier.expand_as(x)[positives]
        term = wp * F.softplus(-xp) - F.softplus(xp)  # swaps the negative term `total` counted for a positive one
        total = total.index_add(0, positives[0], term if mp is None else term * mp)
        ctx.save_for_backward(x, wp, multiplier, mp, *positives)
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        x, wp, multiplier, mp, *positives = ctx.saved_tensors
        positives = tuple(positives)
        grad = torch.sigmoid(x).mul_(grad_total.view(-1, 1, 1, 1))
        if multiplier is not None:
            grad.mul_(multiplier)
        g = grad_total[positives[0]] if mp is None else grad_total[positives[0]] * mp
        # at a positive grad holds m*g*sigmoid(x); the wanted m*g*w*(sigmoid(x) - 1) is w * (that - m*g)
        grad[positives] = wp * (grad[positives] - g)
        return grad, None, None, None


class MultiLabelEdgeLoss(nn.Module):
    """Official multi-label SBD loss: per-image re-weighted BCE on logits (spec §4.2).

    For image b with targets y (``[K, H, W]``): P_b = positives over **all K channels**, T = H*W (one channel),
    ``w_b = clamp((T - P_b) / P_b, 1, T)`` (T for an image without positives), and the per-element loss is BCE with
    ``pos_weight = w_b``: ``(1 - y) * x + (1 + (w_b - 1) * y) * softplus(-x)``. It is averaged over K*H*W, then over
    the batch.

    Shape:
        - logits: ``[B, K, H, W]``, any float dtype.
        - target: ``[B, K, H, W]`` bool or 0/1.
        - ignore_mask (optional): ``[B, H, W]`` bool, True = excluded.
        - output: scalar float32 (float64 for float64 logits).

    Args:
        pos_weight: ``"image"`` (official): one weight per image from positives over all channels. ``"class"``:
            one weight per image and class, ``clamp((T - P_bc) / P_bc, 1, T) / class_sensitivity`` (the official,
            unused per-class variant; per image [inferred]).
        class_sensitivity: Divisor of the per-class weights (official: 10).
        class_weights: Optional K multipliers of each channel's loss (the mean still divides by K*H*W).
    """

    def __init__(
        self,
        *,
        pos_weight: str = "image",
        class_sensitivity: float = 10.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if pos_weight not in POS_WEIGHT_MODES:
            raise ValueError(f"pos_weight must be one of {POS_WEIGHT_MODES}, got {pos_weight!r}")
        self.pos_weight = pos_weight
        self.class_sensitivity = float(class_sensitivity)
        self.class_weights = None if class_weights is None else [float(c) for c in class_weights]

    def forward(self, logits: Tensor, target: Tensor, ignore_mask: Tensor | None = None) -> Tensor:
        """Loss of ``[B, K, H, W]`` logits against ``[B, K, H, W]`` boundary targets; scalar float32.

        Args:
            logits: ``[B, K, H, W]`` logits.
            target: ``[B, K, H, W]`` bool / 0-1 targets.
            ignore_mask: Optional ``[B, H, W]`` bool; True pixels are left out of the mean and of P_b and T
                (not paper-faithful: the official loss has no ignore handling). An image with no valid pixel
                contributes 0 to the batch mean.
        """
        if logits.dim() != 4 or target.shape != logits.shape:
            raise ValueError(
                f"logits and target must both be [B, K, H, W]; got {list(logits.shape)} and {list(target.shape)}"
            )
        bsz, k, h, w = logits.shape
        if self.class_weights is not None and len(self.class_weights) != k:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for {k} channels")
        x = logits if logits.dtype == torch.float64 else logits.float()  # fp16/bf16 -> fp32; fp64 stays
        y = target if target.dtype == torch.bool else target != 0
        if ignore_mask is None:
            valid = None
            pixels = torch.full((bsz, 1), float(h * w), device=x.device, dtype=x.dtype)
        else:
            if ignore_mask.shape != (bsz, h, w):
                raise ValueError(f"ignore_mask must be [B, H, W] = {[bsz, h, w]}, got {list(ignore_mask.shape)}")
            valid = (~ignore_mask.bool()).unsqueeze(1)  # [B, 1, H, W]
            y = y & valid
            pixels = valid.reshape(bsz, -1).sum(dim=1, dtype=torch.int32).to(x.dtype).view(bsz, 1)  # T_b
        # Boundaries are sparse: their indices serve the counts below (bincount, not a sum over a full bool tensor)
        # and the loss itself.
        positives = y.nonzero(as_tuple=True)
        b, c = positives[0], positives[1]
        if self.pos_weight == "image":
            counts = torch.bincount(b, minlength=bsz).view(bsz, 1).to(x.dtype)  # P_b over all channels
        else:
            counts = torch.bincount(b * k + c, minlength=bsz * k).view(bsz, k).to(x.dtype)  # P_bc
        # clamp((T - P) / P, 1, T): P = 0 means +inf, hence T; P > T (multi-label overlap) gives < 1, hence 1.
        ratio = torch.where(counts > 0, (pixels - counts) / counts.clamp(min=1.0), float("inf"))
        weight = torch.minimum(ratio.clamp(min=1.0), pixels)  # [B, 1] or [B, K]
        if self.pos_weight == "class":
            weight = weight / self.class_sensitivity
        wp = weight[b, 0] if self.pos_weight == "image" else weight[b, c]
        multiplier = None
        if self.class_weights is not None:
            multiplier = torch.tensor(self.class_weights, dtype=x.dtype, device=x.device).view(1, k, 1, 1)
        if valid is not None:
            multiplier = valid.to(x.dtype) if multiplier is None else multiplier * valid
        per_image = _PosWeightedBCESum.apply(x, positives, wp.to(x.dtype), multiplier)
        return (per_image / (k * pixels.view(bsz)).clamp(min=1.0)).mean()


class BinaryEdgeLoss(nn.Module):
    """HED class-balanced BCE on logits with statistics over the whole batch (spec §4.3).

    With N+ = #(y = 1) and N- = #(y = 0) over the batch tensor, positives weigh ``pos_factor * N- / (N+ + N-)``,
    negatives ``neg_factor * N+ / (N+ + N-)``, labels > 1 weigh 0; the loss is the mean over **all** elements
    (ignored ones included) of weight * BCE-with-logits.

    Shape:
        - logits: ``[B, C, H, W]`` (C = 1 usually), any float dtype.
        - target: same shape; 0/1, values > 1 ignored (bool also accepted).
        - output: scalar float32.

    Args:
        pos_factor: a+ (default 1).
        neg_factor: a- (default 1; the "consensus" variant uses 1.1).
    """

    def __init__(self, *, pos_factor: float = 1.0, neg_factor: float = 1.0) -> None:
        super().__init__()
        self.pos_factor = float(pos_factor)
        self.neg_factor = float(neg_factor)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Balanced BCE of ``[B, C, H, W]`` logits against same-shape targets; scalar float32."""
        if target.shape != logits.shape:
            raise ValueError(
                f"logits and target must have the same shape; got {list(logits.shape)} and {list(target.shape)}"
            )
        x = logits if logits.dtype == torch.float64 else logits.float()  # fp16/bf16 -> fp32; fp64 stays
        # Compare the labels as they come (bool, uint8, ...): no float copy of the targets for the masks.
        pos = target == 1
        neg = target == 0
        n_pos = pos.sum(dtype=x.dtype)
        n_neg = neg.sum(dtype=x.dtype)
        total = (n_pos + n_neg).clamp(min=1.0)
        zero = x.new_zeros(())
        weight = torch.where(
            pos, self.pos_factor * n_neg / total, torch.where(neg, self.neg_factor * n_pos / total, zero)
        )
        # One fused BCE with the weights (mean over all elements, ignored ones weigh 0).
        return F.binary_cross_entropy_with_logits(x, pos.to(x.dtype), weight=weight, reduction="mean")


def binary_target(boundaries: Tensor, ignore_mask: Tensor | None = None) -> Tensor:
    """Binary boundary GT: the any-channel union of multi-label GT (spec §2.4).

    Args:
        boundaries: ``[B, K, H, W]`` bool.
        ignore_mask: Optional ``[B, H, W]`` bool; True pixels get label 2 (ignored by `BinaryEdgeLoss`).

    Returns:
        ``[B, 1, H, W]`` uint8 with 0/1 (and 2 = ignore).
    """
    union = boundaries.bool().any(dim=1, keepdim=True).to(torch.uint8)
    if ignore_mask is not None:
        union = union.masked_fill(ignore_mask.bool().unsqueeze(1), 2)
    return union


def sbd_loss_terms(
    outputs: Mapping[str, Tensor],
    boundaries: Tensor,
    *,
    plan: Mapping[str, str],
    alpha: float = 5.0,
    beta: float = 1.0,
    binary: bool = False,
    ignore_mask: Tensor | None = None,
    multilabel_loss: nn.Module | None = None,
    binary_loss: nn.Module | None = None,
) -> dict[str, Tensor]:
    """The SBD part of the paper's Eq. 1, as a flat dict of weighted scalar losses (spec §4.4).

    The head declares its plan (``head.loss_plan``), so this function never looks at head names:

    | head | multi-label loss (× α) | binary loss on the GT union (× β) |
    |---|---|---|
    | casenet / dff | fuse, last | – |
    | dds | fuse, side{N} | side1 … side{N-1} |
    | any, ``binary=True`` (BBCB) | – | every output |

    An output whose size differs from the GT's gets the GT resized to it with `resize_boundaries` (max-pooling for
    integer downscales), so heads may run at a reduced output size.

    Args:
        outputs: A head's output dict of logits, with exactly the keys of `plan`.
        boundaries: ``[B, K, H, W]`` bool multi-label GT (for ``binary=True`` any K; the union is used).
        plan: Output name -> ``"multilabel"`` (× alpha) or ``"binary"`` (× beta), in the order of the result.
        alpha: Weight of each multi-label term (paper: 5).
        beta: Weight of each binary term (paper: 1).
        binary: BBCB: every output is 1-channel and gets the binary loss.
        ignore_mask: Optional ``[B, H, W]`` bool ignore pixels, excluded from every term (not paper-faithful).
        multilabel_loss: Loss module for the multi-label terms (default `MultiLabelEdgeLoss()`).
        binary_loss: Loss module for the binary terms (default `BinaryEdgeLoss()`).

    Returns:
        ``{"loss_sbd_<output>": ...}`` in the plan's order: scalar float32 tensors, already weighted; sum them all.
    """
    if not plan or any(kind not in LOSS_KINDS for kind in plan.values()):
        raise ValueError(f"a loss plan maps output names to one of {LOSS_KINDS}, got {dict(plan)!r}")
    if set(outputs) != set(plan):
        raise ValueError(f"the head's loss plan needs outputs {list(plan)}, got {sorted(outputs)}")
    if boundaries.dim() != 4:
        raise ValueError(f"boundaries must be [B, K, H, W] bool, got shape {list(boundaries.shape)}")
    multilabel_loss = MultiLabelEdgeLoss() if multilabel_loss is None else multilabel_loss
    binary_loss = BinaryEdgeLoss() if binary_loss is None else binary_loss
    kinds = {key: "binary" if binary else kind for key, kind in plan.items()}

    gt_cache: dict[tuple[str, tuple[int, int]], tuple[Tensor, Tensor | None]] = {}

    def gt_at(kind: str, logits: Tensor, key: str) -> tuple[Tensor, Tensor | None]:
        if logits.dim() != 4 or logits.shape[0] != boundaries.shape[0]:
            raise ValueError(f"output {key!r} must be [B={boundaries.shape[0]}, C, H, W], got {list(logits.shape)}")
        size = (int(logits.shape[2]), int(logits.shape[3]))
        if (kind, size) not in gt_cache:
            gt = resize_boundaries(boundaries, size)
            mask = None if ignore_mask is None else resize_boundaries(ignore_mask.unsqueeze(1), size)[:, 0]
            if kind == "binary":
                gt, mask = binary_target(gt, mask), None
            gt_cache[(kind, size)] = (gt, mask)
        return gt_cache[(kind, size)]

    terms: dict[str, Tensor] = {}
    for key, kind in kinds.items():
        logits = outputs[key]
        if kind == "multilabel":
            gt, mask = gt_at("multilabel", logits, key)
            if logits.shape[1] != gt.shape[1]:
                raise ValueError(f"output {key!r} has {logits.shape[1]} channels but the GT has K = {gt.shape[1]}")
            terms[f"loss_sbd_{key}"] = alpha * multilabel_loss(logits, gt, mask)
            continue
        if logits.shape[1] != 1:
            raise ValueError(
                f"output {key!r} gets the binary loss and must have 1 channel, got {logits.shape[1]}"
                + ("; build the BBCB head with num_classes=1" if binary else "")
            )
        gt, _ = gt_at("binary", logits, key)
        terms[f"loss_sbd_{key}"] = beta * binary_loss(logits, gt)
    return terms
