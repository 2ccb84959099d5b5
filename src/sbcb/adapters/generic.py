"""Generic side discovery for models no adapter knows: one probe forward records every module's output resolution.

The paper's rule (spec §5.1, P§3.2) is applied to what the probe saw:
- every submodule that returns one 4-D map [B, C, h, w] whose size scales with the input (checked with a second
  probe at another size when the model accepts one, which drops adaptive-pooling branches) and that runs exactly
  once per forward is a candidate, in the order the modules *finish* (a container finishes after its children);
- the encoder path is the run of candidates whose stride never decreases; it ends where the resolution first goes
  up again (a decoder, or the final upsampling);
- trailing maps with the model output's K channels (a classifier on the deepest map) are not encoder levels;
- one level per stride: the last module at that stride (so a stage rather than a block inside it, and the stem after
  its activation), highest resolution first; the deepest is the semantic side.

`SBCB(model, num_classes=K)` falls back to this when no adapter recognises the model; `describe_sides` prints the
choice in one line, and `sides=[...]` overrides it. Input channels and a usable probe size come from
`infer_input_spec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sbcb.features import FeatureInfo, model_device_dtype


@dataclass(frozen=True)
class ModuleRecord:
    """What the probe saw of one submodule.

    Args:
        name: Dotted name in the model.
        calls: How many times it ran in one forward.
        shape: Output shape when it returned one 4-D tensor (the first call), else None.
        order: Position at which it first finished (0 = first).
        learned: Some module with parameters had finished by then (the map depends on learned weights).
    """

    name: str
    calls: int
    shape: tuple[int, ...] | None
    order: int
    learned: bool


def _first_conv(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None


def _declared_image_size(model: nn.Module) -> tuple[int, int] | None:
    """The fixed input size a model insists on (timm ViT/Swin patch embeddings with `strict_img_size`)."""
    for m in model.modules():
        size = getattr(m, "img_size", None)
        if size is None or not getattr(m, "strict_img_size", False) or getattr(m, "dynamic_img_size", False):
            continue
        if isinstance(size, int):
            return (size, size)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return (int(size[0]), int(size[1]))
    return None


def infer_input_spec(
    model: nn.Module, *, in_chans: int | None = None, probe_size: tuple[int, int] | None = None
) -> tuple[int, tuple[int, int]]:
    """Input channels and a probe size the model can take, read from the model itself.

    - channels: the first `nn.Conv2d`'s `in_channels` (a transformers `config.num_channels` wins when present);
    - size: the size a strict patch embedding demands (timm ViT / Swin built with `img_size`, inside smp too), else
      `probe_size`, else (128, 128) (a multiple of 32, the usual largest stride).

    Explicit values are kept unless the model clearly contradicts them (a probe with them would fail).

    Args:
        model: The unmodified model.
        in_chans: Channels the caller would use (None = unknown).
        probe_size: (H, W) the caller would use (None = unknown).

    Returns:
        (in_chans, (H, W)).
    """
    declared_chans = getattr(getattr(model, "config", None), "num_channels", None)
    if not isinstance(declared_chans, int):
        conv = _first_conv(model)
        declared_chans = conv.in_channels if conv is not None else None
    chans = declared_chans if declared_chans is not None else (in_chans or 3)
    size = _declared_image_size(model) or (tuple(probe_size) if probe_size else (128, 128))
    return int(chans), (int(size[0]), int(size[1]))


@torch.no_grad()
def _eval_forward(model: nn.Module, *, input_size: tuple[int, int], in_chans: int) -> Any:
    device, dtype = model_device_dtype(model)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()  # BatchNorm statistics untouched; train flags restored below
        return model(torch.randn(1, in_chans, *input_size, device=device, dtype=dtype))
    finally:
        for m, mode in modes.items():
            m.training = mode


def probe_output(
    model: nn.Module, *, in_chans: int = 3, input_size: tuple[int, int] = (128, 128)
) -> tuple[Any, int, tuple[int, int]]:
    """One eval-mode forward of a random image, retried with the model's own input spec when it fails.

    When the forward with `in_chans` / `input_size` fails and the model declares others (`infer_input_spec`: first
    conv's channels, a ViT's fixed `img_size`), it is repeated with those.

    Args:
        model: The unmodified model (eval mode under `no_grad` for the probe; its flags are restored).
        in_chans: Input channels to try first.
        input_size: (H, W) to try first.

    Returns:
        (the model's raw output, the channels used, the (H, W) used).

    Raises:
        ValueError: the model rejects both inputs; one line naming `in_chans=` / `probe_size=`.
    """
    size = (int(input_size[0]), int(input_size[1]))
    try:
        return _eval_forward(model, input_size=size, in_chans=in_chans), in_chans, size
    except (RuntimeError, AssertionError, ValueError, TypeError) as first:
        chans, size2 = infer_input_spec(model, in_chans=in_chans, probe_size=size)
        if (chans, size2) != (in_chans, size):
            try:
                return _eval_forward(model, input_size=size2, in_chans=chans), chans, size2
            except (RuntimeError, AssertionError, ValueError, TypeError):
                pass
        reason = str(first).splitlines()[0] if str(first) else ""
        raise ValueError(
            f"the probe forward of {type(model).__name__} with a 1x{in_chans}x{size[0]}x{size[1]} input failed "
            f"({type(first).__name__}: {reason[:200]}); pass in_chans=... / probe_size=(H, W) that the model accepts"
        ) from first


def _is_map(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim == 4 and value.is_floating_point()


@torch.no_grad()
def record_modules(model: nn.Module, *, input_size: tuple[int, int], in_chans: int) -> tuple[list[ModuleRecord], Any]:
    """Run one eval-mode probe forward with a hook on every submodule (train flags restored, BN untouched).

    Returns:
        (records sorted by finishing order, the model's own output).
    """
    device, dtype = model_device_dtype(model)
    calls: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    order: dict[str, int] = {}
    learned: dict[str, bool] = {}
    seen_params = [False]
    owns_params = {n: any(True for _ in m.parameters(recurse=False)) for n, m in model.named_modules()}
    # dropout and identities pass a map through: tapping them would read dropped-out (or duplicate) features
    passthrough = {n for n, m in model.named_modules() if isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd))}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            seen_params[0] |= owns_params[name]
            calls[name] = calls.get(name, 0) + 1
            if name not in order:
                order[name] = len(order)
                shapes[name] = tuple(output.shape) if _is_map(output) else None
                learned[name] = seen_params[0]

        return hook

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n and n not in passthrough]
    try:
        model.eval()
        output = model(torch.randn(1, in_chans, *input_size, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    records = [ModuleRecord(n, calls[n], shapes[n], order[n], learned[n]) for n in order]
    return sorted(records, key=lambda r: r.order), output


def _stride(shape: tuple[int, ...] | None, size: tuple[int, int]) -> int | None:
    """Exact integer stride of a map of `shape` at input `size`, or None (1x1 maps, non-integer or uneven)."""
    if shape is None:
        return None
    h, w = shape[-2], shape[-1]
    if h <= 1 or w <= 1 or size[0] % h or size[1] % w or size[0] // h != size[1] // w:
        return None
    return size[0] // h


def _second_size(size: tuple[int, int]) -> tuple[int, int]:
    # 1.5x, a multiple of 32 when `size` is a multiple of 64 (the default 128 -> 192)
    return (size[0] * 3 // 2, size[1] * 3 // 2)


def generic_levels(
    model: nn.Module, *, input_size: tuple[int, int] = (128, 128), in_chans: int = 3
) -> list[FeatureInfo]:
    """Encoder levels of any model by the paper's rule (see the module docstring), highest resolution first.

    Args:
        model: The unmodified model; its forward maps [B, in_chans, H, W] images to anything.
        input_size: Probe (H, W); a multiple of the model's largest stride.
        in_chans: Input channels.

    Returns:
        One FeatureInfo per stride (measured channels and stride), the semantic side last.

    Raises:
        ValueError: fewer than two levels found; the message names the fix (`sides=`).
    """
    records, output = record_modules(model, input_size=input_size, in_chans=in_chans)
    strides = {r.name: _stride(r.shape, input_size) for r in records}
    try:  # maps whose size does not follow the input (adaptive pooling branches) are not encoder levels
        second = _second_size(input_size)
        again, _ = record_modules(model, input_size=second, in_chans=in_chans)
        strides2 = {r.name: _stride(r.shape, second) for r in again}
        strides = {n: s if s is not None and strides2.get(n) == s else None for n, s in strides.items()}
    except Exception:  # noqa: BLE001 - a fixed-size model rejects the second size: keep the single probe
        pass
    path: list[tuple[ModuleRecord, int]] = []
    deepest = 0
    for r in records:
        s = strides[r.name]
        if s is None or r.calls != 1 or not r.learned:
            continue
        if s < deepest:
            break  # the resolution goes up again: the decoder starts here
        deepest = s
        path.append((r, s))
    k_out = output.shape[1] if _is_map(output) else None
    while len(path) > 1 and k_out is not None and path[-1][0].shape[1] == k_out:  # type: ignore[index]
        path.pop()  # a classifier on the deepest map, not an encoder level
    last_at: dict[int, ModuleRecord] = {}
    for r, s in path:
        last_at[s] = r
    levels = [
        FeatureInfo(int(r.shape[1]), s, r.name, channels_last=False)  # type: ignore[index]
        for s, r in sorted(last_at.items())
    ]
    if len(levels) < 2:
        found = ", ".join(f"{i.module}@1/{i.reduction}" for i in levels) or "none"
        raise ValueError(
            f"could not find an encoder in {type(model).__name__} by probing (levels found: {found}); pass the "
            "tapped submodules explicitly, e.g. SBCB(model, num_classes=K, sides=['stem.act', 'stage1', 'stage2', "
            "'stage4']), highest resolution first and the deepest (semantic) side last"
        )
    return levels


__all__ = ["ModuleRecord", "generic_levels", "infer_input_spec", "probe_output", "record_modules"]
