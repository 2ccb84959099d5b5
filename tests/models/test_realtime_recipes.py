"""The Table 16 recipes (configs/cityscapes_{bisenetv1_r50,bisenetv2,stdc1}_*.yaml): schedules, models, strip.

Schedules come from the models' own published mmseg configs (``bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024``,
``bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024``, ``stdc1_4xb12-80k_cityscapes-512x1024``), independent of this code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("yaml")
pytest.importorskip("timm")

from sbcb.models import build_model, strip_model  # noqa: E402
from sbcb.train.config import Config, resolve  # noqa: E402
from sbcb.train.run import model_kwargs  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Table 16 rows -> (arch, encoder, crop, iterations, total batch, lr)
ROWS = {
    "cityscapes_bisenetv1_r50": ("bisenetv1", "resnet50", (1024, 1024), 160_000, 16, 0.05),
    "cityscapes_bisenetv2": ("bisenetv2", None, (1024, 1024), 160_000, 16, 0.05),
    "cityscapes_stdc1": ("stdc1", None, (512, 1024), 80_000, 48, 0.01),
}
CASES = [(row, variant) for row in ROWS for variant in ("baseline", "sbcb_casenet")]


def load(row: str, variant: str) -> Config:
    return resolve({}, config_path=CONFIG_DIR / f"{row}_{variant}.yaml")  # unknown keys or wrong types raise


@pytest.mark.parametrize(("row", "variant"), CASES)
def test_recipe_schedule_and_model(row, variant):
    config = load(row, variant)
    cfg = config.flat()
    arch, encoder, crop, iters, batch, lr = ROWS[row]
    assert (cfg["arch"], cfg["encoder"], tuple(cfg["crop"]), cfg["iters"]) == (arch, encoder, crop, iters)
    assert (cfg["batch_size"], cfg["lr"], cfg["momentum"], cfg["weight_decay"]) == (batch, lr, 0.9, 5e-4)
    assert (cfg["poly_power"], cfg["min_lr"], cfg["warmup_iters"], cfg["val_mode"]) == (0.9, 1e-4, 1000, "whole")
    assert tuple(cfg["scale_range"]) == (0.5, 2.0)
    kwargs = model_kwargs(config, 19)
    assert kwargs["sbcb_head"] == ("none" if variant == "baseline" else "casenet")
    # STDC + SBCB: the Detail Head is removed, as the paper does (P§7.3)
    if arch == "stdc1":
        assert (kwargs["factory_kwargs"] or {}).get("detail_head", True) == (variant == "baseline")


@pytest.mark.parametrize("row", ["cityscapes_bisenetv2", "cityscapes_stdc1"])
def test_sbcb_recipe_strips_to_the_baseline_recipe_model(row):
    base_kwargs = model_kwargs(load(row, "baseline"), 19)
    sbcb_kwargs = model_kwargs(load(row, "sbcb_casenet"), 19)
    torch.manual_seed(0)
    baseline = build_model(**base_kwargs)
    net = build_model(**sbcb_kwargs)
    stripped = strip_model(net)
    assert type(stripped) is type(baseline)
    # identical inference parameters; only the baseline's training-only Detail Head (STDC) is absent
    base_keys = [k for k in baseline.state_dict() if not k.startswith("detail_head.")]
    assert list(stripped.state_dict()) == base_keys
    print(f"{row}: {sum(p.numel() for p in net.parameters()):,} parameters with the SBD head")
