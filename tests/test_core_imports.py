"""The core (boundaries, heads, losses, wrapper, metrics, features) must not import optional heavy packages."""

import subprocess
import sys

CORE = ["sbcb", "sbcb.boundaries", "sbcb.heads", "sbcb.losses", "sbcb.wrapper", "sbcb.features", "sbcb.metrics"]
OPTIONAL = ["timm", "segmentation_models_pytorch", "torchvision", "lightning", "matplotlib", "onnx"]
# numba is an optional accelerator the core may import inside a try (with a pure-numpy fallback), so it is allowed.


def test_core_imports_no_optional_dependency():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"core imported optional packages: {proc.stdout.strip()}"
