"""Two-Stream Merge (paper P§7.5, App. E, Fig. 16; spec §6.2): the SBD head plays GSCNN's shape stream.

The CASENet head runs on the encoder's SBD sides as in SBCB; its fused output (K channels) is turned into one more
ASPP branch of DeepLabV3+:

    edge = sigmoid(fuse)                      [B, K, h_o, w_o]  (option edge_input="logits": the logits)
    edge -> bilinear to the ASPP input size   [B, K, h, w]      (1/8 for the paper's d8 model)
    branch = 1x1 conv K -> C + BN + ReLU      [B, C, h, w]      (as GSCNN's edge branch)
    ASPP projection: concat of the stock branches and this one, (n + 1)·C -> C

Choices the paper leaves open, as options, spec §6.2 proposals as defaults [inferred]: the sigmoid of the K-channel
``fuse`` (``edge_input``); resizing before the 1x1 conv (cheaper than after, and what GSCNN does with its edge map);
BN + ReLU after the 1x1 conv (GSCNN's and the author's mmseg_ext edge branch have them); gradients of the
segmentation loss flow into the SBD head (``detach_edge=False``).

Every part of the SBD head is used at inference (the fuse needs all sides), so the deployable model is the model
itself; only the SBD losses are training-only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.fusion.common import arch_of, boundary_targets, encoder_sides, finish, output_size
from sbcb.heads.casenet import CASENetHead
from sbcb.heads.side_layers import init_weights
from sbcb.layers import ConvNormAct

EDGE_INPUTS = ("sigmoid", "logits")


class TwoStreamMerge(nn.Module):
    """smp DeepLabV3+ with a CASENet SBD head whose fused output is an extra ASPP branch (Two-Stream Merge).

    Implements `sbcb.contract.HasAuxiliaryHeads`: ``forward(images)`` -> logits [B, K, H, W] (runs the whole SBD
    head, which inference needs), ``forward_train`` -> ``TrainOutput(logits, {"fuse", "last"})``,
    ``auxiliary_losses`` -> ``{"loss_sbd_fuse", "loss_sbd_last"}`` (Eq. 1, alpha each).

    Extra parameters vs the segmentor (all used at inference): the CASENet head (spec §3.3), the edge branch
    ``K*C + 2*C`` and the ASPP projection's extra input columns ``C*C`` (C = the ASPP width).

    The segmentor's ASPP projection conv (``decoder.aspp[0].project[0]``) is **replaced in place** by the wider one
    (its weights copied into the first n·C input columns): the fused model owns the segmentor.

    Args:
        segmentor: smp ``DeepLabV3Plus``.
        num_classes: K.
        edge_input: ``"sigmoid"`` (default) or ``"logits"`` of the fuse output feed the edge branch.
        detach_edge: Stop the segmentation loss's gradient at the SBD output (default: it flows).
        alpha, beta, radius, ignore_index, head_scale: As in `sbcb.fusion.ChannelMerge`.
        head_options: Extra `CASENetHead` options (e.g. ``{"fuse_bias": True}``).
    """

    def __init__(
        self,
        segmentor: nn.Module,
        *,
        num_classes: int,
        edge_input: str = "sigmoid",
        detach_edge: bool = False,
        alpha: float = 5.0,
        beta: float = 1.0,
        radius: float = 2.0,
        ignore_index: int = 255,
        head_scale: float = 1.0,
        head_options: dict | None = None,
    ) -> None:
        super().__init__()
        if arch_of(segmentor) != "deeplabv3plus":
            raise ValueError("Two-Stream Merge feeds DeepLabV3+'s ASPP; use channel-merge for PSPNet")
        if edge_input not in EDGE_INPUTS:
            raise ValueError(f"edge_input must be one of {EDGE_INPUTS}, got {edge_input!r}")
        if not 0.0 < head_scale <= 1.0:
            raise ValueError(f"head_scale must be in (0, 1], got {head_scale}")
        self.segmentor = segmentor
        self.num_classes = int(num_classes)
        self.edge_input, self.detach_edge = edge_input, bool(detach_edge)
        self.alpha, self.beta = float(alpha), float(beta)
        self.radius, self.ignore_index = float(radius), int(ignore_index)
        self.head_scale = float(head_scale)

        sides = encoder_sides(segmentor)
        self.side_indices = [int(info.index) for info in sides]
        self.sbd_head = CASENetHead([info.num_chs for info in sides], self.num_classes, **(head_options or {}))
        aspp = segmentor.decoder.aspp[0]
        old = aspp.project[0]
        width = old.out_channels  # C, read from the model
        self.aspp_width = width
        self.edge_branch = ConvNormAct(self.num_classes, width, 1)
        init_weights(self.edge_branch)
        wider = nn.Conv2d(old.in_channels + width, width, 1, bias=False).to(old.weight.device)
        nn.init.kaiming_uniform_(wider.weight, mode="fan_in", nonlinearity="relu")  # smp's decoder init
        with torch.no_grad():
            wider.weight[:, : old.in_channels] = old.weight
        aspp.project[0] = wider

    def _run(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        seg = self.segmentor
        features = seg.encoder(images)
        sbd = self.sbd_head([features[i] for i in self.side_indices], output_size=output_size(images, self.head_scale))
        edge = torch.sigmoid(sbd["fuse"]) if self.edge_input == "sigmoid" else sbd["fuse"]
        if self.detach_edge:
            edge = edge.detach()
        x = features[-1]
        edge = F.interpolate(edge, size=x.shape[-2:], mode="bilinear", align_corners=False)
        decoder = seg.decoder
        aspp = decoder.aspp[0]
        branches = [conv(x) for conv in aspp.convs] + [self.edge_branch(edge)]
        context = decoder.aspp[1:](aspp.project(torch.cat(branches, dim=1)))
        return finish(seg, features, context, "context"), sbd

    def forward(self, images: Tensor) -> Tensor:
        """Segmentation logits [B, K, H, W]; the SBD head runs too (its fused output is an ASPP branch)."""
        return self._run(images)[0]

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits and the SBD outputs ``{"fuse", "last"}`` of the same forward."""
        return TrainOutput(*self._run(images))

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """Eq. 1's SBD terms ``{"loss_sbd_fuse", "loss_sbd_last"}`` (alpha each), GT from ``masks`` [B, H, W]."""
        from sbcb.losses import sbd_loss_terms

        bands = boundary_targets(masks, self.num_classes, radius=self.radius, ignore_index=self.ignore_index)
        return sbd_loss_terms(
            aux, bands.to(aux["fuse"].device), plan=self.sbd_head.loss_plan, alpha=self.alpha, beta=self.beta
        )

    def deployable(self) -> TwoStreamMerge:
        """The model itself: every SBD-head part feeds the segmentation at inference."""
        return self

    def strip(self) -> TwoStreamMerge:
        """Same as `deployable`: nothing can be removed without changing the logits."""
        return self.deployable()

    def extra_repr(self) -> str:
        return f"edge_input={self.edge_input}, detach_edge={self.detach_edge}, aspp_width={self.aspp_width}"
