"""What a wrapped model returns, reduced to segmentation logits; checks on the result.

Models return logits in many shapes: a tensor (smp, timm-based user models), torchvision's `{"out", "aux"}`, a
`{"logits"}` dict or transformers `ModelOutput`, or a tuple (smp with `aux_params` returns `(mask, label)`).
`select_output` turns any of these into the [B, K, h, w] logits, with an explicit `selector` (the wrapper's
`output=` option) for tuples and other containers, and an error naming the type otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

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


def check_num_classes(logits: Tensor, num_classes: int, *, model: str = "the model") -> None:
    """Raise `ValueError` when the model's logits do not have `num_classes` channels (one line naming both)."""
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"{model} outputs {logits.shape[1]} classes (logits {list(logits.shape)}) but num_classes={num_classes}; "
            f"build the model with {num_classes} classes or pass num_classes={logits.shape[1]}"
        )


def default_selector(model: nn.Module) -> OutputSelector:
    """The `output=` a model needs by default: `0` for smp models built with `aux_params` (`(mask, label)`)."""
    if type(model).__module__.startswith("segmentation_models_pytorch"):
        if getattr(model, "classification_head", None) is not None:
            return 0
    return None


def upsamples_logits(model: nn.Module) -> bool:
    """True for models whose logits are below the input resolution and whose own post-processing resizes them:
    the transformers segmentation models (Segformer at 1/4, MobileViT at 1/32; see `sbcb.adapters.transformers`)."""
    from sbcb.adapters.transformers import is_transformers_segmentation_model

    return is_transformers_segmentation_model(model)


# torchvision's reference segmentation recipe weighs its auxiliary classifier's loss by 0.5:
# `return losses["out"] + 0.5 * losses["aux"]` in `criterion` of references/segmentation/train.py.
TORCHVISION_AUX_WEIGHT = 0.5


def has_torchvision_aux(model: nn.Module) -> bool:
    """True for a torchvision FCN / DeepLabV3 built with `aux_loss=True` (its output has an `"aux"` entry)."""
    return (
        type(model).__module__.startswith("torchvision.models.segmentation")
        and getattr(model, "aux_classifier", None) is not None
    )


__all__ = [
    "TORCHVISION_AUX_WEIGHT",
    "OutputSelector",
    "check_num_classes",
    "default_selector",
    "describe_output",
    "has_torchvision_aux",
    "select_output",
    "upsamples_logits",
]
