"""sbcb: Semantic Boundary Conditioned Backbones.

Train any segmentation model with an auxiliary semantic-boundary-detection head attached to its backbone, then
strip the head so the deployed model is exactly the baseline. The package root stays light: heavy submodules are
imported on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it (imported lazily so `import sbcb` stays cheap)
_LAZY = {
    "SBCB": "sbcb.wrapper",
    "Segmentor": "sbcb.segmentor",
    "mask_to_boundaries": "sbcb.boundaries",
    "mask_to_boundaries_torch": "sbcb.boundaries",
    "boundaries_to_binary": "sbcb.boundaries",
    "CASENetHead": "sbcb.heads",
    "DFFHead": "sbcb.heads",
    "DDSHead": "sbcb.heads",
    "from_pretrained": "sbcb.pretrained",
    "save_pretrained": "sbcb.pretrained",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbcb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
