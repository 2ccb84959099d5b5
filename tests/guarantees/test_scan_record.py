"""The up-front scan of every file runs once per run folder: a resume skips it while the files are unchanged and
scans again (and fails on the bad file) when one changed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from guarantee_helpers import folder_flags, make_folder, one_error_line  # noqa: E402

import sbcb.train.run as run_module  # noqa: E402
from sbcb.cli.main import main  # noqa: E402
from sbcb.data.folder import FolderDataset  # noqa: E402


def test_a_resume_does_not_read_unchanged_files_again(tmp_path, monkeypatch, capsys):
    data, run = make_folder(tmp_path / "data"), tmp_path / "run"
    scanned: list[str] = []
    real_scan = run_module.scan_split
    monkeypatch.setattr(run_module, "scan_split", lambda ds, **kw: scanned.append(kw["what"]) or real_scan(ds, **kw))
    flags = [*folder_flags(data), "--val-every", "1", "--out", str(run)]
    assert main(["train", *flags, "--iters", "1"]) == 0
    assert scanned == ["--train-split train", "--val-split val"]
    record = json.loads((run / "data_scan.json").read_text())
    assert sorted(v["largest"] for v in record.values()) == [[32, 40], [32, 40]]  # make_folder's 32x40 images

    # resume: the same files -> neither split is read before training
    scanned.clear()
    capsys.readouterr()
    assert main(["train", *flags, "--iters", "2", "--resume"]) == 0
    assert scanned == []
    out = capsys.readouterr().out
    assert "--train-split train: files unchanged since the scan recorded in" in out and "not read again" in out

    # a label file replaced by a corrupt one (new size and time): the train split is scanned again and fails
    bad = data / "labels" / "train" / "s1.png"
    bad.write_bytes(b"not a png")
    os.utime(bad, ns=(1, 1))
    assert main(["train", *flags, "--iters", "3", "--resume"]) == 2
    assert scanned == ["--train-split train"]
    assert "s1.png" in one_error_line(capsys.readouterr().err)


def test_fingerprint_follows_files_and_dataset_settings(tmp_path):
    data = make_folder(tmp_path / "data")
    train = run_module.split_fingerprint(FolderDataset(data, "train"))
    assert train == run_module.split_fingerprint(FolderDataset(data, "train"))  # deterministic
    assert train != run_module.split_fingerprint(FolderDataset(data, "val"))  # other files
    # one more class in dataset.yaml changes which label values are valid: a new fingerprint
    (data / "dataset.yaml").write_text("class_names: [a, b, c, d]\n")
    assert train != run_module.split_fingerprint(FolderDataset(data, "train"))
    # a dataset that is not a list of files has no fingerprint (always scanned)
    assert run_module.split_fingerprint([{"image": None}]) is None


def test_a_command_refused_after_the_scan_leaves_the_folder_usable(tmp_path, monkeypatch, capsys):
    # the scan runs before the model is built: a misspelt --arch is refused after it, and the corrected command
    # must neither be refused as "already holds a run" nor read the files again
    data, run = make_folder(tmp_path / "data"), tmp_path / "run"
    scanned: list[str] = []
    real_scan = run_module.scan_split
    monkeypatch.setattr(run_module, "scan_split", lambda ds, **kw: scanned.append(kw["what"]) or real_scan(ds, **kw))
    flags = [*folder_flags(data), "--val-every", "0", "--iters", "1", "--out", str(run)]
    bad = list(flags)
    bad[bad.index("--arch") + 1] = "nosucharch"
    assert main(["train", *bad]) == 2
    assert "unknown arch 'nosucharch'" in one_error_line(capsys.readouterr().err)
    assert scanned == ["--train-split train", "--val-split val"]
    scanned.clear()
    assert main(["train", *flags]) == 0
    assert scanned == [] and (run / "last.pt").exists()
