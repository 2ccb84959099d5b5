"""Every Python block of docs/integrations.md runs as written, in a temporary folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
# section title -> (extras the block needs, slow); lightning's import alone takes ~8 s on the shared machine
NEEDS = {
    "Boundary IoU": ((), False),
    "torchmetrics": (("torchmetrics",), False),
    "Lightning": (("lightning", "segmentation_models_pytorch"), True),
    "Sharing models (safetensors, Hub layout)": (
        ("safetensors", "segmentation_models_pytorch"),
        False,
    ),
    "TensorBoard": (("tensorboard",), False),
}


def _blocks() -> dict[str, str]:
    text = DOC.read_text()
    out = {}
    for section in re.split(r"\n## ", text)[1:]:
        title = section.splitlines()[0].strip()
        code = re.findall(r"```python\n(.*?)```", section, re.S)
        assert len(code) == 1, f"section {title!r} should have exactly one python block"
        out[title] = code[0]
    return out


def test_every_section_is_covered():
    assert set(_blocks()) == set(NEEDS)


@pytest.mark.parametrize(
    "title", [pytest.param(t, marks=pytest.mark.slow) if slow else t for t, (_, slow) in NEEDS.items()]
)
def test_block_runs(title, tmp_path, monkeypatch):
    for module in NEEDS[title][0]:
        pytest.importorskip(module, reason=f"the {title!r} block needs {module}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_blocks()[title], f"docs/integrations.md ({title})", "exec"), namespace)
    if title == "Sharing models (safetensors, Hub layout)":
        assert type(namespace["model"]) is type(namespace["net"].strip())
        assert (tmp_path / "my-model" / "README.md").read_text().count("boundary_iou") >= 1
    if title == "Lightning":
        assert (tmp_path / "lightning-unet" / "model.safetensors").is_file()
    if title == "TensorBoard":
        assert any((tmp_path / "run" / "tb").iterdir())
