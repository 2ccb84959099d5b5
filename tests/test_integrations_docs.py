"""Every block of the README's "Integrations" section runs as written, in a temporary folder."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# subsection title -> (modules the block needs, slow); lightning's import alone takes ~8 s on the shared machine
NEEDS = {
    "Boundary IoU": ((), False),
    "torchmetrics": (("torchmetrics",), False),
    "Lightning": (("lightning", "segmentation_models_pytorch"), True),
    "Sharing models (safetensors, Hub layout)": (("safetensors", "segmentation_models_pytorch"), False),
    "TensorBoard": (("tensorboard", "segmentation_models_pytorch"), False),
}


def _blocks() -> dict[str, tuple[str, str]]:
    """Subsection title -> (language, code) of its one block."""
    text = README.read_text()
    start = text.index("\n## Integrations\n")
    section = text[start : text.index("\n## ", start + 1)]
    out = {}
    for sub in re.split(r"\n### ", section)[1:]:
        title = sub.splitlines()[0].strip()
        code = re.findall(r"```(python|sh)\n(.*?)```", sub, re.S)
        assert len(code) == 1, f"README subsection {title!r} should have exactly one code block"
        out[title] = code[0]
    return out


def test_every_integration_has_a_block():
    assert set(_blocks()) == set(NEEDS)


@pytest.mark.parametrize(
    "title", [pytest.param(t, marks=pytest.mark.slow) if slow else t for t, (_, slow) in NEEDS.items()]
)
def test_block_runs(title, tmp_path, monkeypatch, capsys):
    for module in NEEDS[title][0]:
        pytest.importorskip(module, reason=f"the {title!r} block needs {module}")
    monkeypatch.chdir(tmp_path)
    language, code = _blocks()[title]
    namespace: dict = {}
    if language == "python":
        exec(compile(code, f"README.md ({title})", "exec"), namespace)
    else:  # `sbcb ...` command lines, run through the CLI's entry point
        from sbcb.cli.main import main

        for line in code.replace("\\\n", " ").splitlines():
            args = shlex.split(line)
            assert args[0] == "sbcb", line
            assert main(args[1:]) == 0, line
    if title == "Boundary IoU":
        assert "Boundary IoU 0." in capsys.readouterr().out
    if title == "Sharing models (safetensors, Hub layout)":
        assert type(namespace["model"]) is type(namespace["net"].strip())
        assert type(namespace["wrapper"]) is type(namespace["net"])
        assert "| miou | 50.00 |" in (tmp_path / "my-model" / "README.md").read_text()
    if title == "Lightning":
        assert (tmp_path / "lightning-unet" / "model.safetensors").is_file()
    if title == "TensorBoard":
        assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run" / "tb").iterdir())
