"""What sbcb expects of a model that is not from timm, smp or torchvision: two small, explicit protocols.

- `DeclaresSides`: the model names its SBD sides itself, so `SBCB(model, num_classes=K)` needs no ``sides=``.
- `HasAuxiliaryHeads`: the model has training-only auxiliary heads (BiSeNet boosters, STDC's Detail Head, OCR's
  FCN head). ``forward(images)`` stays the inference path and returns only the logits; ``forward_train(images)``
  also returns the auxiliary outputs, and ``auxiliary_losses`` turns them into named, already weighted losses.

Both are `typing.Protocol`s checked with ``isinstance``: a model opts in by defining the methods, nothing else.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

from torch import Tensor

from sbcb.features import FeatureInfo


@runtime_checkable
class DeclaresSides(Protocol):
    """A model that says which of its modules feed the SBD head."""

    def sbcb_sides(self) -> list[FeatureInfo]:
        """The SBD sides by the paper's rule for this model: highest resolution first, the semantic side last.

        Module names are relative to the model; ``num_chs`` and ``reduction`` may be 0 (measured by the probe).
        """
        ...


class TrainOutput(NamedTuple):
    """What `HasAuxiliaryHeads.forward_train` returns.

    Attributes:
        logits: Segmentation logits [B, K, H', W'], exactly what ``forward`` returns.
        aux: Named auxiliary outputs (logits of any shape), consumed by ``auxiliary_losses``.
    """

    logits: Tensor
    aux: dict[str, Tensor]


@runtime_checkable
class HasAuxiliaryHeads(Protocol):
    """A model with training-only heads whose losses are part of its own recipe."""

    def forward_train(self, images: Tensor) -> TrainOutput:
        """One forward that also runs the auxiliary heads; images [B, C, H, W]."""
        ...

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """Named, already weighted scalar losses (keys start with ``loss_``) from `forward_train`'s ``aux``.

        Args:
            aux: The ``aux`` dict of `forward_train`.
            masks: [B, H, W] int64 labels at the input resolution, 255 = ignore.
        """
        ...
