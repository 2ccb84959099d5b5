"""What a wrapped model returns, reduced to segmentation logits; checks on the result.

Models return logits in many shapes: a tensor (smp, timm-based user models), torchvision's `{"out", "aux"}`, a
`{"logits"}` dict or transformers `ModelOutput`, or a tuple (smp with `aux_params` returns `(mask, label)`).
`select_output` turns any of these into the [B, K, h, w] logits, with an explicit `selector` (the wrapper's
`output=` option) for tuples and other containers, and an error naming the type otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

OutputSelector = int | str | Callable[[Any], Tensor] | None


def describe_output(raw: Any) -> str:
    """A short description of a model output's structure, e.g. `"tuple(Tensor[2, 4, 64, 64], Tensor[2, 3])"`."""
    if isinstance(raw, Tensor):
        return f"Tensor{list(raw.shape)}"
    if isinstance(raw, Mapping):
        inner = ", ".join(f"{k!r}: {describe_output(v)}" for k, v in raw.items())
        return f"{type(raw).__name__}({inner})"
    if isinstance(raw, (list, tuple)):
        return f"{type(raw).__name__}({', '.join(describe_output(v) for v in raw)})"
    return type(raw).__name__


def select_output(raw: Any, selector: OutputSelector = None) -> Tensor:
    """The segmentation logits [B, K, h, w] in a model's forward output.

    Without `selector`: a tensor is the logits; a dict (torchvision) gives `"out"`; a dict or transformers
    `ModelOutput` without `"out"` gives `"logits"` (at the model's own resolution: the SBCB loss resizes logits to
    the mask bilinearly, as transformers' own losses do). A tuple or list needs `selector`.

    Args:
        raw: What `model(images)` returned.
        selector: An index (tuples/lists, e.g. `0` for smp's `(mask, label)`), a key (dicts, `ModelOutput`), or a
            function of the raw output.

    Returns:
        The logits tensor.

    Raises:
        TypeError: the output is something else, or the selection is not a 4-D tensor; the message describes the
            output and names the fix.
    """
    if callable(selector):
        value = selector(raw)
    elif selector is not None:
        try:
            value = raw[selector]
        except (TypeError, KeyError, IndexError) as e:
            raise TypeError(f"output={selector!r} does not select from {describe_output(raw)}: {e}") from None
    elif isinstance(raw, Tensor):
        value = raw
    elif isinstance(raw, Mapping) and ("out" in raw or "logits" in raw):
        value = raw["out"] if "out" in raw else raw["logits"]
    else:
        hint = "output=0 (the entry index)" if isinstance(raw, (list, tuple)) else "output='key' or a function"
        raise TypeError(
            f"the wrapped model returned {describe_output(raw)}, not segmentation logits; SBCB reads a tensor, "
            f"{{'out': ...}} / {{'logits': ...}} dicts and transformers ModelOutput; pass {hint} to pick the logits"
        )
    if not isinstance(value, Tensor) or value.ndim != 4:
        raise TypeError(f"the selected model output is {describe_output(value)}, not [B, K, h, w] logits")
    return value


def check_num_classes(logits: Tensor, num_classes: int) -> None:
    """Raise `ValueError` when the model's logits do not have `num_classes` channels."""
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"the model outputs {logits.shape[1]} channels (logits {list(logits.shape)}) but num_classes="
            f"{num_classes}; build the model with {num_classes} classes or pass num_classes={logits.shape[1]}"
        )


def torchvision_aux_loss(raw: Any, masks: Tensor, *, weight: float = 0.5, ignore_index: int = 255) -> dict[str, Tensor]:
    """The loss of a torchvision segmentation model's own auxiliary classifier (`aux_loss=True`).

    torchvision's reference recipe trains it with weight 0.5 (`losses["out"] + 0.5 * losses["aux"]`,
    references/segmentation/train.py). Training it is what lets DistributedDataParallel run without
    `find_unused_parameters`: an output that gets no gradient stalls DDP from the second iteration.

    Args:
        raw: The model's `{"out", "aux"}` output.
        masks: [B, H, W] int64 labels, `ignore_index` = ignore (values outside 0..K-1 must already be mapped to it).
        weight: Loss weight (0 = computed with zero weight, which still gives DDP its gradients).
        ignore_index: Ignored label.

    Returns:
        `{"loss_model_aux": weight * CE}`, or `{}` when the model has no aux output.
    """
    if not isinstance(raw, Mapping) or raw.get("aux") is None:
        return {}
    aux = raw["aux"]
    if aux.shape[-2:] != masks.shape[-2:]:
        aux = F.interpolate(aux, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return {"loss_model_aux": weight * F.cross_entropy(aux.float(), masks.long(), ignore_index=ignore_index)}


__all__ = ["OutputSelector", "check_num_classes", "describe_output", "select_output", "torchvision_aux_loss"]
