"""Channel-Merge (paper P§7.5, App. E, Fig. 15; spec §6.1): the SBD head's side features feed the segmentation head.

Data flow, with the CASENet head on the encoder's SBD sides (N sides, side N semantic):

1. Each side's first step (1x1 conv, no bias, + BN + ReLU; 1 channel per binary side, K for the semantic side) runs at
   the feature's own resolution: ``p_i`` [B, c_i, h_i, w_i]. These are the side features "before upsampling".
2. The re-entry feature ``z`` [B, C, h, w] (PSPNet: the PPM output; DeepLabV3+: the ASPP output) and every ``p_i``
   are bilinearly resized to the merge size and concatenated: [B, W, h, w] with W = C + (N - 1) + K.
3. ``num_convs`` 1x1 convs mix the channels (hidden width `hidden_channels`): ``num_convs - 1`` times 1x1 + BN +
   ReLU, then a plain 1x1 conv back to W channels (no bias).
4. The result is split back into the original shapes. The first C channels replace ``z`` and the segmentor continues
   from there (PSPNet: bottleneck, classifier). Piece i (c_i channels) is resized back to (h_i, w_i), concatenated
   with ``p_i`` and the side layer goes on as usual: bilinear resize to the output size, reflect-pad 3x3 conv, now
   2·c_i -> c_i; the CASENet fuse (K groups of N, no bias) combines the sides.

Choices the paper leaves open, as options (spec §6.1 proposals are the defaults) [inferred]:
``reentry`` (``"context"``), ``merge_stride`` (None = the re-entry feature's own resolution, 1/8 for the paper's
d8 models), ``hidden_channels`` (None = W), ``num_convs`` (2), BN + ReLU between the convs (yes), no bias on the
last conv, and the side layers' 1x1 convs unchanged.

Inference needs the sides' first step and the merge convs, but only the first C output rows of the last merge conv:
`ChannelMerge.forward` computes exactly that, and `ChannelMerge.deployable` returns a copy without the side 3x3 convs,
the fuse and the unused rows. The SBD outputs (`forward_train`) are training-only.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.fusion.common import (
    arch_of,
    boundary_targets,
    check_reentry,
    context_features,
    encoder_sides,
    finish,
    output_size,
    probe_shape,
)
from sbcb.heads.side_layers import fuse_sliced, init_weights
from sbcb.layers import ConvNormAct

# The SBD outputs are CASENet's (`sbcb.heads.CASENetHead.loss_plan`): the multi-label loss on both.
CASENET_PLAN = {"fuse": "multilabel", "last": "multilabel"}


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ChannelMerge(nn.Module):
    """An smp PSPNet or DeepLabV3+ whose re-entry feature is mixed with the CASENet side features (Channel-Merge).

    Implements `sbcb.contract.HasAuxiliaryHeads`: ``forward(images)`` -> logits [B, K, H, W] (inference path),
    ``forward_train(images)`` -> ``TrainOutput(logits, {"fuse", "last"})`` and ``auxiliary_losses(aux, masks)`` ->
    ``{"loss_sbd_fuse", "loss_sbd_last"}`` (Eq. 1: alpha per multi-label output; GT made from ``masks`` as
    `sbcb.SBCB` makes it). The segmentation CE is the training loop's, as for any model.

    Extra parameters at inference (vs the segmentor): ``sum_i C_i*c_i + 2*c_i`` (side 1x1 + BN) plus the merge
    convs ``W*D + 2*D`` (1x1 + BN, D = hidden) and ``D*C`` (the used rows of the last conv), with
    W = C + (N - 1) + K. Training adds ``D*(N - 1 + K)`` merge rows, ``sum_i 18*c_i**2`` side 3x3 convs and the fuse
    ``K*N``.

    Args:
        segmentor: smp ``PSPNet`` or ``DeepLabV3Plus``. Its modules are reused (not copied): the fused model owns it.
        num_classes: K.
        reentry: ``"context"`` (PSPNet: PPM output; DeepLabV3+: ASPP output) or ``"decoder"`` (decoder output).
        merge_stride: Stride of the merge resolution relative to the input; None = the re-entry feature's.
        hidden_channels: Width D of the hidden merge convs; None = W (spec proposal).
        num_convs: Number of 1x1 merge convs (>= 1; paper: 2, "can be modified").
        head_scale: SBD output size relative to the input (1.0 = paper).
        probe_size: (H, W) of the dry run that measures the re-entry feature.
        alpha: Weight of each multi-label SBD term (Eq. 1: 5).
        beta: Weight of binary terms (Eq. 1: 1; CASENet has none).
        radius: Boundary GT band radius in pixels.
        ignore_index: Ignore label (inside every class for the boundary GT).
    """

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        num_classes: int,
        reentry: str = "context",
        merge_stride: int | None = None,
        hidden_channels: int | None = None,
        num_convs: int = 2,
        head_scale: float = 1.0,
        probe_size: tuple[int, int] = (64, 64),
        alpha: float = 5.0,
        beta: float = 1.0,
        radius: float = 2.0,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.arch = arch_of(segmentor)
        self.reentry = check_reentry(reentry)
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        if merge_stride is not None and merge_stride < 1:
            raise ValueError(f"merge_stride must be a positive int or None, got {merge_stride}")
        if not 0.0 < head_scale <= 1.0:
            raise ValueError(f"head_scale must be in (0, 1], got {head_scale}")
        self.segmentor = segmentor
        self.num_classes = int(num_classes)
        self.merge_stride = merge_stride
        self.alpha, self.beta = float(alpha), float(beta)
        self.radius, self.ignore_index = float(radius), int(ignore_index)
        self.head_scale = float(head_scale)
        self.inference_only = False

        sides = encoder_sides(segmentor)
        self.side_indices = [int(info.index) for info in sides]  # entries of segmentor.encoder(images)
        in_channels = [info.num_chs for info in sides]
        k, n = self.num_classes, len(sides)
        self.side_channels = [1] * (n - 1) + [k]  # c_i: binary sides, then the semantic side
        self.context_channels, self.context_stride = probe_shape(
            segmentor,
            lambda x: context_features(segmentor, segmentor.encoder(x), self.reentry),
            size=tuple(probe_size),
        )
        width = self.context_channels + sum(self.side_channels)
        hidden = width if hidden_channels is None else int(hidden_channels)
        self.merge_width, self.hidden_channels = width, hidden

        # step 1: the side layers' 1x1 conv + BN + ReLU, at each feature's resolution
        self.pre_sides = nn.ModuleList(ConvNormAct(c, o, 1) for c, o in zip(in_channels, self.side_channels))
        # step 3: (num_convs - 1) x [1x1 + BN + ReLU], then a plain 1x1 back to W channels
        mix: list[nn.Module] = [ConvNormAct(width if i == 0 else hidden, hidden, 1) for i in range(num_convs - 1)]
        mix.append(nn.Conv2d(hidden if num_convs > 1 else width, width, 1, bias=False))
        self.merge = nn.Sequential(*mix)
        # step 4: the side layers' reflect-pad 3x3 conv, input doubled by the concatenated piece; CASENet fuse
        self.post_sides: nn.ModuleList | None = nn.ModuleList(
            nn.Conv2d(2 * c, c, 3, bias=False) for c in self.side_channels
        )
        self.fuse: nn.Conv2d | None = nn.Conv2d(k * n, k, 1, groups=k, bias=False)
        for part in (self.pre_sides, self.merge, self.post_sides, self.fuse):
            init_weights(part)

    # -- forward --------------------------------------------------------------------------------------------------

    def _run(self, images: Tensor, *, with_sbd: bool) -> tuple[Tensor, dict[str, Tensor]]:
        seg = self.segmentor
        features = seg.encoder(images)
        pre = [side(features[i]) for side, i in zip(self.pre_sides, self.side_indices)]
        context = context_features(seg, features, self.reentry)
        if self.merge_stride is None:
            size = (context.shape[-2], context.shape[-1])  # not int(): stays symbolic in an ONNX trace
        else:
            size = (-(-images.shape[-2] // self.merge_stride), -(-images.shape[-1] // self.merge_stride))
        mixed = self.merge[:-1](torch.cat([_resize(context, size)] + [_resize(p, size) for p in pre], dim=1))
        last = self.merge[-1]
        c = self.context_channels
        if with_sbd or self.inference_only:  # the deployable model's last conv has exactly the C used rows
            out = last(mixed)
        else:  # inference of the training model: only the rows that re-enter the segmentor
            out = F.conv2d(mixed, last.weight[:c])
        logits = finish(seg, features, _resize(out[:, :c], context.shape[-2:]), self.reentry)
        if not with_sbd:
            return logits, {}
        assert self.post_sides is not None and self.fuse is not None
        out_size = output_size(images, self.head_scale)
        pieces = torch.split(out[:, c:], self.side_channels, dim=1)
        sides = []
        for p, piece, conv in zip(pre, pieces, self.post_sides):
            x = torch.cat([p, _resize(piece, p.shape[-2:])], dim=1)
            sides.append(conv(F.pad(_resize(x, out_size), (1, 1, 1, 1), mode="reflect")))
        binary = torch.cat(sides[:-1], dim=1)
        fused = fuse_sliced(sides[-1], binary, self.fuse.weight, None)
        return logits, {"fuse": fused, "last": sides[-1]}

    def forward(self, images: Tensor) -> Tensor:
        """Inference path: segmentation logits [B, K, H, W] (runs only what the segmentation needs)."""
        return self._run(images, with_sbd=False)[0]

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits and the SBD outputs ``{"fuse", "last"}`` ([B, K, h, w] logits at ``head_scale`` of the input)."""
        if self.inference_only:
            raise RuntimeError("this is the deployable Channel-Merge model: its SBD outputs were removed")
        logits, sbd = self._run(images, with_sbd=True)
        return TrainOutput(logits, sbd)

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """Eq. 1's SBD terms ``{"loss_sbd_fuse", "loss_sbd_last"}`` (alpha each), GT from ``masks`` [B, H, W]."""
        from sbcb.losses import sbd_loss_terms

        bands = boundary_targets(masks, self.num_classes, radius=self.radius, ignore_index=self.ignore_index)
        return sbd_loss_terms(aux, bands.to(aux["fuse"].device), plan=CASENET_PLAN, alpha=self.alpha, beta=self.beta)

    # -- deployment -----------------------------------------------------------------------------------------------

    def deployable(self) -> ChannelMerge:
        """A copy with exactly what inference needs: no side 3x3 convs, no fuse, the last merge conv cut to C rows.

        Its ``forward`` equals this model's ``forward``; ``forward_train`` raises.
        """
        model = copy.deepcopy(self)
        last = model.merge[-1]
        cut = nn.Conv2d(last.in_channels, self.context_channels, 1, bias=False).to(last.weight.device)
        cut.weight.data.copy_(last.weight.data[: self.context_channels])
        model.merge[-1] = cut
        model.post_sides = None
        model.fuse = None
        model.inference_only = True
        return model

    def strip(self) -> ChannelMerge:
        """Same as `deployable` (what `sbcb.models.strip_model` and export call); never drops a used branch."""
        return self.deployable()

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch}, reentry={self.reentry}, context={self.context_channels}ch 1/{self.context_stride}, "
            f"merge_width={self.merge_width}, hidden={self.hidden_channels}, inference_only={self.inference_only}"
        )
