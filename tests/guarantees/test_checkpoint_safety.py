"""Issue 16 item 1: loading a checkpoint imports and calls only allow-listed builders and never reaches the network.

Each crafted checkpoint is a plain dict that `torch.load(weights_only=True)` accepts; the danger is its model spec.
"""

from __future__ import annotations

import sys

import pytest
import torch

from sbcb.cli.main import main
from sbcb.models import build_model, check_allowed, model_spec
from sbcb.train.checkpoint import atomic_save, load_model

pytest.importorskip("segmentation_models_pytorch")

TINY = dict(
    arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, factory_kwargs={"decoder_channels": [16, 16, 8]}
)
EVIL = "sbcb_issue16_evil"


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable module that leaves a marker file when it is imported and when its factory is called."""
    marker = tmp_path / "executed.txt"
    (tmp_path / f"{EVIL}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def make(num_classes, **kw):\n"
        "    import torch\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
        "    return torch.nn.Conv2d(3, num_classes, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(EVIL, None)
    yield marker
    sys.modules.pop(EVIL, None)


def _save(path, kwargs, state_dict=None):
    atomic_save({"format": 1, "model": model_spec(kwargs), "state_dict": state_dict or {}, "step": 1}, path)
    return path


def test_a_factory_named_in_a_checkpoint_is_never_imported(tmp_path, evil_module):
    ckpt = _save(tmp_path / "evil.pt", {"arch": f"{EVIL}:make", "num_classes": 3, "sbcb_head": "none"})
    with pytest.raises(ValueError, match="allow_custom") as e:
        load_model(ckpt)
    assert "\n" not in str(e.value)
    assert not evil_module.exists() and EVIL not in sys.modules


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_the_cli_refuses_it_in_one_line(tmp_path, evil_module, capsys, command):
    ckpt = _save(tmp_path / "evil.pt", {"arch": f"{EVIL}:make", "num_classes": 3, "sbcb_head": "none"})
    (tmp_path / "img").mkdir()
    args = {
        "eval": ["eval", str(ckpt)],
        "predict": ["predict", str(ckpt), str(tmp_path / "img"), "--out", str(tmp_path / "p")],
        "export": ["export", str(ckpt), "--stripped", str(tmp_path / "s.pt")],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--allow-custom-arch" in err, err
    assert not evil_module.exists() and EVIL not in sys.modules


def test_the_opt_in_loads_a_custom_factory(tmp_path, evil_module):
    ckpt = _save(tmp_path / "mine.pt", {"arch": f"{EVIL}:make", "num_classes": 3, "sbcb_head": "none"})
    ref = torch.nn.Conv2d(3, 3, 1)
    _save(ckpt, {"arch": f"{EVIL}:make", "num_classes": 3, "sbcb_head": "none"}, ref.state_dict())
    model = load_model(ckpt, allow_custom=True)
    assert evil_module.read_text() == "called"
    assert torch.equal(model.weight, ref.weight)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"factory_kwargs": {"encoder_weights": "imagenet"}}, "encoder_weights"),
        ({"factory_kwargs": {"pretrained": True}}, "pretrained"),
        ({"encoder": "tu-hf-hub:timm/resnet18.a1_in1k"}, "encoder"),
        ({"factory_kwargs": {"encoder_name": "tu-hf_hub:x/y"}}, "encoder_name"),
        ({"arch": "torch.hub:load"}, "allow_custom"),
        ({"arch": "no_such_arch"}, "unknown arch"),
        ({"evil_option": 1}, "evil_option"),
    ],
)
def test_stored_options_that_could_download_or_run_code_are_refused(tmp_path, monkeypatch, kwargs, words):
    def no_network(*a, **k):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load", no_network)
    monkeypatch.setattr("socket.socket.connect", no_network)
    spec = {**TINY, "num_classes": 3, "sbcb_head": "none"}
    for key, value in kwargs.items():
        if key == "factory_kwargs":
            spec["factory_kwargs"] = {**spec["factory_kwargs"], **value}
        else:
            spec[key] = value
    ckpt = _save(tmp_path / "crafted.pt", spec)
    with pytest.raises(ValueError, match=words) as e:
        load_model(ckpt)
    assert "\n" not in str(e.value)


def test_a_spec_that_is_not_build_model_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"format": 1, "model": {"name": "os.system", "kwargs": {}}, "state_dict": {}, "step": 0}, path)
    with pytest.raises(ValueError, match="os.system"):
        load_model(path)


def test_check_allowed_accepts_what_sbcb_trains(tmp_path):
    kwargs = {**TINY, "num_classes": 3, "sbcb_head": "casenet"}
    assert check_allowed(model_spec(kwargs)) == kwargs
    assert check_allowed(kwargs) == kwargs  # bare build_model kwargs too
    model = build_model(**kwargs)
    path = _save(tmp_path / "ok.pt", kwargs, model.state_dict())
    assert type(load_model(path)).__name__ == "SBCB"
