"""The flat registry of sbcb's own segmentation models, for strings from the CLI, YAML and checkpoints.

Python users call the factory functions directly (`sbcb.models.bisenet.bisenetv1(...)`); the registry exists only
where a name comes in as a string. Each factory is a plain function registered with `@register_model("name")` and
called as ``factory(num_classes=K, encoder=..., output_stride=..., **kwargs)``; a factory that takes no encoder or
output stride raises `ValueError` when one is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[F], F]:
    """Register a model factory under `name` (lower case, as typed after ``--arch``).

    Raises:
        ValueError: If `name` is already registered.
    """

    def add(factory: F) -> F:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice ({MODELS[name].__module__} and {factory.__module__})")
        MODELS[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    """The registered sbcb model names, sorted."""
    return sorted(MODELS)


def check_fixed_options(
    model: str, *, encoder: str | None = None, output_stride: int | None = None, own_backbone: bool = True
) -> None:
    """Refuse the registry options a d32 real-time model fixes (BiSeNet, STDC): an output stride other than 32 and,
    for a model with `own_backbone`, any `encoder`.

    Raises:
        ValueError: Naming `model` and the refused option.
    """
    if own_backbone and encoder is not None:
        raise ValueError(f"{model} has its own backbone; leave encoder unset (got {encoder!r})")
    if output_stride not in (None, 32):
        raise ValueError(f"{model} has output stride 32 only, got output_stride={output_stride}")
