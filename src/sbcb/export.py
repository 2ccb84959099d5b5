"""Export: strip the SBD head, then write a stripped checkpoint, TorchScript and/or ONNX, each verified.

The deployable model is `SBCB.strip()`: the user's segmentor with exactly the baseline's parameters. ONNX has a
dynamic batch, height and width; the export is checked in onnxruntime against the stripped PyTorch model on a
sample (and on a second, different shape, to prove the dynamic axes), and the graph is checked to contain no
node of the wrapper's SBD/auxiliary heads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sbcb.models import check_allowed, model_spec, strip_model, stripped_kwargs
from sbcb.train.checkpoint import FORMAT, atomic_save, load_checkpoint, model_from_checkpoint, versions


@dataclass
class ExportReport:
    """What `export_checkpoint` wrote and measured."""

    stripped_checkpoint: Path | None = None
    torchscript: Path | None = None
    onnx: Path | None = None
    num_params: int = 0
    num_params_with_head: int = 0
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # "torchscript"/"onnx" @ shape -> max |diff|
    onnx_head_nodes: int = 0


def load_stripped(path: str | os.PathLike, *, allow_custom: bool = False) -> tuple[nn.Module, dict[str, Any], int]:
    """(stripped segmentor in eval mode, its `build_model` kwargs, parameter count of the unstripped model)."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, source=path, allow_custom=allow_custom)
    kwargs = check_allowed(ckpt["model"], allow_custom=allow_custom)
    full_params = sum(p.numel() for p in model.parameters())
    return strip_model(model).eval(), stripped_kwargs(kwargs), full_params


def save_stripped_checkpoint(
    model: nn.Module, kwargs: dict[str, Any], path: str | os.PathLike, *, source: dict[str, Any] | None = None
) -> Path:
    """A checkpoint of the stripped model that `sbcb.train.load_model` rebuilds without the SBCB wrapper."""
    source = source or {}
    ckpt = {
        "format": FORMAT,
        "model": model_spec(kwargs),
        "state_dict": model.state_dict(),
        "optimizer": None,
        "step": int(source.get("step", 0)),
        "config": dict(source.get("config") or {}),
        "stripped": True,
        "versions": versions(),
    }
    return atomic_save(ckpt, path)


def _max_diff(a: Any, b: torch.Tensor) -> float:
    return float((torch.as_tensor(a).float() - b.float()).abs().max())


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    sample: torch.Tensor,
    *,
    opset: int = 17,
) -> Path:
    """ONNX with input ``image`` [B, 3, H, W] and output ``logits`` [B, K, H', W'], batch/height/width dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dyn = {0: "batch", 2: "height", 3: "width"}
    import warnings

    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but needs no onnxscript and handles smp models well.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, sample, path, dyn, opset)
    return path


def _export(model: nn.Module, sample: torch.Tensor, path: Path, dyn: dict, opset: int) -> None:
    torch.onnx.export(
        model,
        (sample,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": dyn, "logits": dyn},
        opset_version=opset,
        dynamo=False,
    )


def onnx_head_nodes(path: str | os.PathLike) -> list[str]:
    """Names of ONNX nodes that come from the SBCB wrapper's ``head`` / ``aux_head`` modules (should be none)."""
    import onnx

    graph = onnx.load(str(path)).graph
    prefixes = ("/head/", "/aux_head/", "/model/")  # "/model/" would mean the wrapper itself was exported
    return [n.name for n in graph.node if n.name.startswith(prefixes)]


def run_onnx(path: str | os.PathLike, images: torch.Tensor) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError('checking an ONNX export needs onnxruntime: pip install "sbcb[onnx]"') from e
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images.cpu().numpy()})[0]


def export_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    onnx: str | os.PathLike | None = None,
    torchscript: str | os.PathLike | None = None,
    stripped: str | os.PathLike | None = None,
    size: Sequence[int] = (256, 512),
    opset: int = 17,
    check: bool = True,
    allow_custom: bool = False,
) -> ExportReport:
    """Strip a training checkpoint and export it.

    Args:
        checkpoint: From `sbcb train` (with or without head) or an already stripped one.
        onnx: Output ``.onnx`` path (needs the onnx extra).
        torchscript: Output TorchScript path (traced).
        stripped: Output path of a stripped checkpoint.
        size: (H, W) of the sample used to trace and check (a multiple of the model's output stride).
        opset: ONNX opset.
        check: Compare each export with the stripped PyTorch model on the sample and on a second shape
            (batch 2, (H + 32, W - 32)).

    Returns:
        An `ExportReport`; ``max_abs_diff`` maps e.g. ``"onnx 1x3x256x512"`` to the max |difference| of logits.
    """
    model, kwargs, full_params = load_stripped(checkpoint, allow_custom=allow_custom)
    report = ExportReport(num_params=sum(p.numel() for p in model.parameters()), num_params_with_head=full_params)
    h, w = int(size[0]), int(size[1])
    gen = torch.Generator().manual_seed(0)
    samples = [torch.randn(1, 3, h, w, generator=gen)]
    if check:
        samples.append(torch.randn(2, 3, h + 32, max(32, w - 32), generator=gen))
    with torch.no_grad():
        refs = [model(x) for x in samples]

    if stripped is not None:
        report.stripped_checkpoint = save_stripped_checkpoint(
            model, kwargs, stripped, source=load_checkpoint(checkpoint)
        )
    if torchscript is not None:
        with torch.no_grad():
            traced = torch.jit.trace(model, samples[0], check_trace=False)
        path = Path(torchscript)
        path.parent.mkdir(parents=True, exist_ok=True)
        traced.save(str(path))
        report.torchscript = path
        if check:
            loaded = torch.jit.load(str(path))
            with torch.no_grad():
                for x, ref in zip(samples, refs):
                    key = "torchscript " + "x".join(map(str, x.shape))
                    report.max_abs_diff[key] = _max_diff(loaded(x), ref)
    if onnx is not None:
        with torch.no_grad():
            report.onnx = export_onnx(model, onnx, samples[0], opset=opset)
        report.onnx_head_nodes = len(onnx_head_nodes(report.onnx))
        if check:
            for x, ref in zip(samples, refs):
                key = "onnx " + "x".join(map(str, x.shape))
                report.max_abs_diff[key] = _max_diff(run_onnx(report.onnx, x), ref)
    return report
