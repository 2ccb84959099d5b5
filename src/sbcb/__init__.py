"""sbcb: Semantic Boundary Conditioned Backbones.

Train any segmentation model with an auxiliary semantic-boundary-detection head attached to its backbone, then
strip the head so the deployed model is exactly the baseline. The package root stays light: heavy submodules are
imported on first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbcb._lazy import lazy_getattr, lazy_table

__version__ = "0.2.0"

# public name -> module that defines it (imported lazily so `import sbcb` stays cheap)
_LAZY = lazy_table(
    {
        "sbcb.wrapper": ["SBCB"],
        "sbcb.segmentor": ["Segmentor"],
        "sbcb.boundaries": ["mask_to_boundaries", "mask_to_boundaries_torch", "boundaries_to_binary"],
        "sbcb.heads": ["CASENetHead", "DFFHead", "DDSHead"],
        "sbcb.pretrained": ["from_pretrained", "save_pretrained"],
    }
)

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time `__getattr__` imports on first use
    from sbcb.boundaries import boundaries_to_binary as boundaries_to_binary
    from sbcb.boundaries import mask_to_boundaries as mask_to_boundaries
    from sbcb.boundaries import mask_to_boundaries_torch as mask_to_boundaries_torch
    from sbcb.heads import CASENetHead as CASENetHead
    from sbcb.heads import DDSHead as DDSHead
    from sbcb.heads import DFFHead as DFFHead
    from sbcb.pretrained import from_pretrained as from_pretrained
    from sbcb.pretrained import save_pretrained as save_pretrained
    from sbcb.segmentor import Segmentor as Segmentor
    from sbcb.wrapper import SBCB as SBCB

__all__ = ["__version__", *_LAZY]
__getattr__ = lazy_getattr(__name__, _LAZY)
