"""Issue 16 item 8: every user error is one ``error: ...`` line naming the value or file, exit code 2, no traceback,
checked before any long work; ``--debug`` shows the traceback."""

from __future__ import annotations

import pytest
import torch
from guarantee_helpers import TINY_SYNTHETIC, folder_flags, hashes, make_folder, one_error_line

from sbcb.cli.main import main

pytest.importorskip("segmentation_models_pytorch")


@pytest.fixture
def data(tmp_path):
    return make_folder(tmp_path / "data")


def _refused(capsys, argv, *words):
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, line
    return line


def test_wrong_root(tmp_path, capsys):
    _refused(capsys, ["train", *folder_flags(tmp_path / "nope"), "--out", str(tmp_path / "r")], "nope")


def test_empty_split(tmp_path, data, capsys):
    for p in (data / "images" / "val").iterdir():
        p.unlink()
    for p in (data / "labels" / "val").iterdir():
        p.unlink()
    _refused(capsys, ["train", *folder_flags(data), "--out", str(tmp_path / "r")], "val")


def test_missing_label(tmp_path, data, capsys):
    (data / "labels" / "train" / "s1.png").unlink()
    _refused(capsys, ["train", *folder_flags(data), "--out", str(tmp_path / "r")], "s1")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--iters", "-5"], ("iters", "-5")),
        (["--batch-size", "0"], ("batch", "0")),
        (["--crop", "0", "0"], ("crop", "0")),
        (["--encoder", "resnet999"], ("resnet999",)),
        (["--lr", "-1"], ("lr", "-1")),
        (["--workers", "-1"], ("workers", "-1")),
    ],
)
def test_bad_values(tmp_path, capsys, flags, words):
    out = tmp_path / "r"
    _refused(capsys, ["train", *TINY_SYNTHETIC, *flags, "--iters", "1", *flags, "--out", str(out)], *words)
    assert not (out / "config.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tmp_path, capsys):
    _refused(capsys, ["train", *TINY_SYNTHETIC, "--device", "cuda", "--out", str(tmp_path / "r")], "cuda")
    _refused(capsys, ["eval", str(tmp_path / "x.pt"), "--device", "cuda"])


def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "file.txt"
    out.write_text("keep me")
    _refused(capsys, ["train", *TINY_SYNTHETIC, "--iters", "1", "--out", str(out)], str(out))
    assert out.read_text() == "keep me"


def test_eval_out_is_a_file_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    out = tmp_path / "file.txt"
    out.write_text("keep me")
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"not a checkpoint")
    before = hashes(tmp_path)
    # --out is checked before the checkpoint is even read
    _refused(capsys, ["eval", str(ckpt), "--out", str(out)], str(out))
    assert hashes(tmp_path) == before


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(Exception, match="iters"):
        main(["--debug", "train", *TINY_SYNTHETIC, "--iters", "-5", "--out", str(tmp_path / "r")])


@pytest.mark.parametrize("labels", ["masks", "annotations"])
def test_a_plain_folder_trains_without_dataset_yaml_given_num_classes(tmp_path, capsys, labels):
    data = make_folder(tmp_path / "data", yaml=False)
    (data / "labels").rename(data / labels)
    run = tmp_path / "r"
    flags = [*folder_flags(data), "--val-split", "none", "--iters", "1", "--out", str(run)]
    _refused(capsys, ["train", *flags], "dataset.yaml")  # without --num-classes: says what is missing
    assert main(["train", *flags, "--num-classes", "3"]) == 0
    assert (run / "last.pt").exists()
