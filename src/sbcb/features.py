"""Backbone feature taps: which intermediate feature maps a model exposes, and how to read them.

A *tap* reads one feature map out of an unmodified model while its ordinary forward runs: a forward hook on a named
submodule stores that module's output. `FeatureInfo` says which module, which entry of its output, and how to turn it
into an NCHW tensor; `FeatureTaps` registers the hooks only for the duration of one forward, so the model carries no
hook outside a `capture()` block and its segmentation forward is exactly the user's.

Channels and strides are never typed by hand: adapters read them from the backbone's own feature spec and
`probe_features` measures them with one dry-run forward.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """One tappable feature map.

    Args:
        num_chs: Channels C of the NCHW feature (after `concat_branches`; 0 = not measured yet).
        reduction: Input size / feature size (the stride), e.g. 2 for the ResNet stem (0 = not measured yet).
        module: Dotted name of the submodule whose forward output carries the feature (`""` = the model itself).
        index: Entry of that output to take when it is a list, tuple, dict or `ModelOutput`; `None` = the output
            itself; a tuple (or JSON list) is a path into nested outputs, e.g. `("feature_maps", 2)` for a
            transformers `BackboneOutput` or `(0, 3)` for smp's ViT encoder `(features, prefix_tokens)`.
        channels_last: The tensor is NHWC (e.g. timm Swin stages) and is permuted to NCHW. `None` = not declared:
            the probe decides from the shape (NHWC when the last dimension, not the second, equals `num_chs`).
        concat_branches: The output is a list of multi-resolution branches (HRNet stages): every branch is
            bilinearly resized to the first branch's size and the branches are concatenated on channels.
    """

    num_chs: int
    reduction: int
    module: str
    index: int | str | None = None
    channels_last: bool | None = None
    concat_branches: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.index, list):  # a path read back from a JSON config
            object.__setattr__(self, "index", tuple(self.index))

    @property
    def name(self) -> str:
        """Readable label, e.g. `"layer1"`, `"encoder[2]"` or `"backbone[feature_maps][2]"`."""
        base = self.module or "<model>"
        if self.index is None:
            return base
        path = self.index if isinstance(self.index, tuple) else (self.index,)
        return base + "".join(f"[{k}]" for k in path)


def take_entry(output: Any, index: Any) -> Any:
    """`output[index]`, following a tuple `index` as a path; errors name what was found instead.

    Raises:
        TypeError: an entry is taken from something that is not a list, tuple, dict or `ModelOutput`.
    """
    path = index if isinstance(index, tuple) else (index,)
    value = output
    for key in path:
        # transformers' ModelOutput is an OrderedDict; dict covers it without importing transformers
        if not isinstance(value, (list, tuple, dict)):
            raise TypeError(f"module output is {type(value).__name__}, cannot take entry {key!r} (path {index!r})")
        value = value[key]
    return value


def feature_to_nchw(output: Any, info: FeatureInfo) -> torch.Tensor:
    """Turn a tapped module output into the NCHW feature described by `info`.

    Args:
        output: What the module's forward returned (tensor, or list/tuple/dict of tensors).
        info: The tap description.

    Returns:
        Float tensor [B, C, h, w].

    Raises:
        TypeError: the output does not have the structure `info` describes.
    """
    value = output
    if info.index is not None:
        try:
            value = take_entry(value, info.index)
        except TypeError as e:
            raise TypeError(f"tap {info.name}: {e}") from None
    if info.concat_branches:
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in value):
            raise TypeError(f"tap {info.name}: concat_branches needs a list of tensors, got {type(value).__name__}")
        size = value[0].shape[-2:]
        # HRNet rule (paper Fig. 7): every branch resized to the highest-resolution branch, then concatenated.
        value = torch.cat(
            [value[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in value[1:]], dim=1
        )
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        what = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a {value.ndim}-D tensor"
        raise TypeError(
            f"tap {info.name}: expected a 4-D feature map, got {what}; pick a module that returns [B, C, h, w] "
            "(or a list of branch maps), or pass a FeatureInfo with `index`"
        )
    if info.channels_last:
        value = value.permute(0, 3, 1, 2)
    return value


class FeatureTaps:
    """Forward hooks that collect the features listed in `infos` during one forward of `model`.

    Hooks exist only inside `capture()`, and modules are looked up by name at that moment (so replacing a submodule,
    e.g. by SyncBatchNorm conversion, is fine). Each tapped module must run exactly once per forward.

    Example:
        >>> taps = FeatureTaps(model, infos)
        >>> with taps.capture() as grab:
        ...     logits = model(images)
        >>> features = grab()  # list of [B, C_i, h_i, w_i], in the order of `infos`
    """

    def __init__(self, model: nn.Module, infos: Sequence[FeatureInfo]) -> None:
        self.model = model
        self.infos = list(infos)
        self.module_names = list(dict.fromkeys(info.module for info in self.infos))
        for name in self.module_names:
            resolve_module(model, name)  # fail early on a bad name
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def active(self) -> bool:
        """True while hooks are registered (inside `capture()`)."""
        return bool(self._handles)

    @contextlib.contextmanager
    def capture(self) -> Iterator[Captured]:
        """Register the hooks for one forward; yields a `Captured` (call it for the NCHW features)."""
        if self._handles:
            raise RuntimeError("FeatureTaps.capture() is not re-entrant")
        captured = Captured(self.infos, {name: [] for name in self.module_names})

        def make_hook(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                captured.outputs[name].append(output)

            return hook

        try:
            for name in self.module_names:
                module = resolve_module(self.model, name)
                self._handles.append(module.register_forward_hook(make_hook(name)))
            yield captured
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []


class Captured:
    """Raw module outputs recorded by `FeatureTaps.capture()`; calling it returns the NCHW features."""

    def __init__(self, infos: list[FeatureInfo], outputs: dict[str, list[Any]]) -> None:
        self.infos = infos
        self.outputs = outputs

    def output(self, module: str) -> Any:
        """The single forward output of the tapped module `module`."""
        seen = self.outputs[module]
        if len(seen) != 1:
            raise RuntimeError(
                f"tapped module {module or '<model>'!r} ran {len(seen)} times in one forward; a tap needs a module "
                "that runs exactly once per forward (a stage or block, not a shared activation)"
            )
        return seen[0]

    def __call__(self) -> list[torch.Tensor]:
        return [feature_to_nchw(self.output(info.module), info) for info in self.infos]


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """`model.get_submodule(name)` with an error that lists nearby names.

    Raises:
        ValueError: no submodule of that name.
    """
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n and n.count(".") <= 1][:40]
        raise ValueError(
            f"{type(model).__name__} has no submodule {name!r}; some valid names: {', '.join(names)}"
        ) from None


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the first parameter (CPU / float32 for a parameter-free model)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@torch.no_grad()
def probe_features(
    model: nn.Module,
    infos: Sequence[FeatureInfo],
    *,
    input_size: tuple[int, int] = (128, 128),
    in_chans: int = 3,
) -> list[FeatureInfo]:
    """Measure channels, strides and layout of the taps with one dry-run forward.

    The model runs in eval mode under `no_grad` (so BatchNorm statistics are untouched) and its train/eval flags are
    restored afterwards. An entry whose `num_chs` is set is checked against the measurement. The layout is the
    declared `channels_last` when given; otherwise an NHWC tensor is recognised when its last dimension, not its
    second, equals `num_chs` (with a warning when a square map's width also equals it).

    Args:
        model: The unmodified model.
        infos: Taps to measure; `num_chs`/`reduction` may be 0 (unknown).
        input_size: (H, W) of the random probe image, in pixels; use a multiple of the largest stride.
        in_chans: Input channels of the model.

    Returns:
        New FeatureInfo list with measured `num_chs` and `reduction` (= round(H / h)) and `channels_last` set.

    Raises:
        ValueError: a measured channel count contradicts the declared one.
    """
    device, dtype = model_device_dtype(model)
    modes = {m: m.training for m in model.modules()}
    taps = FeatureTaps(model, infos)
    try:
        model.eval()
        x = torch.randn(1, in_chans, *input_size, device=device, dtype=dtype)
        with taps.capture() as grab:
            model(x)
        raw = [grab.output(info.module) for info in infos]
    finally:
        for m, mode in modes.items():
            m.training = mode
    result = []
    for info, out in zip(infos, raw):
        if info.index is not None and isinstance(out, (list, tuple, dict)):
            out = take_entry(out, info.index)
        # a list of maps (an HRNet stage's branches) is resized to its first branch and concatenated
        concat = info.concat_branches or (
            isinstance(out, (list, tuple)) and len(out) > 0 and all(isinstance(t, torch.Tensor) for t in out)
        )
        info = dataclasses.replace(info, concat_branches=concat)
        f = feature_to_nchw(out, dataclasses.replace(info, index=None, channels_last=False))
        channels_last = info.channels_last
        if info.num_chs and channels_last is None and f.shape[-1] == info.num_chs:
            if f.shape[1] != info.num_chs:
                channels_last = True  # NHWC output (timm Swin-style stages)
            elif f.shape[-2] == f.shape[-1]:  # [B, C, h, h] and [B, h, h, C] look alike when h == C
                warnings.warn(
                    f"tap {info.name}: shape {tuple(f.shape)} reads as NCHW or NHWC ({info.num_chs} channels, "
                    "square map); assuming NCHW. Give a FeatureInfo with channels_last=True if it is NHWC, or "
                    "probe at a size where the map's width differs from its channels.",
                    stacklevel=2,
                )
        channels_last = bool(channels_last)
        if channels_last:
            f = f.permute(0, 3, 1, 2)
        if info.num_chs and f.shape[1] != info.num_chs:
            raise ValueError(
                f"tap {info.name}: declared {info.num_chs} channels but the probe gave shape {tuple(f.shape)}"
            )
        reduction = max(1, round(input_size[0] / f.shape[-2]))
        result.append(
            dataclasses.replace(info, num_chs=int(f.shape[1]), reduction=reduction, channels_last=channels_last)
        )
    return result


def default_sides(levels: Sequence[FeatureInfo], *, all_levels: bool = False) -> list[FeatureInfo]:
    """Pick the SBD sides from a backbone's levels (spec §5.1, paper §3.2).

    Five levels (a stride-2 feature + four stages, e.g. ResNet): levels 1, 2, 3 and 5, i.e. all but the penultimate
    (the paper's 1+2+3+5). Any other count (4-level backbones starting at 1/4, HRNet's stem + 3 stages): all levels.
    `all_levels=True` (DDS) always takes all.

    Args:
        levels: Candidate features, highest resolution first, deepest (semantic) last.
        all_levels: Use every level.

    Returns:
        The selected FeatureInfos in order; the last one is the semantic side.
    """
    levels = list(levels)
    if len(levels) < 2:
        raise ValueError(f"an SBD head needs at least 2 sides, the backbone offers {len(levels)}")
    if all_levels or len(levels) != 5:
        return levels
    return levels[:3] + levels[4:]


def check_sides_order(infos: Sequence[FeatureInfo]) -> None:
    """Check that measured sides run from the highest resolution to the deepest (semantic) one.

    Raises `ValueError` when a side before the semantic one has a smaller stride than the one before it, or the
    semantic side is finer than the first side (e.g. sides given in reverse order),
    and warns when every side has the same stride (a plain ViT: one resolution, so the SBD head cannot use the
    paper's multi-scale sides; see docs/models.md, "ViT-style backbones"). HRNet's sides, all at 1/4 by design
    (branches resize-concatenated), are not warned about.

    Args:
        infos: Measured sides (`reduction` > 0), in the order the head receives them.
    """
    strides = [info.reduction for info in infos]
    # The semantic (last) side may be a fused feature finer than the deepest stage (STDC's FFM at 1/8 after a 1/16
    # stage): only the other sides must be ordered, and the semantic side not finer than the first.
    bad = any(strides[i] < strides[i - 1] for i in range(1, len(strides) - 1))
    if bad or (len(strides) > 1 and strides[-1] < strides[0]):
        order = ", ".join(f"{info.name} 1/{info.reduction}" for info in infos)
        raise ValueError(
            f"sides must go from the highest resolution to the deepest (semantic) side, got {order}; "
            "reorder `sides` (e.g. reverse the list)"
        )
    if len(set(strides)) == 1 and len(strides) > 1 and not any(info.concat_branches for info in infos):
        warnings.warn(
            f"every SBD side has the same stride 1/{strides[0]} ({', '.join(info.name for info in infos)}): a "
            "single-scale (ViT-style) backbone gives the boundary head no high-resolution side. Tap a multi-scale "
            "neck instead (DPT's reassemble layers) or use a hierarchical backbone; see docs/models.md, "
            "'ViT-style backbones'.",
            stacklevel=2,
        )


def describe_sides(infos: Sequence[FeatureInfo], *, source: str = "") -> str:
    """One readable line naming the chosen sides, e.g. for a log.

    Example: `"sbcb sides (generic probe): 0.relu 16ch@1/2, 3 32ch@1/4, 6 64ch@1/8 | semantic: 9 128ch@1/16"`.
    """
    parts = [f"{info.name} {info.num_chs}ch@1/{info.reduction}" for info in infos]
    head = f"sbcb sides ({source})" if source else "sbcb sides"
    return f"{head}: {', '.join(parts[:-1])} | semantic: {parts[-1]}; override with sides=[...]"
