"""The packages' lazy name tables: every `_LAZY` entry is also imported under `TYPE_CHECKING` (what type checkers
and IDEs see), from the same module, and resolves at run time."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
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
        # A public name must not also be a submodule of its package: once the submodule is imported, Python sets
        # the package attribute to the module and `from package import name` returns the module, not the name.
        assert name != source.rsplit(".", 1)[1], (package, name)
        assert getattr(module, name) is getattr(importlib.import_module(source), name)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        _ = module.nope


def test_from_sbcb_train_import_evaluate_is_the_function():
    # In a fresh interpreter (nothing imported yet): the documented `from sbcb.train import evaluate` used to return
    # the module `sbcb.train.evaluate` (the function's submodule had the same name).
    code = "from sbcb.train import evaluate; import inspect; print(inspect.isfunction(evaluate))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
