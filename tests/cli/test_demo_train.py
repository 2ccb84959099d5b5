"""`sbcb demo` (train job): both models trained, evaluated, compared, pictured; numbers match a re-evaluation."""

import json

import pytest
import torch

from sbcb.cli.main import main
from sbcb.train.checkpoint import load_model
from sbcb.train.evaluation import evaluate

pytest.importorskip("segmentation_models_pytorch")


@pytest.mark.slow  # two trainings and three evaluations: ~25 s on the shared machine
def test_demo_trains_baseline_and_sbcb(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "demo"
        args = ["demo", "--out", str(out), "--iters", "2", "--size", "64", "64", "--num-samples", "4",
                "--val-samples", "2", "--batch-size", "2", "--arch", "unet", "--encoder", "tu-mobilenetv3_small_050",
                "--arch-kwargs", '{"encoder_depth": 3, "decoder_channels": [16, 16, 8]}', "--pictures", "1",
                "--no-progress"]  # fmt: skip
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "| mIoU |" in printed and "| SBD mF (ODS) | n/a |" in printed  # the baseline has no SBD head
    res = json.loads((out / "results.json").read_text())
    assert "sbd_mf" in res["metrics"]["sbcb"] and "sbd_mf" not in res["metrics"]["baseline"]
    # The reported mIoU is that of the saved checkpoints, re-evaluated independently.
    from sbcb.train.config import Config
    from sbcb.train.run import build_datasets

    cfg = Config.from_flat(res["config"])
    _, val_set, info = build_datasets(cfg, val_boundaries=False)
    for name, kind in (("baseline", "Unet"), ("sbcb", "SBCB")):
        model = load_model(out / name / "last.pt")
        assert type(model).__name__ == kind
        again = evaluate(model, val_set, num_classes=info.num_classes, boundary_radii=(3,), progress=False)
        assert again["miou"] == pytest.approx(res["metrics"][name]["miou"], abs=1e-12)
    from sbcb.viz import read_png

    picture = read_png(out / "pictures" / "val_000.png")
    assert picture.shape == (64, 7 * 64 + 6 * 4, 3)  # image, GT, 2 predictions, SBD boundaries, 2 error maps
    assert "![val_000.png](pictures/val_000.png)" in (out / "report.md").read_text()
