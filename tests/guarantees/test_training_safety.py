"""Issue 16 items 4, 6 and 9 (SIGINT): checkpoints are saved before validation, the NaN guard names only a
checkpoint with sane weights, Ctrl-C saves and says how to resume."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from sbcb.data.validation import DataError
from sbcb.train.checkpoint import load_checkpoint
from sbcb.train.config import TrainSettings
from sbcb.train.loop import NonFiniteLossError, TrainingInterrupted, train

K = 3


class Samples(torch.utils.data.Dataset):
    """Random 16x16 samples; optional hooks run when sample `at` is read."""

    def __init__(self, n=4, *, at=None, hook=None):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {"image": torch.randn(3, 16, 16, generator=g), "label": torch.randint(0, K, (16, 16), generator=g)}
            for _ in range(n)
        ]
        self.at, self.hook = at, hook

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i == self.at and self.hook is not None:
            self.hook()
        return self.items[i]


@pytest.fixture(autouse=True)
def default_signal_handlers():
    # A test run started as a background job of a non-interactive shell (`pytest &`, nohup) inherits SIGINT
    # ignored, and the trainer rightly restores whatever it found; these tests are about the usual terminal.
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def _settings(**kw):
    base = dict(iters=4, batch_size=2, workers=0, ckpt_every=2, val_every=2, log_every=1, lr=0.01, sbd_thresholds=3)
    return TrainSettings(**(base | kw))


def test_a_crash_in_validation_keeps_the_iterations_before_it(tmp_path):
    def bad():
        raise DataError("val/bad.png: label value 7 is not a class")

    with pytest.raises(DataError):
        train(nn.Conv2d(3, K, 3, padding=1), Samples(), settings=_settings(), out_dir=tmp_path, num_classes=K,
              val_set=Samples(2, at=1, hook=bad), progress=False)  # fmt: skip
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2  # saved before the validation that failed


def test_the_nan_guard_names_only_a_checkpoint_with_sane_weights(tmp_path):
    torch.manual_seed(0)
    settings = _settings(iters=50, ckpt_every=1, val_every=0, lr=1e38, keep_last=50, momentum=0.0, weight_decay=0.0)
    with pytest.raises(NonFiniteLossError) as e:
        train(nn.Conv2d(3, K, 3, padding=1), Samples(), settings=settings, out_dir=tmp_path, num_classes=K,
              progress=False)  # fmt: skip
    saved = [load_checkpoint(p) for p in sorted(tmp_path.glob("iter_*.pt"))]
    exploded = [c["step"] for c in saved if max(float(v.abs().max()) for v in c["state_dict"].values()) > 1e6]
    assert exploded, "the scenario must write exploded weights for the guard to matter"
    named = e.value.last_checkpoint
    if named is not None:
        sd = load_checkpoint(named)["state_dict"]
        assert all(torch.isfinite(v).all() and float(v.abs().max()) < 1e6 for v in sd.values())
        assert "--resume" in str(e.value) and str(named) in str(e.value)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_saves_the_current_iteration_and_says_how_to_resume(tmp_path, signum):
    # SIGTERM (a scheduler's or torchrun's stop request) is handled like Ctrl-C
    fired = []

    def interrupt():
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signum)

    settings = _settings(iters=20, ckpt_every=100, val_every=0, batch_size=1)
    with pytest.raises(TrainingInterrupted) as e:
        train(nn.Conv2d(3, K, 3, padding=1), Samples(at=2, hook=interrupt), settings=settings, out_dir=tmp_path,
              num_classes=K, progress=False)  # fmt: skip
    step = e.value.step
    assert 1 <= step < 20 and load_checkpoint(tmp_path / "last.pt")["step"] == step and e.value.signum == signum
    assert f"sbcb train --resume --out {tmp_path}" in str(e.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers were restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # and it resumes from there
    train(nn.Conv2d(3, K, 3, padding=1), Samples(), settings=settings, out_dir=tmp_path, num_classes=K,
          resume=tmp_path / "last.pt", progress=False)  # fmt: skip
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 20


def test_a_second_ctrl_c_interrupts_at_once(tmp_path):
    fired = []

    def interrupt_twice():
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the default handler again: a plain KeyboardInterrupt, here

    settings = _settings(iters=20, ckpt_every=100, val_every=0, batch_size=1)
    with pytest.raises(KeyboardInterrupt) as e:
        train(nn.Conv2d(3, K, 3, padding=1), Samples(at=2, hook=interrupt_twice), settings=settings,
              out_dir=tmp_path, num_classes=K, progress=False)  # fmt: skip
    assert not isinstance(e.value, TrainingInterrupted) and not (tmp_path / "last.pt").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_bad_validation_label_is_found_before_the_first_step(tmp_path, capsys):
    pytest.importorskip("segmentation_models_pytorch")
    import cv2
    import numpy as np
    from guarantee_helpers import folder_flags, make_folder

    from sbcb.cli.main import main

    data = make_folder(tmp_path / "data")
    cv2.imwrite(str(data / "labels" / "val" / "s2.png"), np.full((32, 40), 9, np.uint8))
    assert main(["train", *folder_flags(data), "--iters", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "s2.png" in err and "Traceback" not in err
    assert not list((tmp_path / "r").glob("*.pt"))
