"""Issue 16 items 2, 7 and 9 (tmp files): an old run is never overwritten silently, a resume keeps its recipe and
says where it continues from, orphan temporary files are cleaned."""

from __future__ import annotations

import shutil

import pytest
import yaml
from guarantee_helpers import TINY_SYNTHETIC, hashes, one_error_line

from sbcb.cli.main import main
from sbcb.train.checkpoint import load_checkpoint

pytest.importorskip("segmentation_models_pytorch")

ONE = [*TINY_SYNTHETIC, "--iters", "1", "--val-split", "none"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", *ONE, "--out", str(run)]) == 0
    return run


@pytest.fixture
def run(finished_run, tmp_path):
    copy = tmp_path / "r"
    shutil.copytree(finished_run, copy)
    return copy


def test_a_new_run_into_an_old_run_folder_is_refused(run, capsys):
    before = hashes(run)
    assert main(["train", *ONE, "--out", str(run)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--resume" in line and "--overwrite" in line and str(run) in line
    assert hashes(run) == before


def test_overwrite_starts_over_and_leaves_no_old_checkpoint(run):
    (run / "iter_0000099.pt").write_bytes((run / "last.pt").read_bytes())
    assert main(["train", *ONE, "--lr", "0.02", "--out", str(run), "--overwrite"]) == 0
    assert sorted(p.name for p in run.glob("iter_*.pt")) == ["iter_0000001.pt"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.02


@pytest.mark.parametrize(
    "flags, words",
    [(["--lr", "0.5"], ("--lr 0.5", "0.01")), (["--sbcb-head", "none"], ("--sbcb-head none", "casenet"))],
)
def test_a_resume_refuses_a_changed_recipe_in_one_line(run, capsys, flags, words):
    before = hashes(run)
    assert main(["train", "--resume", "--out", str(run), "--iters", "2", *flags]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert all(w in line for w in words), line
    assert hashes(run) == before  # config.yaml does not claim the refused value


def test_a_resume_honours_safe_changes_records_them_and_says_where_it_continues(run, capsys):
    (run / ".iter_0000002.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (run / ".config.yaml.tmp").write_text("half")
    assert main(["train", "--resume", "--out", str(run), "--iters", "2", "--log-every", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run / 'iter_0000001.pt'} at iteration 1" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["iters"] == 2 and saved["train"]["log_every"] == 2
    assert load_checkpoint(run / "last.pt")["config"]["train"]["iters"] == 2
    assert not list(run.glob(".*.tmp"))
