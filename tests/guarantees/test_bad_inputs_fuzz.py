"""Issue 16: a generated list of bad inputs fed to the loaders and the CLI.

For each case: exit code 2, exactly one ``error:`` line that names the bad file or value, no traceback, and no
file that existed before the command changed (sha256 of the whole tmp folder before and after).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from guarantee_helpers import TINY_SYNTHETIC, folder_flags, hashes, make_folder, one_error_line

from sbcb.cli.main import main
from sbcb.models import model_spec
from sbcb.train.checkpoint import atomic_save

pytest.importorskip("segmentation_models_pytorch")


# ------------------------------------------------------------------------------------------ damaged dataset files


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _rgb_label(path: Path) -> None:  # wrong mode: a colour picture where class ids belong
    cv2.imwrite(str(path), np.zeros((32, 40, 3), np.uint8))


def _wrong_size(path: Path) -> None:
    cv2.imwrite(str(path), np.zeros((20, 20), np.uint8))


def _out_of_range(path: Path) -> None:
    cv2.imwrite(str(path), np.full((32, 40), 17, np.uint8))


def _sixteen_bit(path: Path) -> None:
    cv2.imwrite(str(path), np.full((32, 40), 1000, np.uint16))


def _not_an_image(path: Path) -> None:
    path.write_text("hello, I am text")


DAMAGE = {
    "truncated": _truncate,
    "empty": _empty,
    "wrong_mode": _rgb_label,
    "wrong_size": _wrong_size,
    "out_of_range": _out_of_range,
    "16_bit": _sixteen_bit,
    "text": _not_an_image,
}
LABEL_CASES = [(split, name) for split in ("train", "val") for name in DAMAGE]
IMAGE_CASES = [(split, name) for split in ("train", "val") for name in ("truncated", "empty", "text")]


def _train(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return ["train", *folder_flags(data), "--iters", "1", "--val-every", "1", "--out", str(tmp_path / "r"), *extra]


def _check(capsys, argv: list[str], tmp_path: Path, *words: str) -> None:
    before = hashes(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    line = one_error_line(captured.err)
    for word in words:
        assert word in line, line
    after = hashes(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing already written changed
    assert not [k for k in after if k.endswith(".pt")]  # and no step was taken


@pytest.mark.parametrize("split, damage", LABEL_CASES)
def test_a_damaged_label_is_named_before_the_first_step(tmp_path, capsys, split, damage):
    data = make_folder(tmp_path / "data")
    victim = data / "labels" / split / "s1.png"
    DAMAGE[damage](victim)
    _check(capsys, _train(tmp_path, data), tmp_path, "s1.png")


@pytest.mark.parametrize("split, damage", IMAGE_CASES)
def test_a_damaged_image_is_named(tmp_path, capsys, split, damage):
    data = make_folder(tmp_path / "data")
    DAMAGE[damage](data / "images" / split / "s0.png")
    _check(capsys, _train(tmp_path, data), tmp_path, "s0.png")


@pytest.mark.parametrize("what", ["no_images", "no_labels", "unpaired", "bad_yaml", "yaml_list"])
def test_a_broken_dataset_layout_is_one_line(tmp_path, capsys, what):
    data = make_folder(tmp_path / "data")
    if what == "no_images":
        for p in (data / "images" / "train").iterdir():
            p.unlink()
    elif what == "no_labels":
        (data / "labels" / "train" / "s0.png").unlink()
    elif what == "unpaired":
        (data / "images" / "train" / "s0.png").rename(data / "images" / "train" / "zz.png")
    elif what == "bad_yaml":
        (data / "dataset.yaml").write_text("class_names: [a, b\n")
    else:
        (data / "dataset.yaml").write_text("- a\n- b\n")
    _check(capsys, _train(tmp_path, data), tmp_path, "data")


# ------------------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    "flags, word",
    [
        (["--iters", "0"], "iters"),
        (["--batch-size", "-2"], "batch_size"),
        (["--crop", "-1", "32"], "crop"),
        (["--radius", "0"], "radius"),
        (["--head-scale", "2"], "head_scale"),
        (["--lr", "0"], "lr"),
        (["--ckpt-every", "0"], "ckpt_every"),
        (["--arch", "nonsense"], "nonsense"),
        (["--arch", "os:system"], "--allow-custom-arch"),
        (["--arch-kwargs", "{not json"], "arch_kwargs"),
        (["--arch-kwargs", '{"encoder_weights": "imagenet"}'], "encoder_weights"),
        (["--encoder", "tu-hf-hub:timm/x"], "hf-hub"),
        (["--sbcb-head", "nope"], "nope"),
        (["--dataset", "cityscapes"], "--root"),
        (["--num-classes", "3"], "num_classes"),
    ],
)
def test_a_bad_value_is_one_line(tmp_path, capsys, flags, word):
    _check(capsys, ["train", *TINY_SYNTHETIC, *flags, "--out", str(tmp_path / "r")], tmp_path, word)


def test_a_bad_config_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    for text, word in [("lr: [1, 2]\n", "lr"), ("- 1\n", "mapping"), ("a: b: c\n", "YAML"), ("itres: 3\n", "iters")]:
        cfg.write_text(text)
        _check(capsys, ["train", *TINY_SYNTHETIC, "--config", str(cfg), "--out", str(tmp_path / "r")], tmp_path, word)


# ------------------------------------------------------------------------------------------ crafted checkpoints


def _crafted(tmp_path: Path) -> dict[str, Path]:
    tiny = dict(arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, num_classes=3, sbcb_head="none")
    tiny["factory_kwargs"] = {"decoder_channels": [16, 16, 8]}
    out = {}

    def save(name, obj):
        path = tmp_path / f"{name}.pt"
        atomic_save(obj, path)
        out[name] = path

    good = {"format": 1, "model": model_spec(tiny), "state_dict": {}, "step": 1}
    save("factory", {**good, "model": model_spec({**tiny, "arch": "subprocess:run"})})
    save("hub", {**good, "model": model_spec({**tiny, "arch": "torch.hub:load"})})
    save("download", {**good, "model": model_spec({**tiny, "factory_kwargs": {"encoder_weights": "imagenet"}})})
    save("other_builder", {**good, "model": {"name": "builtins.eval", "kwargs": {}}})
    save("no_model", {"format": 1, "state_dict": {}})
    save("future_format", {**good, "format": 99})
    save("wrong_weights", {**good, "state_dict": {"weight": torch.zeros(1)}})
    save("list", {"format": 1, "model": [1, 2], "state_dict": {}})
    (tmp_path / "truncated.pt").write_bytes(out["factory"].read_bytes()[:100])
    out["truncated"] = tmp_path / "truncated.pt"
    (tmp_path / "empty.pt").write_bytes(b"")
    out["empty"] = tmp_path / "empty.pt"
    import pickle

    class Boom:  # a pickle that would run code if unpickled unsafely
        def __reduce__(self):
            return (print, ("executed",))

    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"model": Boom(), "state_dict": {}}))
    out["pickle"] = tmp_path / "pickle.pt"
    return out


CRAFTED = ["factory", "hub", "download", "other_builder", "no_model", "future_format", "wrong_weights", "list",
           "truncated", "empty", "pickle"]  # fmt: skip


@pytest.mark.parametrize("name", CRAFTED)
@pytest.mark.parametrize("command", ["eval", "export", "predict", "resume"])
def test_a_crafted_checkpoint_is_one_line(tmp_path, capsys, name, command):
    path = _crafted(tmp_path)[name]
    img = tmp_path / "img"
    img.mkdir()
    cv2.imwrite(str(img / "a.png"), np.zeros((32, 32, 3), np.uint8))
    argv = {
        "eval": ["eval", str(path)],
        "export": ["export", str(path), "--stripped", str(tmp_path / "s.pt")],
        "predict": ["predict", str(path), str(img), "--out", str(tmp_path / "p")],
        "resume": ["train", "--resume", str(path), "--out", str(tmp_path / "r")],
    }[command]
    before = hashes(tmp_path)
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert path.name in line, line
    assert hashes(tmp_path) == before
    assert "executed" not in capsys.readouterr().out
