"""`sbcb predict` uses the run's own settings: its dataset's colours and its image scale (e.g. the CamVid study's
half resolution), and writes every picture at the input image's size."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sbcb.cli.main import main

pytest.importorskip("segmentation_models_pytorch")

TINY = [
    "--dataset", "synthetic", "--num-samples", "4", "--val-samples", "2", "--image-size", "64", "64",
    "--crop", "32", "32", "--arch", "unet", "--encoder", "tu-mobilenetv3_small_050", "--encoder-depth", "3",
    "--arch-kwargs", '{"decoder_channels": [16, 16, 8]}', "--batch-size", "2", "--workers", "0", "--no-progress",
]  # fmt: skip


def test_predict_applies_the_runs_image_scale_and_palette(tmp_path):
    from sbcb.data.synthetic import SyntheticStreets
    from sbcb.data.transforms import Rescale, build_eval_transform
    from sbcb.train.checkpoint import load_model
    from sbcb.train.evaluation import predict_logits
    from sbcb.viz import colorize, overlay, read_png, save_png

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path / "run"
        assert (
            main(["train", *TINY, "--image-scale", "0.5", "--iters", "1", "--val-every", "1", "--out", str(run)]) == 0
        )
        sample = SyntheticStreets(1, size=(64, 64), split="test")[0]
        save_png(tmp_path / "imgs" / "a.png", sample["image"])
        out = tmp_path / "pred"
        assert main(["predict", str(run / "last.pt"), str(tmp_path / "imgs"), "--out", str(out)]) == 0

        # The slow, explicit version: rescale 64x64 -> 32x32 as training did, predict, scores back to 64x64.
        info = SyntheticStreets.info
        model = load_model(run / "last.pt").eval()
        rgb = sample["image"]
        small = Rescale(0.5)(rgb, np.zeros(rgb.shape[:2], np.uint8), None)
        x = build_eval_transform(info.num_classes, ignore_index=info.ignore_index)(*small)["image"]
        assert tuple(x.shape[-2:]) == (32, 32)
        with torch.no_grad():
            scores = F.interpolate(predict_logits(model, x[None]), size=(64, 64), mode="bilinear", align_corners=False)
        expected = scores.argmax(1)[0].numpy().astype(np.uint8)
    finally:
        torch.set_num_threads(threads)
    label = read_png(out / "a_label.png")
    assert label.shape == (64, 64)
    np.testing.assert_array_equal(label, expected)
    # the run's dataset colours (synthetic), not a random palette
    colours = [tuple(c) for c in info.colors]
    want = overlay(rgb, colorize(expected, colours, ignore_index=info.ignore_index))
    np.testing.assert_array_equal(read_png(out / "a_overlay.png"), want)
    assert read_png(out / "a_boundaries.png").shape[:2] == (64, 64)
