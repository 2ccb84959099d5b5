"""Shareable folders: safetensors + config.json + model card round trip; loading never runs code from the folder."""

from __future__ import annotations

import json
import sys

import pytest
import torch

pytest.importorskip("safetensors", reason='sharing models needs safetensors: pip install "sbcb[hub]"')
pytest.importorskip("segmentation_models_pytorch", reason="the tiny test model is an smp Unet")

import sbcb  # noqa: E402
from sbcb.metrics import BoundaryIoU, MeanIoU  # noqa: E402
from sbcb.models import build_model  # noqa: E402
from sbcb.pretrained import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, check_model_kwargs, read_config  # noqa: E402
from sbcb.train.config import Config  # noqa: E402

TINY = dict(
    arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, factory_kwargs={"decoder_channels": [16, 16, 8]}
)
KWARGS = dict(num_classes=4, sbcb_head="casenet", **TINY)


@pytest.fixture(scope="module")
def trained():
    """A wrapper whose weights differ from a fresh init (one SGD step), with its evaluation results."""
    torch.manual_seed(0)
    net = build_model(**KWARGS)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    net.train()
    sum(net(x, y).values()).backward()  # the call: net(images, masks) -> weighted losses
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(1)
    miou, biou = MeanIoU(4), BoundaryIoU(4, width=2)
    miou.update(pred, y)
    biou.update(pred, y)
    return net, {"miou": miou.compute(), "boundary_iou": biou.compute(), "note_only": 0.5}


def test_wrapper_round_trip_with_card(trained, tmp_path):
    net, metrics = trained
    out = sbcb.save_pretrained(
        net,
        tmp_path / "m",
        config=KWARGS,
        class_names=["a", "b", "c", "d"],
        dataset={"name": "synthetic_streets", "size": [64, 64]},
        metrics=metrics,
        license="apache-2.0",
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_NAME, CONFIG_NAME, WEIGHTS_NAME])
    loaded = sbcb.from_pretrained(out)
    assert isinstance(loaded, sbcb.SBCB) and not loaded.training
    ref = net.state_dict()
    assert loaded.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["model_kwargs"] == KWARGS and config["stripped"] is False
    assert config["metrics"]["boundary_iou"]["settings"]["width_px"] == 2
    card = (out / CARD_NAME).read_text()
    assert card.startswith("---\nlibrary_name: sbcb\n") and "license: apache-2.0" in card
    assert "- synthetic_streets" in card and "`unet`, encoder `tu-mobilenetv3_small_050`" in card
    biou_row = next(line for line in card.splitlines() if line.startswith("| boundary_iou |"))
    assert f"mean {100 * metrics['boundary_iou']['mean']:.2f}" in biou_row and "width_px: 2" in biou_row
    # Hub convention: safetensors metadata says the tensors are PyTorch's.
    from safetensors import safe_open

    with safe_open(str(out / WEIGHTS_NAME), framework="pt") as f:
        assert f.metadata()["format"] == "pt"
    # The folder's own recipe shares the loaded model again.
    again = sbcb.save_pretrained(loaded, tmp_path / "again", config=read_config(out)["model_kwargs"])
    assert json.loads((again / CONFIG_NAME).read_text())["model_kwargs"] == KWARGS


def test_stripped_folder_is_the_baseline(trained, tmp_path):
    net, _ = trained
    out = sbcb.save_pretrained(net, tmp_path / "deploy", config=KWARGS, stripped=True)
    model = sbcb.from_pretrained(out)
    baseline = build_model(**{**KWARGS, "sbcb_head": "none"})
    assert type(model) is type(baseline) and model.state_dict().keys() == baseline.state_dict().keys()
    assert json.loads((out / CONFIG_NAME).read_text())["stripped"] is True
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()(x))  # eval-mode wrapper = plain segmentation logits


def test_save_refuses_what_would_not_load(trained, tmp_path):
    net, _ = trained
    with pytest.raises(TypeError, match="config must be"):
        sbcb.save_pretrained(net, tmp_path / "x", config=None)
    with pytest.raises(ValueError, match="different model"):
        sbcb.save_pretrained(net, tmp_path / "x", config={**KWARGS, "num_classes": 5})
    with pytest.raises(ValueError, match="module:function"):
        sbcb.save_pretrained(net, tmp_path / "x", config={**KWARGS, "arch": "mypkg.models:make"})
    assert not (tmp_path / "x").exists()


def _write_config(folder, **model_kwargs):
    folder.mkdir()
    config = {"sbcb_format": 1, "builder": "sbcb.models.build_model", "model_kwargs": model_kwargs}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


def test_loading_never_imports_code_named_in_the_config(tmp_path, monkeypatch):
    # A module that would leave a marker if anything imported it.
    (tmp_path / "canary_factory.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef make(num_classes):\n    raise SystemExit\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = _write_config(tmp_path / "evil", arch="canary_factory:make", num_classes=3)
    with pytest.raises(ValueError, match="module:function"):
        sbcb.from_pretrained(folder)
    assert not (tmp_path / "imported").exists() and "canary_factory" not in sys.modules


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({**KWARGS, "factory_kwargs": {"encoder_weights": "imagenet"}}, "download"),
        ({**KWARGS, "colour": "red"}, "unknown model option"),
        ({**KWARGS, "arch": "no_such_arch"}, "unknown arch"),
        ({k: v for k, v in KWARGS.items() if k != "num_classes"}, "num_classes"),
    ],
)
def test_config_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_model_kwargs(kwargs)


def test_missing_folder_says_how_to_get_a_hub_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match="snapshot_download"):
        sbcb.from_pretrained(tmp_path / "user/repo")
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        sbcb.from_pretrained(_write_config(tmp_path / "no_weights", **KWARGS))


def test_the_runs_config_is_the_recipe(tmp_path):
    """`sbcb train`'s route: the run's Config (model section + data radius) plus K from the wrapper."""
    from sbcb.train.run import model_kwargs

    cfg = Config.from_dict(
        {
            "model": {
                **{k: v for k, v in TINY.items() if k != "factory_kwargs"},
                "arch_kwargs": TINY["factory_kwargs"],
            },
            "data": {"radius": 3.0},
        }
    )
    kwargs = {**model_kwargs(cfg, 4), "ignore_index": 255}
    torch.manual_seed(0)
    net = build_model(**kwargs)
    out = sbcb.save_pretrained(net, tmp_path / "m", config=cfg)  # K and ignore_index from the wrapper
    record = read_config(out)
    assert record["model_kwargs"] == kwargs and record["model_kwargs"]["radius"] == 3.0
    assert record["dataset"] == {"name": "synthetic", "split": "train"}
    loaded = sbcb.from_pretrained(out)
    assert isinstance(loaded, sbcb.SBCB) and loaded.radius == 3.0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))
    with pytest.raises(ValueError, match="num_classes"):
        sbcb.save_pretrained(net.strip(), tmp_path / "y", config=cfg)  # a bare model does not know K


def test_a_baseline_segmentor_saves_its_model(tmp_path):
    kwargs = {**KWARGS, "sbcb_head": "none"}
    net = sbcb.Segmentor(build_model(**kwargs), num_classes=4)
    model = sbcb.from_pretrained(sbcb.save_pretrained(net, tmp_path / "b", config=kwargs))
    assert type(model) is type(net.strip())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()(x))


def test_loading_opens_no_connection(trained, tmp_path, monkeypatch):
    import socket

    net, _ = trained
    out = sbcb.save_pretrained(net, tmp_path / "m", config=KWARGS)

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert isinstance(sbcb.from_pretrained(out), sbcb.SBCB)
