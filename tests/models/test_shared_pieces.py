"""The pieces several models share: layer lookup, the context head, `EncoderDecoder.from_inputs`, the real-time
models' auxiliary CE, semantic-side and fixed-option checks, the BiSeNet top-down context, the STDC factories."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from sbcb.layers import get_act_layer, get_norm_layer
from sbcb.models.attention_fusion import TopDownContext
from sbcb.models.bisenetv1 import ContextPath
from sbcb.models.encoder_decoder import DecodeInputs, EncoderDecoder, FCNHead, context_head
from sbcb.models.registry import MODELS, check_fixed_options
from sbcb.models.seg_head import SEMANTIC_SIDES, aux_cross_entropy, check_semantic_side, seg_cross_entropy
from sbcb.models.stdc import STDCSeg, stdc1, stdc2


def test_layer_lookup_by_name_or_callable():
    assert get_norm_layer("bn") is nn.BatchNorm2d and get_act_layer("gelu") is nn.GELU
    assert get_norm_layer(nn.InstanceNorm2d) is nn.InstanceNorm2d
    with pytest.raises(ValueError, match="unknown norm_layer 'ln'"):
        get_norm_layer("ln")
    with pytest.raises(ValueError, match="unknown act_layer 'tanh'"):
        get_act_layer("tanh")


def test_context_head_is_the_fcn_decode_head_with_the_block_after_the_first_conv():
    block = nn.Conv2d(8, 8, 1)
    head = context_head(6, 3, block, channels=8, dropout=0.0)
    assert isinstance(head, FCNHead) and head.context_block is block
    assert len(head.convs) == 2 and head.conv_cat is not None
    assert head([torch.randn(2, 6, 5, 5)]).shape == (2, 3, 5, 5)


def test_from_inputs_takes_the_level_choice_of_decode_inputs():
    inputs = DecodeInputs(levels=(-2, -1), aux_levels=(-3,), concat=False, channels=[4, 8], aux_channels=2)
    model = EncoderDecoder.from_inputs(nn.Identity(), nn.Identity(), inputs, aux_weight=0.3)
    assert model.decode_levels == (-2, -1) and model.aux_levels == (-3,) and not model.concat_levels
    assert model.aux_head is None and model.aux_weight == 0.3 and not model.cascade


def test_aux_cross_entropy_weights_every_map():
    masks = torch.randint(0, 3, (2, 8, 8))
    masks[0, 0, 0] = 255
    aux = {"aux_8": torch.randn(2, 3, 4, 4), "aux_16": torch.randn(2, 3, 2, 2)}
    losses = aux_cross_entropy(aux, masks, weight=0.5)
    assert set(losses) == {"loss_aux_8", "loss_aux_16"}
    for name, logits in aux.items():
        torch.testing.assert_close(losses[f"loss_{name}"], 0.5 * seg_cross_entropy(logits, masks))


def test_semantic_side_and_fixed_options_are_refused_with_the_model_name():
    assert [check_semantic_side(s) for s in SEMANTIC_SIDES] == list(SEMANTIC_SIDES)
    with pytest.raises(ValueError, match="sbcb_semantic_side must be one of"):
        check_semantic_side("spatial")
    check_fixed_options("X", output_stride=32)
    check_fixed_options("X", encoder="resnet18", own_backbone=False)
    with pytest.raises(ValueError, match="X has its own backbone"):
        check_fixed_options("X", encoder="resnet18")
    with pytest.raises(ValueError, match="X has output stride 32 only, got output_stride=8"):
        check_fixed_options("X", output_stride=8, own_backbone=False)


def test_top_down_context_modules_sit_at_the_top_of_the_host_state_dict():
    path = ContextPath(nn.Identity(), [8, 16, 32], 4)
    assert isinstance(path, TopDownContext)
    assert [name for name, _ in path.named_children()] == [
        "encoder",
        "global_context",
        "arm32",
        "arm16",
        "refine32",
        "refine16",
    ]
    maps = [torch.randn(2, c, s, s) for c, s in ((8, 8), (16, 4), (32, 2))]
    context8, context16 = path(maps)
    assert context8.shape == (2, 4, 8, 8) and context16.shape == (2, 4, 4, 4)


def test_stdc_factories_keep_their_names_and_signature():
    assert MODELS["stdc1"] is stdc1 and MODELS["stdc2"] is stdc2
    assert (stdc1.__name__, stdc2.__name__) == ("stdc1", "stdc2")
    assert "STDC813" in (stdc1.__doc__ or "") and "STDC1446" in (stdc2.__doc__ or "")
    params = list(inspect.signature(stdc2).parameters)
    assert params == ["num_classes", "encoder", "output_stride", "detail_head", "aux_weight"]
    assert isinstance(stdc1(num_classes=3, detail_head=False), STDCSeg)
