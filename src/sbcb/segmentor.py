"""`Segmentor`: the call contract every trainable sbcb model follows, here for a plain (baseline) segmentation model.

- ``net(images)`` -> segmentation logits ``[B, K, H', W']``, in train *and* eval mode: exactly the logits the wrapped
  model (the deployable, stripped model) returns (transformers' resized to the input, see below).
- ``net(images, masks)`` (optionally ``boundaries=`` precomputed bands, ``instances=`` instance ids) -> a flat
  ``dict[str, Tensor]`` of named, already weighted scalar float32 losses; sum its values to train. Everything runs
  inside ``forward``, so `torch.nn.parallel.DistributedDataParallel(net)` needs nothing special.
- ``net.forward_outputs(images)`` -> every output of one forward (`SBCBOutput`), for evaluation and pictures.
- ``net.strip()`` -> the wrapped model object itself.

The baseline's losses are ``loss_seg`` (cross-entropy) plus the wrapped model's own auxiliary losses when it
implements `sbcb.contract.HasAuxiliaryHeads`, or ``loss_aux`` for a torchvision model built with ``aux_loss=True``
(weight 0.5, torchvision's recipe; training it is also what lets DistributedDataParallel run without
``find_unused_parameters``). `sbcb.SBCB` extends this class with the SBD head's terms.

Model outputs (`sbcb.adapters.outputs.select_output`): a logits tensor, torchvision's ``{"out": ...}``, a
``{"logits": ...}`` dict or transformers ``ModelOutput``, or a tuple/list with ``output=`` naming the entry (smp's
``aux_params`` ``(mask, label)`` is picked by default). transformers logits, which the models produce below the input
resolution (Segformer 1/4), are resized to the input bilinearly as their own post-processing does. One eval-mode
probe forward at construction checks that the logits have ``num_classes`` channels and finds an input the model takes
(its first conv's channels, a ViT's fixed image size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.adapters import find_backbone
from sbcb.adapters.generic import probe_output
from sbcb.adapters.outputs import (
    TORCHVISION_AUX_WEIGHT,
    OutputSelector,
    check_num_classes,
    default_selector,
    has_torchvision_aux,
    select_output,
    upsamples_logits,
)
from sbcb.contract import HasAuxiliaryHeads


def relabel_out_of_range(masks: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """The cross-entropy target: masks as int64 with every value outside 0..K-1 set to `ignore_index`.

    Void values (254 in the compact label maps) form boundaries with the classes but are no class themselves.
    """
    mask = masks.long()
    return torch.where((mask >= 0) & (mask < num_classes), mask, torch.full_like(mask, ignore_index))


class SBCBOutput(NamedTuple):
    """Every output of one forward (`Segmentor.forward_outputs`).

    Attributes:
        seg: Segmentation logits [B, K, H', W'] as the user's model produced them (transformers' resized to the
            input, see `Segmentor.seg_logits`).
        sbd: SBD head logits by output name, each [B, K or 1, h, w] with (h, w) = head_scale * (H, W); empty for a
            baseline.
        aux: FCN auxiliary logits [B, K, h_aux, w_aux] at the tapped feature's resolution, or None.
        model_aux: The wrapped model's own auxiliary outputs in training mode (`sbcb.contract.HasAuxiliaryHeads`, or
            ``{"aux": ...}`` of a torchvision ``aux_loss=True`` model), else empty.
    """

    seg: Tensor
    sbd: dict[str, Tensor]
    aux: Tensor | None
    model_aux: dict[str, Tensor] = {}


def as_label_tensor(masks: Any, *, device: torch.device) -> Tensor:
    """Masks as an integer tensor on ``device``: numpy arrays are converted, integral floats cast.

    Raises:
        TypeError: Not a tensor or an array.
        ValueError: Float masks with fractional values (soft labels or resized with interpolation).
    """
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a [B, H, W] integer tensor or numpy array, got {type(masks).__name__}")
    if masks.is_floating_point():
        if not torch.equal(masks, masks.round()):
            raise ValueError(
                "masks hold fractional values (soft labels, or resized with interpolation?); pass integer class "
                "ids (resize masks with nearest-neighbour)"
            )
        masks = masks.long()
    return masks.to(device)


class Segmentor(nn.Module):
    """A segmentation model with the sbcb call contract (see the module docstring); the baseline of every run.

    Args:
        model: Any module mapping images [B, C, H, W] to logits [B, K, H', W'] (or one of the outputs listed in the
            module docstring). It is not modified.
        num_classes: K; must equal the channels of the model's logits.
        ignore_index: Label ignored by the segmentation loss; labels outside 0..K-1 are ignored too.
        probe_size: (H, W) of the dry-run forwards (output check, backbone search); when the model rejects it, the
            size the model declares is used.
        in_chans: Input channels of the model; when the model rejects them, its first conv's are used.
        output: Where the logits are in the model's output: an index (tuples, lists), a key (dicts, ModelOutput)
            or a function of the raw output; None = automatic (see the module docstring).

    Raises:
        ValueError: the logits do not have `num_classes` channels, or the probe forward fails (one line each).
        TypeError: the model's output holds no logits that `output` can find.

    Example:
        >>> net = Segmentor(smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=19), num_classes=19)
        >>> losses = net(images, masks)   # {"loss_seg": ...}
        >>> logits = net(images)          # [B, 19, H, W]
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        ignore_index: int = 255,
        probe_size: tuple[int, int] = (128, 128),
        in_chans: int = 3,
        output: OutputSelector = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} wraps an nn.Module, got {type(model).__name__}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.model = model
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._output: OutputSelector = output if output is not None else default_selector(model)
        self._upsample_logits = upsamples_logits(model)
        self._model_aux_weight = TORCHVISION_AUX_WEIGHT if has_torchvision_aux(model) else None
        self._backbone: str | None = None  # dotted name of the backbone inside `model`, found on first need
        raw, chans, size = probe_output(model, in_chans=in_chans, input_size=(probe_size[0], probe_size[1]))
        check_num_classes(self.seg_logits(raw), num_classes, model=type(model).__name__)
        # the input the probe found usable; `SBCB` and `head_parameters` measure the backbone with it
        self._probe: dict[str, Any] = {"input_size": size, "in_chans": chans}

    # -- the call -------------------------------------------------------------------------------------------------

    def forward(
        self,
        images: Tensor,
        masks: Tensor | None = None,
        *,
        boundaries: Tensor | None = None,
        instances: Tensor | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Logits without `masks`; the flat dict of weighted losses with them.

        Args:
            images: [B, C, H, W] float, normalized as the model expects.
            masks: Optional [B, H, W] integer labels (ignore_index = ignore; values outside 0..K-1 are ignored).
            boundaries: Optional precomputed boundary GT for the SBD terms (see `SBCB.boundary_targets`); they
                must have been made with the same radius as the wrapper's.
            instances: Optional [B, H, W] instance ids (instance-sensitive boundary GT generated on the fly).

        Returns:
            Logits [B, K, H', W'] (the wrapped model's output), or ``{"loss_seg": ..., ...}`` scalar float32.
        """
        if masks is None:
            if boundaries is not None or instances is not None:
                raise ValueError("boundaries= and instances= are loss targets: pass masks too")
            return self.seg_logits(self.model(images), size=images.shape[-2:])
        masks = as_label_tensor(masks, device=images.device)
        return self.compute_losses(self.forward_outputs(images), masks, boundaries=boundaries, instances=instances)

    def seg_logits(self, output: Any, size: Sequence[int] | None = None) -> Tensor:
        """Segmentation logits [B, K, H', W'] from the user model's raw forward output.

        Args:
            output: What ``model(images)`` returned.
            size: The input's (H, W); transformers logits are resized to it (bilinear, align_corners=False, as
                their ``post_process_semantic_segmentation`` does). None = the model's own resolution.
        """
        logits = select_output(output, self._output)
        if self._upsample_logits and size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
        return logits

    def _model_forward(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(seg logits, the model's own auxiliary outputs); the auxiliary outputs are kept only in training mode."""
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
        size = images.shape[-2:]
        if self.training and isinstance(self.model, HasAuxiliaryHeads):
            raw, model_aux = self.model.forward_train(images)
            return self.seg_logits(raw, size=size), dict(model_aux)
        raw = self.model(images)
        if self.training and self._model_aux_weight is not None:
            return self.seg_logits(raw, size=size), {"aux": raw["aux"]}  # torchvision's aux_loss=True classifier
        return self.seg_logits(raw, size=size), {}

    def forward_outputs(self, images: Tensor) -> SBCBOutput:
        """Every output of one forward of the user's model, in any mode (no SBD outputs for a baseline)."""
        seg, model_aux = self._model_forward(images)
        return SBCBOutput(seg=seg, sbd={}, aux=None, model_aux=model_aux)

    # -- losses ---------------------------------------------------------------------------------------------------

    def compute_losses(
        self,
        outputs: SBCBOutput,
        masks: Tensor,
        *,
        boundaries: Tensor | None = None,
        instances: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The flat dict of weighted scalar float32 losses of `forward_outputs`' result (what ``net(images, masks)``
        returns).

        Args:
            outputs: From `forward_outputs`.
            masks: [B, H, W] integer labels. For the CE term, values outside 0..K-1 count as ignore.
            boundaries: Boundary GT of the SBD terms (see `SBCB.boundary_targets`); unused by a baseline (accepted
                so every model takes the same call).
            instances: Optional [B, H, W] instance ids (on-the-fly, instance-sensitive GT); unused by a baseline.

        Returns:
            ``{"loss_seg", then the terms of the heads added around the model (`SBCB`: ``"loss_sbd_<output>"``...,
            ``"loss_aux"`` with fcn_aux), then the model's own aux losses}``.
        """
        if not isinstance(outputs, SBCBOutput):
            raise TypeError("compute_losses() takes the SBCBOutput of forward_outputs()")
        ce_target = self._ce_target(masks)
        losses = {"loss_seg": self._cross_entropy(outputs.seg, ce_target)}
        losses.update(self._head_losses(outputs, masks, ce_target, boundaries, instances))
        losses.update(self._model_aux_losses(outputs, ce_target))
        return losses

    def _head_losses(
        self, outputs: SBCBOutput, masks: Tensor, ce_target: Tensor, boundaries: Tensor | None, instances: Tensor | None
    ) -> dict[str, Tensor]:
        """The terms of the heads added around the user's model: none for a baseline (`SBCB` adds its own)."""
        return {}

    def _ce_target(self, masks: Tensor) -> Tensor:
        if masks.ndim != 3:
            raise ValueError(f"masks must be [B, H, W], got shape {tuple(masks.shape)}")
        return relabel_out_of_range(masks, self.num_classes, self.ignore_index)

    def _model_aux_losses(self, outputs: SBCBOutput, ce_target: Tensor) -> dict[str, Tensor]:
        if not outputs.model_aux:
            return {}
        if self._model_aux_weight is not None:
            return {"loss_aux": self._model_aux_weight * self._cross_entropy(outputs.model_aux["aux"], ce_target)}
        assert isinstance(self.model, HasAuxiliaryHeads)
        return dict(self.model.auxiliary_losses(outputs.model_aux, ce_target))

    def _cross_entropy(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        # Sum over labelled pixels / their count (at least 1): the mean, and exactly 0 for a batch with none (F's mean
        # would divide 0 by 0 and give NaN for an all-ignore crop). No host sync.
        total = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="sum")
        return total / (target != self.ignore_index).sum().clamp(min=1)

    # -- parameters and deployment --------------------------------------------------------------------------------

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of everything that is not the backbone: the model's decoder and classifier (and, in
        `sbcb.SBCB`, the SBD and auxiliary heads); what a "head" learning-rate multiplier applies to.

        The backbone is the deepest module holding every backbone level found by `sbcb.adapters.find_backbone` (one
        dry-run forward, once), e.g. smp's ``encoder``; a model in which none is found, or whose levels share no
        parent module, has no decoder parameters here.
        """
        if self._backbone is None:
            try:
                spec = find_backbone(self.model, **self._probe)
                self._backbone = backbone_module([level.module for level in spec.levels])
            except ValueError:
                self._backbone = ""
        if self._backbone == "":
            return iter(())
        prefix = self._backbone + "."
        return (p for name, p in self.model.named_parameters() if not name.startswith(prefix))

    def strip(self) -> nn.Module:
        """The original model object, exactly as passed in."""
        return self.model


def backbone_module(level_modules: list[str]) -> str:
    """The longest common dotted prefix of the levels' module names ("" = none): "encoder" for smp (whose levels
    are entries of the encoder's list output), "backbone" for ``backbone.layer1`` .. ``backbone.layer4``."""
    parts = [name.split(".") for name in level_modules]
    common: list[str] = []
    for names in zip(*parts):
        if len(set(names)) != 1:
            break
        common.append(names[0])
    return ".".join(common)
