"""Lazy name tables of the packages (`sbcb`, `sbcb.data`, `sbcb.metrics`, `sbcb.train`): import on first use.

Each package writes its table once, grouped by defining module (``_LAZY = lazy_table({module: [names]})``),
imports the same names under ``if TYPE_CHECKING:`` for type checkers and IDEs, and sets
``__getattr__ = lazy_getattr(__name__, _LAZY)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_table(names_by_module: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Public name -> defining module, from each defining module's list of public names (in that order)."""
    return {name: module for module, names in names_by_module.items() for name in names}


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` on first use and returns its attribute `name`."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
