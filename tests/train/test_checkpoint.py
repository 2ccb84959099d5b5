import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sbcb.train import checkpoint as C


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_roundtrip_through_a_safe_load(tmp_path):
    state = C.rng_state()
    first = [_draw() for _ in range(3)]
    C.atomic_save({"rng": state}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)  # plain types only
    C.set_rng_state(loaded["rng"])
    assert [_draw() for _ in range(3)] == first


def test_interrupted_write_never_replaces_a_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    C.atomic_save({"step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")  # some bytes, then the "crash"
        raise OSError("disk full")

    monkeypatch.setattr(C.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        C.atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # the temporary file was removed


_WRITER = """
import sys, torch
from sbcb.train.checkpoint import atomic_save
path = sys.argv[1]
step = 0
torch.manual_seed(0)
big = torch.randn(4_000_000)  # 16 MB: writes take long enough to be killed in the middle
while True:
    step += 1
    atomic_save({"step": step, "w": big + step}, path)
    print(step, flush=True)
"""


def test_sigkill_during_writes_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(0.15)  # now it is (most likely) in the middle of another write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = torch.load(path, weights_only=True)
    # Whatever step survived, the file is complete and self-consistent.
    assert ckpt["step"] >= 1
    torch.manual_seed(0)
    assert torch.equal(ckpt["w"], torch.randn(4_000_000) + ckpt["step"])


def test_manager_keeps_last_k_and_best(tmp_path):
    m = C.CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        m.save({"step": step, "state_dict": {}, "model": {}}, is_best=(step == 20))
    assert [p.name for p in m.numbered()] == ["iter_0000020.pt", "iter_0000030.pt"]
    assert torch.load(m.last, weights_only=True)["step"] == 30
    assert torch.load(m.best, weights_only=True)["step"] == 20
    m.save({"step": 40, "state_dict": {}, "model": {}})
    assert [p.name for p in m.numbered()] == ["iter_0000030.pt", "iter_0000040.pt"]
    assert torch.load(m.best, weights_only=True)["step"] == 20  # best survives pruning


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        C.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an sbcb checkpoint"):
        C.load_checkpoint(tmp_path / "other.pt")
