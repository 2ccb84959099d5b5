"""`sbcb train | eval | export | predict` end to end on a tiny model and tiny synthetic images."""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from sbcb.cli.main import main
from sbcb.train.checkpoint import load_checkpoint, load_model

pytest.importorskip("segmentation_models_pytorch")

TINY = [
    "--dataset", "synthetic", "--num-samples", "6", "--val-samples", "2", "--image-size", "64", "64",
    "--crop", "64", "64", "--arch", "unet", "--encoder", "tu-mobilenetv3_small_050", "--encoder-depth", "3",
    "--arch-kwargs", '{"decoder_channels": [16, 16, 8]}', "--batch-size", "2", "--workers", "0", "--no-progress",
]  # fmt: skip


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_resume_eval_export_predict(tmp_path, one_thread, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--iters", "2", "--ckpt-every", "1", "--val-every", "2", "--out", str(run)]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["seed"] == 0 and cfg["model"]["sbcb_head"] == "casenet"
    assert cfg["versions"]["torch"] == torch.__version__
    opt = cfg["train"]
    assert opt["lr"] == 0.01 and opt["momentum"] == 0.9 and opt["weight_decay"] == 5e-4  # paper defaults
    assert {p.name for p in run.glob("iter_*.pt")} == {"iter_0000001.pt", "iter_0000002.pt"}

    # Resume with no other flag than --out: the run's own config comes from the checkpoint; extend to 3 iterations.
    assert main(["train", "--resume", "--out", str(run), "--iters", "3", "--val-every", "3", "--no-progress"]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["config"]["data"]["num_samples"] == 6
    val = {int(r["step"]): r for r in csv.DictReader(open(run / "val_log.csv"))}
    assert set(val) == {2, 3}

    # Standalone evaluation of the last checkpoint reproduces the in-training validation at step 3.
    eval_args = ["eval", str(run / "last.pt"), "--out", str(tmp_path / "eval"), "--radii", "3", "--no-progress"]
    assert main([*eval_args, *(["--pr-curves"] if _has_matplotlib() else [])]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["miou"] == pytest.approx(float(val[3]["miou"]), abs=1e-12)
    assert report["bf3"] == pytest.approx(float(val[3]["bf3"]), abs=1e-12)
    assert report["biou"] == pytest.approx(float(val[3]["biou"]), abs=1e-12)  # Boundary IoU beside boundary F
    assert report["biou_settings"]["dilation_ratio"] == 0.02 and report["biou_settings"]["width_px"] is None
    assert len(report["biou_per_class"]) == 11
    assert "sbd_mf" in report and len(report["iou"]) == 11
    assert "| road |" in (tmp_path / "eval" / "eval.md").read_text()
    pr = report["sbd_pr"]
    assert len(pr["thresholds"]) == 99 and len(pr["precision"]) == len(pr["recall"]) == 11
    assert all(0 <= v <= 1 for curve in pr["recall"] for v in curve)
    if _has_matplotlib():
        assert (tmp_path / "eval" / "sbd_pr.png").stat().st_size > 1000

    # Export: the stripped checkpoint rebuilds without the wrapper and predicts exactly like the trained model.
    stripped = tmp_path / "stripped.pt"
    assert main(["export", str(run / "last.pt"), "--stripped", str(stripped), "--no-check"]) == 0
    full, plain = load_model(run / "last.pt"), load_model(stripped)
    assert type(full).__name__ == "SBCB" and type(plain).__name__ == "Unet"
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(full(x), plain(x))
    # ... and as a shareable folder (safetensors + config.json + card) that sbcb.from_pretrained rebuilds.
    if importlib.util.find_spec("safetensors") is not None:
        import sbcb

        shared = tmp_path / "shared"
        assert main(["export", str(run / "last.pt"), "--pretrained", str(shared)]) == 0
        with torch.no_grad():
            assert torch.equal(sbcb.from_pretrained(shared)(x), plain(x))
        card = (shared / "README.md").read_text()
        assert "- name: synthetic" in card and f"miou {100 * report['miou']:.2f}" in card

    # Predict on a folder of images, with GT labels for the error maps.
    from sbcb.data.synthetic import SyntheticStreets
    from sbcb.viz import read_png, save_png

    sample = SyntheticStreets(1, size=(64, 64), split="test")[0]
    save_png(tmp_path / "imgs" / "a.png", sample["image"])
    save_png(tmp_path / "gt" / "a.png", sample["label"])
    out = tmp_path / "pred"
    assert main(["predict", str(run / "last.pt"), str(tmp_path / "imgs"), "--out", str(out), "--labels",
                 str(tmp_path / "gt")]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_boundaries.png", "a_error.png", "a_label.png", "a_overlay.png"]
    pred = read_png(out / "a_label.png")
    assert pred.shape == (64, 64) and pred.max() < 11


def test_logger_tensorboard_writes_losses_lr_and_validation(tmp_path, one_thread, capsys):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    args = ["train", *TINY, "--iters", "2", "--val-every", "2", "--biou-width", "2", "--logger", "tensorboard"]
    assert main([*args, "--out", str(run)]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["logger"] == "tensorboard"
    events = ea.EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_seg", "train/loss_sbd_fuse", "train/lr"} <= tags
    assert {"val/miou", "val/bf3", "val/biou"} <= tags
    # the same numbers as the CSV rows (float32 in the event file)
    val = next(csv.DictReader(open(run / "val_log.csv")))
    assert events.Scalars("val/biou")[0].value == pytest.approx(float(val["biou"]), rel=1e-6)
    assert [e.step for e in events.Scalars("train/lr")] == [1, 2]
    # eval takes the run's Boundary IoU width, or a flag
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--radii", "3", "--no-sbd", "--no-progress"]) == 0
    assert "| biou (2 px) |" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert (
        main(["eval", str(run / "last.pt"), "--biou-ratio", "0.05", "--no-sbd", "--no-progress", "--out", str(out)])
        == 0
    )
    settings = json.loads((out / "eval.json").read_text())["biou_settings"]
    assert settings["width_px"] is None and settings["dilation_ratio"] == 0.05


def test_csv_is_the_default_and_a_missing_tensorboard_is_named(tmp_path, one_thread, capsys, monkeypatch):
    import importlib.util

    run = tmp_path / "run"
    assert main(["train", *TINY, "--iters", "1", "--val-split", "none", "--out", str(run)]) == 0
    assert (run / "train_log.csv").exists() and not (run / "tb").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    capsys.readouterr()
    assert main(["train", *TINY, "--iters", "1", "--logger", "tensorboard", "--out", str(tmp_path / "r2")]) == 2
    assert 'pip install "sbcb[tensorboard]"' in capsys.readouterr().err


def test_user_errors_are_clear(tmp_path, capsys):
    assert main(["train", *TINY, "--iters", "1"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("itres: 3\n")
    assert main(["train", *TINY, "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key 'itres'; did you mean 'iters'?" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2


def test_config_file_sets_defaults_and_flags_win(tmp_path, one_thread):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("iters: 1\nlr: 0.5\nsbcb-head: none\nval_split: none\n")
    run = tmp_path / "r"
    assert main(["train", *TINY, "--config", str(cfg), "--lr", "0.02", "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["iters"] == 1 and saved["train"]["lr"] == 0.02 and saved["model"]["sbcb_head"] == "none"
    assert load_checkpoint(run / "last.pt")["model"]["kwargs"]["sbcb_head"] == "none"
    assert not (run / "val_log.csv").exists()


def test_sbcb_options_are_recorded_and_rebuilt_exactly(tmp_path, one_thread, capsys):
    from sbcb.train.config import Config

    run = tmp_path / "r"
    flags = ["--radius", "3", "--alpha", "2", "--beta", "0.5", "--head-scale", "0.5", "--aux-weight", "0.3"]
    flags += ["--sbcb-head", "dds", "--fcn-aux", "--boundary-radii", "3", "5", "--val-every", "0"]
    assert main(["train", *TINY, *flags, "--iters", "1", "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    ckpt = load_checkpoint(run / "last.pt")
    for record in (saved, ckpt["config"]):  # the whole configuration, in both places
        assert record["data"]["radius"] == 3.0
        assert (record["model"]["alpha"], record["model"]["beta"], record["model"]["head_scale"]) == (2.0, 0.5, 0.5)
        assert record["model"]["aux_weight"] == 0.3 and record["train"]["boundary_radii"] == [3, 5]
        assert Config.from_dict(record) == Config.from_dict(ckpt["config"])
    val = list(csv.DictReader(open(run / "val_log.csv")))
    assert {"bf3", "bf5"} <= set(val[0])  # the validation used the configured boundary-F radii
    net = load_model(run / "last.pt")  # what `sbcb eval` rebuilds
    assert (net.radius, net.alpha, net.beta, net.head_scale, net.aux_weight) == (3.0, 2.0, 0.5, 0.5, 0.3)
    assert net.head_name == "dds" and net.aux_head is not None
    sd, ref = net.state_dict(), ckpt["state_dict"]
    assert list(sd) == list(ref) and all(torch.equal(sd[k], ref[k]) for k in sd)
    # the transforms make the boundary GT with the same radius as the wrapper
    from sbcb.train.run import build_datasets

    train_set, _, _ = build_datasets(Config.from_dict(saved))
    assert "radius=3.0" in repr(train_set.transform)
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--radii", "3", "--no-progress", "--sbd-thresholds", "3"]) == 0
    assert "SBD" in capsys.readouterr().out


def _cli(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "sbcb", *args], env=env, **kw)


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_resume_is_bit_identical(tmp_path):
    args = ["train", *TINY, "--iters", "6", "--ckpt-every", "2", "--val-every", "6", "--num-samples", "5"]
    ref = _cli([*args, "--out", str(tmp_path / "ref")])
    victim = _cli([*args, "--out", str(tmp_path / "victim")])
    first = tmp_path / "victim" / "iter_0000002.pt"
    deadline = time.time() + 600
    while not first.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert ref.wait(timeout=900) == 0
    step = load_checkpoint(tmp_path / "victim" / "last.pt")["step"]
    assert step in (2, 4)  # killed after the first checkpoint, before the end
    resumed = _cli(["train", "--resume", "--out", str(tmp_path / "victim"), "--no-progress"])
    assert resumed.wait(timeout=900) == 0
    a = load_checkpoint(tmp_path / "ref" / "last.pt")
    b = load_checkpoint(tmp_path / "victim" / "last.pt")
    assert a["step"] == b["step"] == 6
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for k in ("miou", "bf3"):
        assert np.isclose(a["metrics"][k], b["metrics"][k], rtol=0, atol=0)
