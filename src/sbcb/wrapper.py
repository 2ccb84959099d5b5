"""`SBCB`: condition any segmentation model's backbone with semantic boundaries, then strip back to the baseline.

The wrapper holds the user's model unmodified (`self.model`), an SBD head (`self.head`) and optionally the FCN
auxiliary head (`self.aux_head`). During a loss forward, temporary forward hooks (`sbcb.features.FeatureTaps`)
read the side features while the user's own forward runs; the head turns them into boundary logits. Outside that
forward no hook exists, so `strip()` simply hands back the original model object.

The call (`sbcb.segmentor.Segmentor`'s contract, the same for a baseline):
- ``net(images)`` -> the segmentation logits [B, K, H', W'] in train and eval mode, the stripped model's exact
  output (no taps, no head, baseline cost).
- ``net(images, masks)`` -> ``{"loss_seg", "loss_sbd_fuse", ...}``, named and already weighted; sum the values.
  Everything runs inside ``forward``, so DistributedDataParallel sees every parameter that gets a gradient.
- ``net.forward_outputs(images)`` -> `SBCBOutput` (seg, SBD and auxiliary logits) in either mode, for SBD
  evaluation and pictures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from sbcb.adapters import find_backbone  # adapters import timm/smp/torchvision only inside functions
from sbcb.adapters.outputs import OutputSelector
from sbcb.boundaries import mask_to_boundaries, mask_to_boundaries_torch, unpack_boundaries
from sbcb.features import (
    FeatureInfo,
    FeatureTaps,
    check_sides_order,
    default_sides,
    describe_sides,
    probe_features,
    resolve_module,
)
from sbcb.heads import HEADS, build_head
from sbcb.heads.fcn_aux import FCNAuxHead
from sbcb.losses import sbd_loss_terms
from sbcb.segmentor import SBCBOutput, Segmentor, backbone_module

logger = logging.getLogger("sbcb")


class SBCB(Segmentor):
    """Semantic Boundary Conditioned Backbone wrapper around an unmodified segmentation model.

    Sides are chosen automatically from the backbone's feature info (timm, smp, torchvision; spec §5.1: five-level
    backbones use levels 1, 2, 3, 5, four-level backbones all, DDS all) or given by name. Channels and strides are
    measured by one dry-run forward at construction, never typed by hand.

    Args:
        model: Any segmentation model whose forward maps images [B, C, H, W] to logits [B, K, H', W'] (or a dict,
            transformers ModelOutput or tuple holding them, see `sbcb.segmentor`). It is not modified.
        num_classes: K, the dataset's classes (also for `binary=True`: the GT is built per class, then unioned).
        sides: Submodule names to tap (dotted paths in `model`, or relative to the detected backbone), highest
            resolution first, semantic side last; `[name, entry]` pairs for an entry of a module's list output;
            FeatureInfo objects for full control; None = automatic. `SBCB(model, **net.config)` rebuilds `net`.
        head: SBD head, a name in `sbcb.heads.HEADS`: "casenet" (default), "dff" or "dds".
        binary: BBCB: a 1-class head supervised with the union of the class boundaries.
        alpha: Weight of each multi-label SBD term (paper: 5).
        beta: Weight of each binary term (paper: 1).
        fcn_aux: Add the FCN auxiliary head: True = on the penultimate backbone level (ResNet layer3), or a
            submodule name (or `[name, entry]`) as in `sides`.
        aux_weight: Weight of the auxiliary CE loss (mmseg: 0.4).
        radius: Boundary GT band radius in pixels for GT generated on the fly (precomputed ``boundaries=`` must have
            been made with the same radius; `sbcb.train.Config` passes one value to both).
        ignore_index: Label ignored by the segmentation loss, and "inside every class" for boundary GT.
        head_scale: Size of the SBD outputs relative to the input (1.0 = paper; 0.5 halves the full-resolution
            side convs' cost, the GT is then resized inside the loss).
        head_options: Extra keyword options of the head class (e.g. {"fuse_bias": True}).
        probe_size: (H, W) of the dry-run forward that measures the taps; a multiple of the largest stride (a size
            the model rejects is replaced by the one it declares, e.g. a ViT's img_size).
        in_chans: Input channels of the model (replaced by its first conv's when they do not fit).
        hrnet_stem: HRNet first side, "1/4" (default, official) or "1/2".
        output: Where the logits are in the model's output (`sbcb.segmentor.Segmentor`): an index, a key or a
            function; None = automatic.

    Raises:
        ValueError: sides not ordered from the highest resolution to the deepest, a model whose logits do not have
            `num_classes` channels, no sides found (each one line naming the fix).

    Example:
        >>> net = SBCB(smp.DeepLabV3Plus("resnet50", encoder_weights=None, classes=19), num_classes=19)
        >>> losses = net(images, masks)             # {"loss_seg": ..., "loss_sbd_fuse": ..., "loss_sbd_last": ...}
        >>> sum(losses.values()).backward()
        >>> logits = net(images)                    # [B, 19, H, W], train or eval mode
        >>> deployable = net.strip()                # the original smp model, no hooks, no head
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        sides: Sequence[str | FeatureInfo | tuple[str, int | str]] | None = None,
        head: str = "casenet",
        binary: bool = False,
        alpha: float = 5.0,
        beta: float = 1.0,
        fcn_aux: bool | str | tuple[str, int | str] = False,
        aux_weight: float = 0.4,
        radius: float = 2.0,
        ignore_index: int = 255,
        head_scale: float = 1.0,
        head_options: dict[str, Any] | None = None,
        probe_size: tuple[int, int] = (128, 128),
        in_chans: int = 3,
        hrnet_stem: str = "1/4",
        output: OutputSelector = None,
    ) -> None:
        super().__init__(
            model,
            num_classes=num_classes,
            ignore_index=ignore_index,
            probe_size=probe_size,
            in_chans=in_chans,
            output=output,
        )
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        if not 0.0 < head_scale <= 1.0:
            raise ValueError(f"head_scale must be in (0, 1], got {head_scale}")
        self.head_name = head
        self.binary = binary
        self.alpha = alpha
        self.beta = beta
        self.aux_weight = aux_weight
        self.radius = radius
        self.head_scale = head_scale

        if fcn_aux is not False and self._model_aux_weight is not None:
            raise ValueError(
                f"{type(model).__name__} has its own auxiliary classifier (aux_loss=True), trained as loss_aux; "
                "drop fcn_aux or build the model with aux_loss=False"
            )
        probe = self._probe  # the input size and channels the model was found to take (`Segmentor`)
        names = dict(model.named_modules())
        needs_spec = sides is None or fcn_aux is True
        needs_spec |= any(isinstance(s, str) and s not in names for s in [*(sides or []), fcn_aux])
        spec = None
        if needs_spec:
            try:
                spec = find_backbone(model, hrnet_stem=hrnet_stem, **probe)
            except ValueError:
                if sides is None or fcn_aux is True:
                    raise
                # only to resolve names relative to a backbone; a bad name is reported by `_named_tap`
        if spec is not None:
            self._backbone = backbone_module([level.module for level in spec.levels])

        if sides is None:
            assert spec is not None
            declared = spec.family == "declared"  # the model's own choice of sides (sbcb.contract.DeclaresSides)
            side_infos = spec.levels if declared else default_sides(spec.levels, all_levels=head == "dds")
        else:
            side_infos = probe_features(model, [self._named_tap(s, spec) for s in sides], **probe)
            check_sides_order(side_infos)  # automatic sides were checked by find_backbone
        if len(side_infos) < 2:
            raise ValueError(f"an SBD head needs at least 2 sides, got {len(side_infos)}")
        self.side_infos: list[FeatureInfo] = side_infos
        if sides is not None or spec is None:
            source = "given"
        else:
            source = f"{spec.family} at {spec.module!r}" if spec.module else spec.family
        logger.info(describe_sides(side_infos, source=source))  # the one line saying which sides were chosen

        aux_infos: list[FeatureInfo] = []
        if fcn_aux is True:
            assert spec is not None
            aux_infos = [spec.levels[-2]]
        elif fcn_aux is not False:
            aux_infos = probe_features(model, [self._named_tap(fcn_aux, spec)], **probe)
        self.aux_info: FeatureInfo | None = aux_infos[0] if aux_infos else None

        options = dict(head_options or {})
        # strides come from the model, never from the options (configs of sbcb <= 0.2.0 repeated them there)
        strides = [info.reduction for info in side_infos]
        if list(options.pop("strides", strides)) != strides:
            raise ValueError(f"the head's strides come from the sides ({strides}): drop 'strides' from head_options")
        channels = [info.num_chs for info in side_infos]
        self.head = build_head(head, channels, 1 if binary else num_classes, strides=strides, **options)
        self.aux_head = FCNAuxHead(self.aux_info.num_chs, num_classes) if self.aux_info is not None else None
        # JSON-typed constructor options (everything but the model), for checkpoints and logs
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "sides": [_tap_name(info) for info in side_infos],
            "head": head,
            "binary": binary,
            "alpha": alpha,
            "beta": beta,
            "fcn_aux": _tap_name(self.aux_info) if self.aux_info is not None else False,
            "aux_weight": aux_weight,
            "radius": radius,
            "ignore_index": ignore_index,
            "head_scale": head_scale,
            "head_options": {k: v for k, v in options.items() if isinstance(v, (bool, int, float, str, list))},
        }
        if isinstance(output, (int, str)):
            self.config["output"] = output
        # Taps are plain Python objects (no parameters, no hooks until `capture()`); they never enter state_dict.
        self._taps = FeatureTaps(model, side_infos + aux_infos)

    # -- construction helpers -------------------------------------------------------------------------------------

    def _named_tap(self, side: str | FeatureInfo | tuple[str, int | str], spec: Any) -> FeatureInfo:
        if isinstance(side, FeatureInfo):
            resolve_module(self.model, side.module)
            return side
        if isinstance(side, (list, tuple)) and len(side) == 2 and isinstance(side[0], str):
            return FeatureInfo(0, 0, side[0], index=side[1])  # [module, output entry], as written in `config`
        if not isinstance(side, str):
            raise TypeError(f"sides entries must be module names or FeatureInfo, got {type(side).__name__}")
        names = dict(self.model.named_modules())
        if side not in names and spec is not None and spec.module and f"{spec.module}.{side}" in names:
            side = f"{spec.module}.{side}"  # relative to the detected backbone
        resolve_module(self.model, side)
        # a known level of the same module keeps its layout flags (NHWC, HRNet branch concat)
        for level in spec.levels if spec is not None else []:
            if level.module == side and level.index is None:
                return level
        return FeatureInfo(0, 0, side)  # channels, stride and branch lists measured by the probe

    # -- forward --------------------------------------------------------------------------------------------------

    def forward_outputs(self, images: Tensor) -> SBCBOutput:
        """Segmentation logits, SBD logits and auxiliary logits in one forward of the user's model (any mode).

        The one explicit way to get the SBD outputs (``torch.sigmoid(out.sbd["fuse"])`` are the boundary
        probabilities); ``net(images)`` returns only the segmentation logits.

        Args:
            images: [B, C, H, W] float, normalized as the model expects.

        Returns:
            SBCBOutput; SBD outputs at (round(H * head_scale), round(W * head_scale)).
        """
        with self._taps.capture() as grab:
            seg, model_aux = self._model_forward(images)
        features = grab()
        n = len(self.side_infos)
        size = (round(images.shape[-2] * self.head_scale), round(images.shape[-1] * self.head_scale))
        sbd = self.head(features[:n], output_size=size)
        aux = self.aux_head(features[n]) if self.aux_head is not None else None
        return SBCBOutput(seg=seg, sbd=sbd, aux=aux, model_aux=model_aux)

    def extract_features(self, images: Tensor) -> list[Tensor]:
        """The tapped side features (then the FCN-aux feature, if any), NCHW, from one forward of the user's model.

        Args:
            images: [B, C, H, W].

        Returns:
            One [B, C_i, H / r_i, W / r_i] tensor per entry of `side_infos` (+ `aux_info`).
        """
        with self._taps.capture() as grab:
            self.model(images)
        return grab()

    # -- losses ---------------------------------------------------------------------------------------------------

    def boundary_targets(
        self, target_mask: Tensor, target_boundaries: Tensor | None = None, instance_mask: Tensor | None = None
    ) -> Tensor:
        """Boundary GT as bool [B, K, H, W] on the mask's device.

        Args:
            target_mask: [B, H, W] integer labels (ignore_index = ignore; other values >= K form boundaries).
            target_boundaries: None (generate on the fly on the mask's device: the exact scan of `sbcb.boundaries`
                on the CPU, its torch twin elsewhere; the same bands), bool/uint8 [B, K, H, W], or bit-packed uint8
                [B, ceil(K / 8), H, W] from `sbcb.boundaries` (bit k of byte k // 8 = class k).
            instance_mask: Optional [B, H, W] instance ids for instance-sensitive GT generated on the fly.
        """
        k = self.num_classes
        if target_boundaries is None and target_mask.device.type == "cpu":
            # Same bands; the exact scan of `sbcb.boundaries` is ~200x faster than the max-pool twin on the CPU
            # (benchmarks/wrapper_overhead.py, "GT on device").
            masks = target_mask.numpy()
            instances = [None] * len(masks) if instance_mask is None else instance_mask.numpy()
            bands = [mask_to_boundaries(m, k, self.radius, self.ignore_index, i) for m, i in zip(masks, instances)]
            return torch.from_numpy(np.stack(bands))
        if target_boundaries is None:
            return mask_to_boundaries_torch(
                target_mask.long(),
                k,
                radius=self.radius,
                ignore_index=self.ignore_index,
                instance_mask=instance_mask,
            )
        if target_boundaries.ndim != 4 or target_boundaries.shape[0] != target_mask.shape[0]:
            raise ValueError(
                f"target_boundaries must be [B, K, H, W] or packed [B, ceil(K/8), H, W], got "
                f"{tuple(target_boundaries.shape)} for a batch of {target_mask.shape[0]}"
            )
        channels = target_boundaries.shape[1]
        if channels == k:
            return target_boundaries.bool()
        if target_boundaries.dtype == torch.uint8 and channels == math.ceil(k / 8):
            return unpack_boundaries(target_boundaries, k)
        raise ValueError(
            f"target_boundaries has {channels} channels; expected K = {k} (dense) or {math.ceil(k / 8)} (packed uint8)"
        )

    def _head_losses(
        self, outputs: SBCBOutput, masks: Tensor, ce_target: Tensor, boundaries: Tensor | None, instances: Tensor | None
    ) -> dict[str, Tensor]:
        """Eq. 1's SBD terms, then ``loss_aux`` with fcn_aux (`Segmentor.compute_losses` adds the rest).

        The SBD terms and their weights (alpha, beta) follow the head's `loss_plan`; `boundaries` None = GT
        generated on the fly from `masks` with ``radius`` (see `boundary_targets`).
        """
        targets = self.boundary_targets(masks.long(), boundaries, instances)
        plan = cast("dict[str, str]", self.head.loss_plan)  # each head declares it (`sbcb.heads`)
        losses = dict(
            sbd_loss_terms(outputs.sbd, targets, plan=plan, alpha=self.alpha, beta=self.beta, binary=self.binary)
        )
        if outputs.aux is not None:
            losses["loss_aux"] = self.aux_weight * self._cross_entropy(outputs.aux, ce_target)
        return losses

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The model's decoder and classifier (see `Segmentor.head_parameters`), then the SBD and auxiliary heads."""
        yield from super().head_parameters()
        yield from self.head.parameters()
        if self.aux_head is not None:
            yield from self.aux_head.parameters()

    # -- strip ----------------------------------------------------------------------------------------------------

    def strip(self) -> nn.Module:
        """The original model object, exactly as passed in: no hooks, no SBD or auxiliary head.

        Its `state_dict()` keys, parameter count and outputs equal those of the same model never wrapped.
        """
        if self._taps.active:
            raise RuntimeError("strip() called during a forward")
        return self.model

    def extra_repr(self) -> str:
        sides = ", ".join(f"{i.name}({i.num_chs}ch, 1/{i.reduction})" for i in self.side_infos)
        aux = f", fcn_aux={self.aux_info.name}" if self.aux_info is not None else ""
        return f"head={self.head_name}, num_classes={self.num_classes}, binary={self.binary}, sides=[{sides}]{aux}"


def _tap_name(info: FeatureInfo) -> str | list[Any]:
    """How `sides` / `fcn_aux` spell a tap in `SBCB.config`: the module name, or [module, output entry]."""
    return info.module if info.index is None else [info.module, info.index]
