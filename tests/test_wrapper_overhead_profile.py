"""`benchmarks/wrapper_overhead.py --profile`: the per-op table of what SBCB adds to a training step (issue 17)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("torchvision")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "wrapper_overhead.py"


def test_profile_ranks_the_ops_sbcb_adds(monkeypatch):
    monkeypatch.syspath_prepend(str(PATH.parent))  # the script imports its sibling `_protocol`
    spec = importlib.util.spec_from_file_location("wrapper_overhead", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # a tiny row of the same shape as the LRASPP row: 2 images of 64x96, K = 11, 1 thread
    monkeypatch.setitem(module.ROWS, "tiny", ("lraspp", "mobilenet_v3_large", 2, (64, 96), 11, 1))
    lines = module.profile_row("tiny", steps=1, threads=1, top=40)
    table = [line for line in lines if line.startswith("| `")]
    assert table, lines
    rows = {}
    for line in table:
        op, base, sbcb, extra = (cell.strip() for cell in line.strip("|").split("|"))
        rows[op.strip("`")] = (float(base), float(sbcb), float(extra))
    extras = [r[2] for r in rows.values()]
    assert extras == sorted(extras, reverse=True)  # ranked by what SBCB adds
    for base, sbcb, extra in rows.values():
        assert extra == pytest.approx(sbcb - base, abs=0.11)  # 1-decimal rounding of three numbers
    # the boundary BCE exists only in the SBCB step: its softplus has no baseline time
    assert rows["aten::softplus"][0] == 0.0 and rows["aten::softplus"][1] > 0.0
    assert re.search(r"\*\*\d+\.\d\dx\*\*", "\n".join(lines))
