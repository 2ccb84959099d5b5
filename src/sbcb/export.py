"""Export: strip the SBD head, then write a stripped checkpoint, TorchScript and/or ONNX, each verified.

The deployable model is `SBCB.strip()`: the user's segmentor with exactly the baseline's parameters. `export_model`
exports any such model (its logits picked by `sbcb.adapters.outputs.select_output`, so torchvision dicts,
transformers `ModelOutput` and smp `(mask, label)` tuples export as one ``logits`` output).

ONNX has a dynamic batch and, where the model allows it, dynamic height and width. Whether it does is found by
trying: the graph is exported with dynamic axes and run in onnxruntime on the sample and on a second shape the
PyTorch model accepts; when the export fails (smp PSPNet: ``adaptive_avg_pool2d`` needs a static size) or the
graph does not reproduce PyTorch at the second shape (sizes baked in as constants), it is exported again with the
sample's height and width fixed (`ExportReport.onnx_dynamic_hw`, `onnx_note`). The graph is checked to contain no
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
    onnx_dynamic_hw: bool | None = None  # None: no ONNX written
    onnx_note: str = ""  # why height/width are fixed, or which shapes were checked


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
    dynamic_hw: bool = True,
    exporter: str = "torchscript",
) -> Path:
    """ONNX with input ``image`` [B, C, H, W] and output ``logits`` [B, K, H', W']; batch dynamic, H/W optionally.

    Args:
        exporter: ``"torchscript"`` (torch's tracing exporter, needs no onnxscript) or ``"dynamo"`` (torch.export
            based; exports what the tracer cannot, e.g. adaptive pooling to sizes that do not divide the input,
            antialiased resizing; opset >= 18).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dyn = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    import warnings

    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated but needs no onnxscript and handles smp models well.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape-dependent Python code: checked by running
        if exporter == "dynamo":
            warnings.simplefilter("ignore", UserWarning)
            _export_dynamo(model, sample, path, dyn, max(opset, 18))
        else:
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


def _export_dynamo(model: nn.Module, sample: torch.Tensor, path: Path, dyn: dict, opset: int) -> None:
    import contextlib
    import io

    dims = {i: torch.export.Dim.AUTO for i in dyn}
    if sample.shape[0] == 1:  # torch.export specialises a size-1 dimension to a constant: trace a batch of 2
        sample = sample.repeat(2, 1, 1, 1)
    with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints its progress
        program = torch.onnx.export(
            model,
            (sample,),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=(dims,),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
        program.save(str(path))


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


class LogitsOnly(nn.Module):
    """`model` with its forward reduced to the logits tensor (for tracing models that return dicts or tuples)."""

    def __init__(self, model: nn.Module, output: Any = None) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from sbcb.adapters.outputs import select_output

        return select_output(self.model(images), self.output)


def _runs(model: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            model(x)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not a shape this model takes"
        return False


def second_shape(model: nn.Module, sample: torch.Tensor) -> torch.Tensor | None:
    """A batch-2 input of another height/width that `model` accepts, or None (a fixed-size model).

    Tried in order: (H + 32, W - 32), (2H, W), (H, 2W), (2H, 2W) (pooling pyramids such as smp PAN need sizes
    divisible by their deepest pooling; doubling keeps that).
    """
    _, c, h, w = sample.shape
    gen = torch.Generator().manual_seed(1)
    for hh, ww in ((h + 32, max(32, w - 32)), (2 * h, w), (h, 2 * w), (2 * h, 2 * w)):
        x = torch.randn(2, c, hh, ww, generator=gen, dtype=sample.dtype)
        if _runs(model, x):
            return x
    return None


def export_model(
    model: nn.Module,
    *,
    size: Sequence[int],
    onnx: str | os.PathLike | None = None,
    torchscript: str | os.PathLike | None = None,
    in_chans: int = 3,
    output: Any = None,
    opset: int = 17,
    check: bool = True,
    tolerance: float = 1e-3,
) -> ExportReport:
    """Export a (stripped) segmentation model to ONNX and/or TorchScript, each compared with PyTorch.

    Args:
        model: The plain segmentor (e.g. `SBCB.strip()`); put in eval mode.
        size: (H, W) of the sample: the model's training size.
        onnx: Output ``.onnx`` path (needs the onnx extra).
        torchscript: Output TorchScript path (traced).
        in_chans: Input channels.
        output: Selector of the logits in the model's output (see `sbcb.adapters.outputs.select_output`).
        opset: ONNX opset.
        check: Compare each export with PyTorch on the sample, on a batch of 2 at the same size and, when the model
            takes one, at another size (see `second_shape`; not for an ONNX graph with fixed height/width).
        tolerance: Max |difference| of logits accepted before ONNX falls back to a fixed height/width.

    Returns:
        An `ExportReport`; ``max_abs_diff`` maps e.g. ``"onnx 1x3x256x512"`` to the max |difference| of logits.
    """
    model = model.eval()
    with torch.no_grad():
        x0 = torch.randn(1, in_chans, int(size[0]), int(size[1]), generator=torch.Generator().manual_seed(0))
        raw_ok = isinstance(model(x0), torch.Tensor) and output is None
    net = model if raw_ok else LogitsOnly(model, output).eval()
    report = ExportReport(num_params=sum(p.numel() for p in model.parameters()))
    samples = [x0]
    if check:  # batch 2 at the sample's size (every exported graph must take it), then another size if any
        samples.append(torch.randn(2, *x0.shape[1:], generator=torch.Generator().manual_seed(2)))
        x1 = second_shape(net, x0)
        if x1 is not None:
            samples.append(x1)
    with torch.no_grad():
        refs = [net(x) for x in samples]

    def key(kind: str, x: torch.Tensor) -> str:
        return f"{kind} " + "x".join(map(str, x.shape))

    if torchscript is not None:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(net, x0, check_trace=False, strict=False)
        path = Path(torchscript)
        path.parent.mkdir(parents=True, exist_ok=True)
        traced.save(str(path))
        report.torchscript = path
        if check:
            loaded = torch.jit.load(str(path))
            with torch.no_grad():
                for x, ref in zip(samples, refs):
                    try:
                        report.max_abs_diff[key("torchscript", x)] = _max_diff(loaded(x), ref)
                    except Exception:  # noqa: BLE001 - a trace with sizes baked in fails at another size
                        report.max_abs_diff[key("torchscript", x)] = float("inf")
    if onnx is not None:
        report.onnx, report.onnx_dynamic_hw, report.onnx_note = _export_onnx_checked(
            net, Path(onnx), samples, refs, opset=opset, check=check, tolerance=tolerance
        )
        report.onnx_head_nodes = len(onnx_head_nodes(report.onnx))
        if check:
            for x, ref in zip(samples, refs):
                if report.onnx_dynamic_hw or x.shape[-2:] == x0.shape[-2:]:
                    report.max_abs_diff[key("onnx", x)] = _max_diff(run_onnx(report.onnx, x), ref)
    return report


def _export_onnx_checked(
    net: nn.Module,
    path: Path,
    samples: list[torch.Tensor],
    refs: list[torch.Tensor],
    *,
    opset: int,
    check: bool,
    tolerance: float,
) -> tuple[Path, bool, str]:
    """The first of (tracing, dynamic H/W), (dynamo, dynamic), (tracing, fixed), (dynamo, fixed) that exports and
    reproduces PyTorch on every sample it can take (fixed H/W: the samples of the first sample's size)."""
    h, w = samples[0].shape[-2:]
    reasons: list[str] = []
    for dynamic_hw in (True, False):
        for exporter in ("torchscript", "dynamo"):
            pairs = [(x, r) for x, r in zip(samples, refs) if dynamic_hw or x.shape[-2:] == (h, w)]
            try:
                with torch.no_grad():
                    export_onnx(net, path, samples[0], opset=opset, dynamic_hw=dynamic_hw, exporter=exporter)
            except Exception as e:  # noqa: BLE001 - e.g. adaptive pooling to a size that does not divide the input
                reasons.append(f"{exporter}: {str(e).splitlines()[0][:70] if str(e) else type(e).__name__}")
                continue
            failure = _parity_failure(path, pairs, tolerance) if check else ""
            if not failure:
                shapes = ", ".join("x".join(map(str, x.shape)) for x, _ in pairs)
                what = "dynamic height/width" if dynamic_hw else f"height/width fixed at {h}x{w}"
                why = f"; dynamic H/W failed ({'; '.join(reasons)})" if reasons and not dynamic_hw else ""
                return path, dynamic_hw, f"{what} ({exporter} exporter, checked at {shapes}){why}"
            reasons.append(f"{exporter}: {failure}")
    raise RuntimeError(f"ONNX export failed: {'; '.join(reasons)}")


def _parity_failure(path: Path, pairs: list[tuple[torch.Tensor, torch.Tensor]], tolerance: float) -> str:
    for x, ref in pairs:
        try:
            got = run_onnx(path, x)
        except Exception as e:  # noqa: BLE001 - onnxruntime rejects the shape
            return f"onnxruntime fails at {tuple(x.shape)} ({str(e).splitlines()[0][:60]})"
        if tuple(got.shape) != tuple(ref.shape):
            return f"output {tuple(got.shape)} instead of {tuple(ref.shape)} at {tuple(x.shape)}"
        diff = _max_diff(got, ref)
        if diff > tolerance:
            return f"differs from PyTorch by {diff:.3g} at {tuple(x.shape)}"
    return ""


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
    tolerance: float = 1e-3,
) -> ExportReport:
    """Strip a training checkpoint and export it (see `export_model`).

    Args:
        checkpoint: From `sbcb train` (with or without head) or an already stripped one.
        onnx: Output ``.onnx`` path (needs the onnx extra).
        torchscript: Output TorchScript path (traced).
        stripped: Output path of a stripped checkpoint.
        size: (H, W) of the sample used to trace and check: the training crop.
        opset: ONNX opset.
        check: Compare each export with the stripped PyTorch model on the sample and on a second shape the
            model accepts (batch 2; see `second_shape`).
        tolerance: See `export_model`.

    Returns:
        An `ExportReport`; ``max_abs_diff`` maps e.g. ``"onnx 1x3x256x512"`` to the max |difference| of logits.
    """
    model, kwargs, full_params = load_stripped(checkpoint, allow_custom=allow_custom)
    report = ExportReport()
    if stripped is not None:
        report.stripped_checkpoint = save_stripped_checkpoint(
            model, kwargs, stripped, source=load_checkpoint(checkpoint)
        )
    if onnx is not None or torchscript is not None:
        exported = export_model(
            model, size=size, onnx=onnx, torchscript=torchscript, opset=opset, check=check, tolerance=tolerance
        )
        exported.stripped_checkpoint = report.stripped_checkpoint
        report = exported
    report.num_params = sum(p.numel() for p in model.parameters())
    report.num_params_with_head = full_params
    return report
