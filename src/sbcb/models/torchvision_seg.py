"""torchvision segmentation models under plain ``--arch`` names (built without any weights: nothing downloads).

Registered so that a checkpoint names an sbcb model rather than a ``module:function`` path: ``--arch
lraspp_mobilenet_v3_large`` is torchvision's LRASPP on a dilated MobileNetV3-Large (the paper's light model, Tab. 11),
randomly initialised. Its ``{"out": logits}`` output is handled by `sbcb.segmentor.Segmentor` and the wrapper.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sbcb.models.registry import register_model


@register_model("lraspp_mobilenet_v3_large")
def lraspp_mobilenet_v3_large(
    *, num_classes: int, encoder: str | None = None, output_stride: int | None = None, **kwargs: Any
) -> nn.Module:
    """torchvision ``lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)``; output stride 16 (fixed).

    Raises:
        ValueError: An encoder or output stride was given (the architecture fixes both).
    """
    if encoder is not None or output_stride is not None:
        raise ValueError("lraspp_mobilenet_v3_large has a fixed MobileNetV3-Large encoder at output stride 16")
    try:
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large as build
    except ImportError as e:
        raise ImportError('torchvision models need the models extra: pip install "sbcb[models]"') from e
    # weights stay None whatever kwargs say: a checkpoint's stored kwargs must never switch on a download
    kwargs = {k: v for k, v in kwargs.items() if k not in ("weights", "weights_backbone")}
    return build(num_classes=num_classes, weights=None, weights_backbone=None, **kwargs)
