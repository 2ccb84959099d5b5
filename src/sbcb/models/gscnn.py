"""GSCNN (Takikawa et al., ICCV 2019) on a ResNet, as the paper compares it (P§5.6, Tab. 6; spec §5.7).

"GSCNN for ResNet-101 is a customized DeepLabV3+" (P§5.6): a dilated ResNet (output stride 8), a gated **shape
stream** at full input resolution that predicts boundaries, and an ASPP with two extra branches (image pooling and
the shape stream's edge map), a 1/4 low-level decoder and three final convs.

Shape stream (GSCNN's order; ResNet mapping [inferred] from the channel widths of GSCNN's WideResNet-38 taps
m1/m3/m4/m7 = 64/256/512/4096): it starts from the stride-2 stem (64 ch), resized to the input size, and is gated by
layer1, layer2 and layer4 - exactly the SBCB sides 1+2+3+5, read from the encoder's feature info::

    s = BasicBlock(stem)                                   # C0 = stem channels
    for i, gate_feature in enumerate([layer1, layer2, layer4]):
        s = 1x1 conv (+bias) to widths[i]
        s = GatedConv(s, resize(1x1 conv(gate_feature) -> 1 channel, with bias))
        s = BasicBlock(s)   (not after the last gate)
    edge = 1x1 conv (no bias) widths[-1] -> 1 (binary) or K (multi-label "SBD" variant) logits [B, 1|K, H, W]

GatedConv(c): ``alpha = sigmoid(BN(1x1(ReLU(1x1(BN([s, g]))))))`` (c + 1 -> c + 1 -> 1, both with bias), output
``1x1 conv (no bias)(s * (1 + alpha))``.

Fusion: ``a = sigmoid(cw([sigmoid(edge), canny]))`` (cw: 1x1, no bias; without Canny the edge probabilities alone),
resized to 1/8 -> 1x1 conv + BN + ReLU to 256 channels, an ASPP branch next to image pooling, 1x1 and three atrous
3x3 branches (rates 6, 12, 18 x 16 / output stride); 1x1 bottleneck (no bias, no BN) to 256, upsampled to the
stride-4 feature, concatenated with its 1x1 reduction to 48 (no bias); two 3x3 conv + BN + ReLU at 256 and a 1x1
classifier (no bias), then bilinear to the input size.

Losses (`GSCNN.auxiliary_losses`; the segmentation CE, weight 1, is the training loop's or the SBCB wrapper's):

| key | what | weight |
|---|---|---|
| ``loss_edge`` | binary: HED-balanced BCE vs the union of the class boundaries (GSCNN: 20 x bce2d) | 20 |
| ``loss_edge`` | "SBD" variant: the multi-label SBD loss (spec §4.2) [inferred: alpha of Eq. 1] | 5 |
| ``loss_att`` | dual-task regularizer, edge -> seg: CE where max_k sigmoid(edge) > 0.8 (GSCNN's edge attention) | 1 |
| ``loss_dual`` | dual-task regularizer, seg -> edge: L1 of gradient magnitudes, Gumbel softmax vs one-hot GT | 1 |

``loss_dual`` compares the Gumbel softmax (tau 0.5) of the logits with the one-hot GT, on pixels where either
magnitude is > 0.

Differences from the GSCNN code, on purpose: the edge BCE takes logits (GSCNN passes sigmoid outputs to a
logits loss); the segmentation CE is plain CE, not GSCNN's per-image class-weighted CE; the edge-attention CE is 0,
not NaN, when no pixel passes the threshold; the gradient magnitude is ``sqrt(gx^2 + gy^2 + e^2) - e`` so that flat
regions are exactly 0 (GSCNN's ``sqrt(. + 1e-6)`` makes every pixel count in the L1 mask); bilinear resizes use
``align_corners=False``; Canny gets the de-normalized image (GSCNN casts the normalized tensor to uint8).

Variants of Tab. 6: ``gscnn(...)`` (binary shape stream, no Canny), ``canny="cv2"`` ("+Canny"; ``"torch"`` for an
exportable approximation), ``shape_stream="sbd"`` (multi-label supervision, wider stream: widths (64, 32, 16)
[unknown: "increasing the channels"]), and ``SBCB(gscnn(...), num_classes=K)`` ("+SBCB": the SBD head on the backbone
sides via `sbcb.contract.DeclaresSides`, nothing else changed; ``strip()`` returns the whole GSCNN, which needs its
shape stream at inference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.features import FeatureInfo, default_sides
from sbcb.heads.side_layers import BasicBlock
from sbcb.layers import ConvNormAct
from sbcb.models.canny import IMAGENET_MEAN, IMAGENET_STD, cv2_canny, torch_canny
from sbcb.models.registry import register_model

SHAPE_STREAMS = ("binary", "sbd")
CANNY = (None, "cv2", "torch")


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class GatedConv(nn.Module):
    """GSCNN's gated convolution: the shape features ``s`` [B, C, H, W] re-weighted by a gate computed from ``s`` and
    a 1-channel gating map ``g`` [B, 1, H, W], then a 1x1 conv. Parameters: ``(C+1)(C+2) + 2(C+1) + (C+2) + 2 + C^2``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels + 1
        self.gate = nn.Sequential(
            nn.BatchNorm2d(c), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid()
        )
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor, gating: Tensor) -> Tensor:
        """``x`` [B, C, H, W], ``gating`` [B, 1, H, W] -> [B, C, H, W]."""
        alpha = self.gate(torch.cat([x, gating], dim=1))
        return self.conv(x * (alpha + 1))


class ShapeStream(nn.Module):
    """GSCNN's shape stream at the output size; see the module docstring.

    Args:
        in_channels: Channels of [start feature, gate feature 1, 2, 3].
        widths: Stream widths after each 1x1 reduction (GSCNN: 32, 16, 8).
        out_channels: 1 (binary edges) or K (multi-label).
    """

    def __init__(self, in_channels: Sequence[int], widths: Sequence[int], out_channels: int) -> None:
        super().__init__()
        if len(in_channels) != len(widths) + 1:
            raise ValueError(f"the shape stream needs {len(widths) + 1} features for {len(widths)} gates")
        self.start = BasicBlock(in_channels[0])
        stream = [in_channels[0], *widths]
        self.gate_maps = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in in_channels[1:])
        self.reduce = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(stream[:-1], stream[1:]))
        self.gates = nn.ModuleList(GatedConv(w) for w in widths)
        self.blocks = nn.ModuleList(BasicBlock(w) for w in widths[:-1])
        self.out = nn.Conv2d(widths[-1], out_channels, 1, bias=False)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """Features [start, gate 1..3] (any strides) -> edge logits [B, out, *size]."""
        s = self.start(_resize(features[0], size))
        for i, (reduce, gate) in enumerate(zip(self.reduce, self.gates)):
            s = gate(reduce(s), _resize(self.gate_maps[i](features[i + 1]), size))
            if i < len(self.blocks):
                s = self.blocks[i](s)
        return self.out(s)


def gradient_magnitude(x: Tensor, *, radius: int = 4, eps: float = 1e-6) -> Tensor:
    """Per-channel gradient magnitude after triangle smoothing, normalised by its maximum (GSCNN's dual-task loss).

    Triangle filter of radius r (weights 1..r+1..1 / (r+1)^2, separable, replicate padding), central differences
    ``(x[i+1] - x[i-1]) / 2``, magnitude ``sqrt(gx^2 + gy^2 + eps^2) - eps`` (0 where flat), divided by its max.
    """
    c = x.shape[1]
    tri = torch.cat([torch.arange(1, radius + 2), torch.arange(radius, 0, -1)]).to(x) / (radius + 1) ** 2
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, tri.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, tri.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    mag = torch.sqrt(gx * gx + gy * gy + eps * eps) - eps
    return mag / mag.max().clamp(min=1e-12)


def dual_task_loss(
    logits: Tensor,
    masks: Tensor,
    *,
    ignore_index: int = 255,
    tau: float = 0.5,
    gumbel: bool = True,
    threshold: float = 1e-8,
) -> Tensor:
    """GSCNN's seg -> edge consistency: L1 between boundary maps of the prediction and of the GT (scalar fp32).

    Args:
        logits: [B, K, H, W] segmentation logits at the mask size.
        masks: [B, H, W] labels; `ignore_index` (and any value >= K) pixels get zero logits and class 0, as GSCNN.
        tau: Softmax temperature (GSCNN: 0.5).
        gumbel: Add Gumbel noise before the softmax (GSCNN); False for a deterministic loss.
        threshold: A pixel counts where either normalised magnitude is >= this.
    """
    k = logits.shape[1]
    ignore = (masks == ignore_index) | (masks < 0) | (masks >= k)
    x = logits.float().masked_fill(ignore.unsqueeze(1), 0.0)
    if gumbel:
        u = torch.rand_like(x)
        x = x - torch.log(-torch.log(u + 1e-10) + 1e-10)
    probs = torch.softmax(x / tau, dim=1)
    target = F.one_hot(masks.long().masked_fill(ignore, 0), k).permute(0, 3, 1, 2).float()
    g, g_hat = gradient_magnitude(probs), gradient_magnitude(target)
    l1 = (g - g_hat).abs()
    total = 0.0
    for m in ((g >= threshold).detach(), (g_hat >= threshold)):
        m = m.float()
        total = total + 0.5 * (l1 * m).sum() / (m.sum() + 1e-10)
    return total


class GSCNN(nn.Module):
    """Gated-Shape CNN on a dilated ResNet encoder (smp encoder interface: ``encoder(x)`` -> [x, s2, s4, s8, ...]).

    Implements `sbcb.contract.HasAuxiliaryHeads` (``forward`` -> logits [B, K, H, W]; ``forward_train`` also
    returns ``{"edge": [B, 1|K, H, W] logits, "seg": logits}``; ``auxiliary_losses`` -> ``loss_edge``,
    ``loss_att``, ``loss_dual``) and `sbcb.contract.DeclaresSides` (the encoder's levels 1, 2, 3, 5), so
    ``SBCB(GSCNN(...), num_classes=K)`` is "GSCNN + SBCB".

    Args:
        encoder: The backbone; channels and strides come from its ``out_channels`` / ``output_stride``.
        num_classes: K.
        shape_stream: ``"binary"`` (GSCNN) or ``"sbd"`` (multi-label boundaries, K-channel edge output).
        canny: None (the paper's baseline GSCNN), ``"cv2"`` (exact OpenCV on the CPU; not exportable) or ``"torch"``.
        widths: Shape-stream widths; None = (32, 16, 8) binary, (64, 32, 16) SBD [unknown].
        aspp_width: ASPP / decoder width (GSCNN: 256).
        atrous_rates: None = (6, 12, 18) x 16 / output stride.
        low_level_channels: Reduction of the stride-4 feature (GSCNN: 48).
        edge_weight: None = 20 (binary) or 5 (SBD).
        att_weight, att_threshold: Weight of the edge-attention CE (GSCNN: 1) and the edge probability above which
            it counts a pixel (GSCNN: 0.8).
        dual_weight, dual_gumbel, dual_tau: Weight of the dual-task term (GSCNN: 1); the other two: see
            `dual_task_loss`.
        radius, ignore_index: Boundary GT band radius and ignore label (as `sbcb.SBCB`).
        mean, std: Input normalization, undone for Canny.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        *,
        shape_stream: str = "binary",
        canny: str | None = None,
        widths: Sequence[int] | None = None,
        aspp_width: int = 256,
        atrous_rates: Sequence[int] | None = None,
        low_level_channels: int = 48,
        edge_weight: float | None = None,
        att_weight: float = 1.0,
        att_threshold: float = 0.8,
        dual_weight: float = 1.0,
        dual_gumbel: bool = True,
        dual_tau: float = 0.5,
        radius: float = 2.0,
        ignore_index: int = 255,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if shape_stream not in SHAPE_STREAMS:
            raise ValueError(f"shape_stream must be one of {SHAPE_STREAMS}, got {shape_stream!r}")
        if canny not in CANNY:
            raise ValueError(f"canny must be one of {CANNY}, got {canny!r}")
        from sbcb.adapters.smp import smp_levels

        self.encoder = encoder
        self.num_classes = k = int(num_classes)
        self.shape_stream_kind, self.canny = shape_stream, canny
        self.edge_weight = float(
            edge_weight if edge_weight is not None else (20.0 if shape_stream == "binary" else 5.0)
        )
        self.att_weight, self.dual_weight, self.att_threshold = float(att_weight), float(dual_weight), att_threshold
        self.dual_tau, self.dual_gumbel = float(dual_tau), bool(dual_gumbel)
        self.radius, self.ignore_index = float(radius), int(ignore_index)
        self.mean, self.std = tuple(mean), tuple(std)

        levels = smp_levels(encoder)
        self.levels = levels
        sides = default_sides(levels)
        if len(sides) != 4:
            raise ValueError(
                f"GSCNN's shape stream needs a 5-level encoder (stem + 4 stages), got {len(levels)} levels"
            )
        self.side_indices = [int(info.index) for info in sides]
        low = [info for info in levels if info.reduction == 4]
        if not low:
            raise ValueError("GSCNN's decoder needs a stride-4 encoder feature")
        self.low_index = int(low[0].index)
        output_stride = int(getattr(encoder, "output_stride", levels[-1].reduction))
        rates = tuple(atrous_rates) if atrous_rates is not None else tuple(r * 16 // output_stride for r in (6, 12, 18))

        edge_channels = 1 if shape_stream == "binary" else k
        if widths is None:
            widths = (32, 16, 8) if shape_stream == "binary" else (64, 32, 16)
        self.shape_stream = ShapeStream([info.num_chs for info in sides], widths, edge_channels)
        self.cw = nn.Conv2d(edge_channels + (1 if canny else 0), 1, 1, bias=False)
        c_last, w = levels[-1].num_chs, aspp_width
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvNormAct(c_last, w, 1))
        self.edge_branch = ConvNormAct(1, w, 1)
        self.aspp = nn.ModuleList([ConvNormAct(c_last, w, 1)] + [ConvNormAct(c_last, w, 3, dilation=r) for r in rates])
        self.bottleneck = nn.Conv2d((len(self.aspp) + 2) * w, w, 1, bias=False)
        self.low_level = nn.Conv2d(low[0].num_chs, low_level_channels, 1, bias=False)
        self.final = nn.Sequential(
            ConvNormAct(w + low_level_channels, w, 3), ConvNormAct(w, w, 3), nn.Conv2d(w, k, 1, bias=False)
        )
        for name, m in self.named_modules():
            if name.startswith("encoder"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- contract -------------------------------------------------------------------------------------------------

    def sbcb_sides(self) -> list[FeatureInfo]:
        """The SBCB sides: the encoder's levels 1, 2, 3, 5 (entries of ``encoder(images)``)."""
        return [FeatureInfo(i.num_chs, i.reduction, "encoder", index=i.index) for i in default_sides(self.levels)]

    def _run(self, images: Tensor) -> tuple[Tensor, Tensor]:
        size = images.shape[-2:]
        features = self.encoder(images)
        edge = self.shape_stream([features[i] for i in self.side_indices], size)
        gate_in = torch.sigmoid(edge)
        if self.canny is not None:
            edges = cv2_canny if self.canny == "cv2" else torch_canny
            gate_in = torch.cat([gate_in, edges(images, mean=self.mean, std=self.std).to(gate_in.dtype)], dim=1)
        x = features[-1]
        acts = _resize(torch.sigmoid(self.cw(gate_in)), x.shape[-2:])
        branches = [_resize(self.image_pool(x), x.shape[-2:]), self.edge_branch(acts)]
        branches += [branch(x) for branch in self.aspp]
        low = self.low_level(features[self.low_index])
        y = _resize(self.bottleneck(torch.cat(branches, dim=1)), low.shape[-2:])
        logits = _resize(self.final(torch.cat([low, y], dim=1)), size)
        return logits, edge

    def forward(self, images: Tensor) -> Tensor:
        """Segmentation logits [B, K, H, W] (the shape stream runs: it feeds the ASPP)."""
        return self._run(images)[0]

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits and ``{"edge": shape-stream logits [B, 1|K, H, W], "seg": the logits}``."""
        logits, edge = self._run(images)
        return TrainOutput(logits, {"edge": edge, "seg": logits})

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """``loss_edge``, ``loss_att``, ``loss_dual`` (weighted; see the module docstring); masks [B, H, W]."""
        from sbcb.fusion.common import boundary_targets
        from sbcb.losses import BinaryEdgeLoss, MultiLabelEdgeLoss, binary_target

        edge, seg = aux["edge"], aux["seg"]
        bands = boundary_targets(masks, self.num_classes, radius=self.radius, ignore_index=self.ignore_index)
        bands = bands.to(edge.device)
        if self.shape_stream_kind == "binary":
            loss_edge = BinaryEdgeLoss()(edge, binary_target(bands))
        else:
            loss_edge = MultiLabelEdgeLoss()(edge, bands)
        target = masks.long().to(seg.device)
        valid = (target >= 0) & (target < self.num_classes)
        on_edge = torch.sigmoid(edge.detach().float()).amax(dim=1) > self.att_threshold
        picked = on_edge & valid
        per_pixel = F.cross_entropy(seg.float(), target.masked_fill(~valid, 0), reduction="none")
        loss_att = (per_pixel * picked).sum() / picked.sum().clamp(min=1)
        loss_dual = dual_task_loss(
            seg, target, ignore_index=self.ignore_index, tau=self.dual_tau, gumbel=self.dual_gumbel
        )
        return {
            "loss_edge": self.edge_weight * loss_edge,
            "loss_att": self.att_weight * loss_att,
            "loss_dual": self.dual_weight * loss_dual,
        }

    def deployable(self) -> GSCNN:
        """The model itself: the shape stream and its fusion feed the ASPP at inference."""
        return self


@register_model("gscnn")
def gscnn(
    *,
    num_classes: int,
    encoder: str | None = "resnet101",
    output_stride: int | None = 8,
    pretrained: bool = False,
    **options,
) -> GSCNN:
    """GSCNN on an smp ResNet encoder, dilated to `output_stride` (paper: ResNet-101, 8); see `GSCNN` for options.

    Nothing is downloaded: the encoder is built with ``weights=None`` (``pretrained=True`` is refused here).
    """
    if pretrained:
        raise ValueError("gscnn builds its encoder without downloading weights; load them into model.encoder")
    try:
        from segmentation_models_pytorch.encoders import get_encoder
    except ImportError as e:
        raise ImportError('gscnn builds its encoder with smp: pip install "sbcb[smp]"') from e
    backbone = get_encoder(
        encoder or "resnet101", in_channels=3, depth=5, weights=None, output_stride=output_stride or 8
    )
    return GSCNN(backbone, num_classes, **options)
