"""The packages' lazy name tables: every `_LAZY` entry is also imported under `TYPE_CHECKING` (what type checkers
and IDEs see), from the same module, and resolves at run time."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ["sbcb", "sbcb.data", "sbcb.metrics", "sbcb.train"]


def _type_checking_imports(package: str) -> dict[str, str]:
    tree = ast.parse((SRC / package.replace(".", "/") / "__init__.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for sub in node.body:
                assert isinstance(sub, ast.ImportFrom) and sub.module
                out.update({alias.name: sub.module for alias in sub.names})
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checking_imports_match_the_lazy_table(package):
    module = importlib.import_module(package)
    assert _type_checking_imports(package) == module._LAZY
    for name, source in module._LAZY.items():
        if name == source.rsplit(".", 1)[1]:
            # `sbcb.train.evaluate` is also a submodule: once it is imported, Python sets the package attribute to
            # the module and `__getattr__` is no longer asked (a known trap; use sbcb.train.evaluate.evaluate)
            continue
        assert getattr(module, name) is getattr(importlib.import_module(source), name)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        _ = module.nope
