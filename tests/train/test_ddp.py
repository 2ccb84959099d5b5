"""DDP on the CPU (gloo) through torchrun: validation metrics equal a single-process evaluation; ranks agree."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sbcb.train.checkpoint import load_checkpoint
from sbcb.train.evaluation import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import Blobs, Tiny  # noqa: E402

SCRIPT = str(Path(__file__).parent / "ddp_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, timeout=240, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _check(out: Path, world: int):
    res = json.loads((out / "ddp_result.json").read_text())
    assert res["world"] == world
    assert len(set(res["checksums"])) == 1  # identical parameters on every rank
    # Single-process evaluation of the checkpoint the DDP run wrote, on the same validation data.
    model = Tiny()
    model.load_state_dict(load_checkpoint(out / "last.pt")["state_dict"])
    ref = evaluate(model, Blobs(n=5, augment=False), num_classes=3, boundary_radii=(3,), progress=False)
    assert res["val"]["miou"] == ref["miou"]  # confusion counts are integers: exact
    assert res["val"]["iou"] == ref["iou"]
    assert res["val"]["bf3"] == pytest.approx(ref["bf3"], abs=1e-12)
    assert load_checkpoint(out / "last.pt")["step"] == 4
    assert len(load_checkpoint(out / "last.pt")["rng"]) == world  # one RNG state per rank, for exact resume


@pytest.mark.ddp
@pytest.mark.slow  # ~10 s alone, ~30 s on the shared 2-core machine
def test_two_processes_match_one(tmp_path):
    port = _free_port()
    proc = _torchrun(["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}", SCRIPT, str(tmp_path)])
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    _check(tmp_path, world=2)


@pytest.mark.ddp
@pytest.mark.slow
def test_sbcb_wrapper_under_ddp_keeps_ranks_identical(tmp_path):
    # The wrapper's forward hooks, SBD head and loss under DistributedDataParallel (gloo): every parameter, the
    # head's included, must stay identical on both ranks, and the head must have been trained (its gradients
    # reached the all-reduce).
    port = _free_port()
    args = ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}", SCRIPT, str(tmp_path), "sbcb"]
    proc = _torchrun(args)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    res = json.loads((tmp_path / "ddp_result.json").read_text())
    assert res["world"] == 2 and len(set(res["checksums"])) == 1
    assert res["head_changed"]
    assert 0.0 <= res["val"]["miou"] <= 1.0


@pytest.mark.ddp
@pytest.mark.slow
def test_users_loop_through_plain_ddp_of_the_wrapper(tmp_path):
    # The README's contract under DDP: DistributedDataParallel(net), losses = ddp(images, masks), no `.module`.
    port = _free_port()
    args = ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}", SCRIPT, str(tmp_path), "plain"]
    proc = _torchrun(args)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    res = json.loads((tmp_path / "ddp_result.json").read_text())
    assert res["world"] == 2 and len(set(res["checksums"])) == 1  # gradients were all-reduced: ranks agree
    assert res["head_changed"] and res["keys"] == ["loss_sbd_fuse", "loss_sbd_last", "loss_seg"]
    assert ".module" not in Path(SCRIPT).read_text()


@pytest.mark.ddp
@pytest.mark.slow
def test_two_nodes_on_localhost(tmp_path):
    port = _free_port()
    common = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
    procs = [_torchrun([*common, f"--node_rank={r}", SCRIPT, str(tmp_path)]) for r in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    _check(tmp_path, world=2)
    assert torch.distributed.is_available()


@pytest.mark.ddp
@pytest.mark.slow
def test_ctrl_c_under_torchrun_saves_once_and_every_rank_stops_at_the_same_iteration(tmp_path):
    # A terminal's Ctrl-C sends SIGINT to torchrun and its workers (one process group); torchrun then forwards a
    # second signal to each worker and kills them 30 s later. Every rank must finish the same iteration, rank 0
    # must save it, and each rank must stop with TrainingInterrupted (not a KeyboardInterrupt traceback).
    port = _free_port()
    args = ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}", SCRIPT, str(tmp_path),
            "interrupt"]  # fmt: skip
    proc = _torchrun(args, start_new_session=True)
    log = tmp_path / "train_log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    stopped = [json.loads((tmp_path / f"interrupted_rank{r}.json").read_text()) for r in (0, 1)]
    assert stopped[0]["step"] == stopped[1]["step"] >= 3, out[-3000:]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == stopped[0]["step"]
    assert Path(stopped[0]["path"]).exists()
    assert "KeyboardInterrupt" not in out  # the workers stopped cleanly (torchrun's own SignalException may show)
