"""transformers adapter: Segformer, UperNet (ConvNeXt), DPT, MobileViT from tiny configs, random weights, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from model_matrix import Pair, _hf, check_pair  # noqa: E402

from sbcb.adapters import find_backbone  # noqa: E402
from sbcb.adapters.transformers import segmentation_output  # noqa: E402

# name -> (side modules, strides); channels are the tiny configs' own widths (see benchmarks/model_matrix.py)
CASES = {
    # MiT: the four stages, 1/4 .. 1/32, all four (spec §5.6); hidden_sizes 8, 16, 24, 32
    "segformer": ([f"segformer.stages.{i}" for i in range(4)], [(8, 4), (16, 8), (24, 16), (32, 32)]),
    # the ConvNeXt backbone's feature_maps (what the UperNet head reads): hidden_sizes 8, 16, 24, 32
    "upernet-convnext": (["backbone"] * 4, [(8, 4), (16, 8), (24, 16), (32, 32)]),
    # DPT's reassemble layers over a 1/16 ViT: factors 4, 2, 1, 0.5 -> 1/4 .. 1/32; neck_hidden_sizes 8..32
    "dpt": ([f"neck.reassemble_stage.layers.{i}" for i in range(4)], [(8, 4), (16, 8), (24, 16), (32, 32)]),
    # MobileViT: last encoder layer at each stride (1/2 .. 1/32), five levels -> the paper's 1, 2, 3, 5
    "mobilevit": ([f"mobilevit.encoder.layer.{i}" for i in (0, 1, 2, 3, 4)], None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_levels_wrap_train_and_strip(name):
    modules, expected = CASES[name]
    spec = find_backbone(_hf(name)(), input_size=(64, 64))
    assert spec.family == "transformers" and [i.module for i in spec.levels] == modules
    if expected is not None:
        assert [(i.num_chs, i.reduction) for i in spec.levels] == expected
    else:
        assert [i.reduction for i in spec.levels] == [2, 4, 8, 16, 32]
    row = check_pair(Pair("transformers", name, _hf(name)), export=False)
    assert (row.wrap, row.train.split()[0], row.strip) == ("ok", "ok", "ok")


def test_segmentation_output_resizes_like_post_processing():
    logits = torch.randn(2, 4, 16, 16)
    out = {"logits": logits}
    assert segmentation_output(out) is logits
    # post_process_semantic_segmentation: bilinear, align_corners=False, to the target size
    ref = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(segmentation_output(out, (64, 64)), ref)


def test_wrapped_logits_are_resized_to_the_input_like_post_processing():
    from sbcb.segmentor import Segmentor
    from sbcb.wrapper import SBCB

    torch.manual_seed(0)
    model = _hf("segformer")().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        own = model(x).logits
        assert own.shape == (2, 4, 16, 16)  # Segformer predicts at 1/4
        ref = F.interpolate(own, size=(64, 64), mode="bilinear", align_corners=False)
        for net in (Segmentor(model, num_classes=4, probe_size=(64, 64)), SBCB(model, num_classes=4)):
            assert torch.equal(net.eval()(x), ref)
            assert torch.equal(net.forward_outputs(x).seg, ref)
    with pytest.raises(ValueError, match="SegformerForSemanticSegmentation outputs 4 classes"):
        Segmentor(model, num_classes=19)


def test_stripped_model_is_untouched_and_save_pretrained_roundtrips(tmp_path):
    from transformers import SegformerForSemanticSegmentation

    from sbcb.wrapper import SBCB

    torch.manual_seed(0)
    model = _hf("segformer")()
    net = SBCB(model, num_classes=4, probe_size=(64, 64))
    net.train()
    sum(net(torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))).values()).backward()
    stripped = net.strip()
    assert stripped is model and type(stripped) is SegformerForSemanticSegmentation
    stripped.save_pretrained(tmp_path)
    again = SegformerForSemanticSegmentation.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x).logits, stripped.eval()(x).logits)


def test_auxiliary_head_warns():
    import transformers as T

    cfg = T.UperNetConfig(num_labels=4, backbone_config=T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1] * 4))
    cfg.backbone_config.out_features = ["stage1", "stage2", "stage3", "stage4"]
    cfg.use_auxiliary_head, cfg.hidden_size, cfg.auxiliary_channels = True, 16, 8
    with pytest.warns(UserWarning, match="use_auxiliary_head=False"):
        find_backbone(T.UperNetForSemanticSegmentation(cfg), input_size=(64, 64))
