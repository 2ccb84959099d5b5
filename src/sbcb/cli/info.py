"""`sbcb info`: versions of sbcb and its (optional) dependencies, and the available devices."""

from __future__ import annotations

import argparse
import importlib
import platform


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return subparsers.add_parser("info", help="print versions of sbcb, torch, timm, smp, OpenCV and the devices")


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # torchvision raises RuntimeError, not ImportError, when mismatched with torch
        return f"not available ({type(e).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def run(args: argparse.Namespace) -> int:
    import torch

    import sbcb

    rows = [
        ("sbcb", sbcb.__version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("torchvision", _version("torchvision")),
        ("timm", _version("timm")),
        ("segmentation_models_pytorch", _version("segmentation_models_pytorch")),
        ("opencv (cv2)", _version("cv2")),
        ("numpy", _version("numpy")),
        ("scipy", _version("scipy")),
        ("numba", _version("numba")),
        ("onnxruntime", _version("onnxruntime")),
        ("cuda available", str(torch.cuda.is_available())),
        ("cuda devices", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "-"),
        ("torch threads", str(torch.get_num_threads())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
