"""Train any SBCB (or plain) segmentation model with Lightning (extra: ``pip install "sbcb[lightning]"``).

`SegmentationModule` is deliberately small: each training step is the sbcb call ``net(images, masks,
boundaries=...)``, whose flat dict of weighted losses is summed (an `sbcb.SBCB` wrapper: Eq. 1 of the paper; any
other model is put in an `sbcb.Segmentor`: cross-entropy with the ignore index plus its own auxiliary losses). The
optimizer is the paper's SGD with a poly schedule, validation logs mIoU, boundary F and Boundary IoU through
`sbcb.integrations.torchmetrics` (so Lightning syncs them under DDP), and `deployable()` / `save_pretrained(...)`
strip the SBD head for export.

Batches are the dicts of `sbcb.data` loaders (``"image"`` float [B, 3, H, W], ``"label"`` int64 [B, H, W], optional
``"boundaries"``) or ``(images, labels)`` tuples.

Example:
    >>> module = SegmentationModule(SBCB(model, num_classes=19), num_classes=19)
    >>> lightning.Trainer(max_steps=80_000).fit(module, train_loader, val_loader)
    >>> deployable = module.deployable()  # the original model, no head
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.segmentor import Segmentor

try:
    import lightning as L
except ImportError as e:  # pragma: no cover - the extra is installed in the dev environment
    raise ImportError('sbcb.integrations.lightning needs lightning: pip install "sbcb[lightning]"') from e

from sbcb.integrations.torchmetrics import BoundaryFScore, BoundaryIoU, MeanIoU

__all__ = ["SegmentationModule"]


def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
    if isinstance(batch, Mapping):
        return batch["image"].float(), batch["label"].long(), batch.get("boundaries")
    images, labels = batch[0], batch[1]
    return images.float(), labels.long(), None


class SegmentationModule(L.LightningModule):
    """A `LightningModule` around an `sbcb.SBCB` wrapper or any model mapping [B, 3, H, W] to [B, K, H, W] logits.

    Args:
        net: The model to train: an `sbcb.Segmentor` (`sbcb.SBCB` included) as is, any other module inside an
            `sbcb.Segmentor` (so ``self.net`` always has the call ``net(images, masks) -> losses``).
        num_classes: K.
        ignore_index: Void label (loss and metrics).
        lr: Initial learning rate of SGD (paper: 0.01).
        momentum: SGD momentum.
        weight_decay: SGD weight decay (paper: 5e-4).
        poly_power: Poly schedule power over `trainer.estimated_stepping_batches` (0 = constant lr).
        boundary_radii: Boundary F tolerances in pixels for validation.
        boundary_iou_width: Boundary IoU band width in pixels (None: 2 % of the diagonal).
        config: The recipe of `net` for `save_pretrained` (optional): the `sbcb.train.config.Config` (or
            `ModelConfig`) it was built from, or its `sbcb.models.build_model` kwargs.

    Logs ``train/loss`` and every ``train/loss_*`` term each step; ``val/miou``, ``val/aacc``, ``val/bf{r}`` and
    ``val/biou`` each validation epoch (fractions).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        num_classes: int,
        ignore_index: int = 255,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        poly_power: float = 0.9,
        boundary_radii: Sequence[float] = (3,),
        boundary_iou_width: int | None = None,
        config: Any = None,
    ) -> None:
        super().__init__()
        self.net = (
            net if isinstance(net, Segmentor) else Segmentor(net, num_classes=num_classes, ignore_index=ignore_index)
        )
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.lr, self.momentum, self.weight_decay, self.poly_power = lr, momentum, weight_decay, poly_power
        self.config = config
        self.boundary_radii = tuple(boundary_radii)
        self.val_miou = MeanIoU(num_classes, ignore_index=ignore_index)
        self.val_bf = BoundaryFScore(num_classes, radii=self.boundary_radii, ignore_index=ignore_index)
        self.val_biou = BoundaryIoU(num_classes, width=boundary_iou_width, ignore_index=ignore_index)

    def forward(self, images: Tensor) -> Tensor:
        """Segmentation logits [B, K, H', W'] (eval-mode call of the model)."""
        return self.net(images)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, masks, boundaries = _unpack(batch)
        losses = self.net(images, masks, boundaries=boundaries)
        total = sum(v.float() for v in losses.values())
        batch_size = images.shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size)
        return total

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, masks, _ = _unpack(batch)
        logits = self.net(images)
        if logits.shape[-2:] != masks.shape[-2:]:
            logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        pred = logits.argmax(1)
        for metric in (self.val_miou, self.val_bf, self.val_biou):
            metric.update(pred, masks)

    def on_validation_epoch_end(self) -> None:
        miou = self.val_miou.compute()
        bf = self.val_bf.compute()["mean_fscore"].reshape(-1)  # torchmetrics squeezes a 1-element [R]
        values = {"val/miou": miou["miou"], "val/aacc": miou["aacc"], "val/biou": self.val_biou.compute()["mean"]}
        values.update({f"val/bf{r:g}": bf[i] for i, r in enumerate(self.boundary_radii)})
        self.log_dict({k: v.float() for k, v in values.items()}, prog_bar=True)  # already synced by torchmetrics
        for metric in (self.val_miou, self.val_bf, self.val_biou):
            metric.reset()

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(
            self.net.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        if not self.poly_power:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        power = self.poly_power
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - min(step, total) / total) ** power
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def deployable(self) -> nn.Module:
        """The model to ship: ``net.strip()`` for an SBCB wrapper (no head, baseline keys), else `net` itself."""
        from sbcb.models import strip_model

        return strip_model(self.net)

    def save_pretrained(self, directory: str | os.PathLike, *, stripped: bool = True, **options: Any) -> Any:
        """`sbcb.save_pretrained` of the trained model (stripped by default) with the `config` given at construction.

        Args:
            directory: Output folder.
            stripped: Save the deployable segmentor (no SBD head).
            options: Other `sbcb.save_pretrained` keyword arguments (``class_names``, ``metrics``, ...).
        """
        from sbcb.pretrained import save_pretrained

        if self.config is None and "config" not in options:
            raise ValueError("save_pretrained needs the model's recipe: SegmentationModule(..., config=cfg)")
        options.setdefault("config", self.config)
        return save_pretrained(self.net, directory, stripped=stripped, **options)
