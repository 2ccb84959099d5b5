"""Pretrained weights from a local file the user passes; sbcb never downloads anything."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

_SHOW = 8  # how many offending keys an error message lists


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from a `.pth`/`.pt`/`.bin` (torch, weights_only) or `.safetensors` file.

    A checkpoint dict holding the weights under `"state_dict"` or `"model"` is unwrapped.

    Raises:
        FileNotFoundError: the file does not exist (sbcb never downloads weights).
        ValueError: the file holds no tensor dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} not found; sbcb never downloads weights: download them yourself and pass "
            "the local path"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError("reading .safetensors needs the safetensors package: pip install safetensors") from e
        data: Any = load_file(str(path))
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickles with code, truncated files, not a torch file at all
            raise ValueError(f"{str(path)!r} is not a readable torch weights file: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            inner = data[key]
            if inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                data = inner
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{str(path)!r} holds no state_dict (a dict of tensors, possibly under 'state_dict')")
    return dict(data)


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    strip_prefix: str | None = None,
    add_prefix: str | None = None,
) -> nn.Module:
    """Load a local weights file into `model`, with errors that say what does not fit.

    Args:
        model: The module to load into (e.g. a timm backbone, an smp encoder, a stripped segmentor).
        path: Local file.
        strict: Require the keys to match exactly. Shape mismatches are always an error.
        strip_prefix: Remove this prefix from every key that has it (a DDP `"module."` prefix is removed
            automatically when every key has it).
        add_prefix: Prepend this to every key (e.g. `"model."` to load a plain segmentor's weights into `SBCB`).

    Returns:
        `model`, with the weights loaded.

    Raises:
        FileNotFoundError: missing file.
        ValueError: keys or shapes do not fit; the message lists the first offenders and a hint.
    """
    state = read_state_dict(path)
    if strip_prefix is None and all(k.startswith("module.") for k in state):
        strip_prefix = "module."
    if strip_prefix:
        state = {k[len(strip_prefix) :] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    if add_prefix:
        state = {add_prefix + k: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, e.g. {shapes[:_SHOW]}")
    if strict and missing:
        problems.append(f"{len(missing)} model keys missing from the file, e.g. {missing[:_SHOW]}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} file keys unknown to the model, e.g. {unexpected[:_SHOW]}")
    if problems:
        hint = _hint(list(own), list(state))
        raise ValueError(f"weights {str(path)!r} do not fit {type(model).__name__}: " + "; ".join(problems) + hint)
    model.load_state_dict(state, strict=strict)
    return model


def _hint(own: list[str], file: list[str]) -> str:
    if not own or not file:
        return ""
    for k in own:
        for f in file:
            if k != f and k.endswith(f) and k[: -len(f)]:
                return f" (hint: the model's keys carry a prefix {k[: -len(f)]!r}: pass add_prefix={k[: -len(f)]!r})"
            if k != f and f.endswith(k) and f[: -len(k)]:
                return f" (hint: the file's keys carry a prefix {f[: -len(k)]!r}: pass strip_prefix={f[: -len(k)]!r})"
    return ""
