"""The README's set-up commands and its "use it in your own training loop" example."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_quick_start_has_demo_then_test_command():
    block = re.search(r"```(?:sh|bash)?\n(.*?)```", _section("Quick start"), re.S).group(1)
    assert block.strip().splitlines() == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci.splitlines()[-1]


def test_training_loop_example_runs_and_strips_to_the_baseline():
    pytest.importorskip("segmentation_models_pytorch")
    code = re.search(r"```python\n(.*?)```", _section("Use it in your own training loop"), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    net, model = namespace["net"], namespace["model"]
    deployable = namespace["deployable"]
    # strip() returns the very object the user passed in, with the head's parameters gone from it.
    assert deployable is model
    assert sum(p.numel() for p in deployable.parameters()) < sum(p.numel() for p in net.parameters())
    assert not any(k.startswith("head.") for k in deployable.state_dict())
    # The loop really trained: the last step's losses are the paper's terms, finite, and SGD holds momentum.
    losses = namespace["losses"]
    assert set(losses) == {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(namespace["optimizer"].state) > 0
