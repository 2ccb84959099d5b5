"""The shared `SBDHead` base and what checkpoints depend on: config order, state-dict keys (heads and FCN aux)."""

from __future__ import annotations

import pytest
import torch

from sbcb.heads import HEADS, build_head
from sbcb.heads.base import SBDHead
from sbcb.heads.fcn_aux import FCNAuxHead

SIDE_OPTIONS = ["side_layer", "strides", "side_bias", "last_bias"]
LAYER_OPTIONS = ["original_norm", "norm_layer", "act_layer", "init"]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_registered_head_is_an_sbd_head_under_its_name(name):
    head = build_head(name, [3, 4, 5], 2)
    assert isinstance(head, SBDHead) and head.name == name
    assert head.in_channels == [3, 4, 5] and head.num_classes == 2 and head.strides is None


@pytest.mark.parametrize(
    ("name", "flags"),
    [("casenet", ["fuse_bias"]), ("dds", ["fuse_bias"]), ("dff", ["awl_pre_relu", "awl_sigmoid"])],
)
def test_config_keys_keep_their_order(name, flags):
    # config.yaml and checkpoints list the options in this order: the head's own flags right after last_bias.
    config = build_head(name, (3, 4), 2, side_layer="original", strides=(2, 4)).config
    assert list(config) == ["in_channels", "num_classes", *SIDE_OPTIONS, *flags, *LAYER_OPTIONS]
    assert config["in_channels"] == [3, 4] and config["strides"] == [2, 4]  # plain lists, for YAML/JSON


def test_casenet_state_dict_keys():
    side = ["reduce.weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"]
    side += ["norm.num_batches_tracked", "conv.weight"]
    keys = [f"sides.{i}.{key}" for i in range(2) for key in side] + ["fuse.weight"]
    assert list(build_head("casenet", [3, 4], 2).state_dict()) == keys


def test_fcn_aux_state_dict_keys_load_an_old_checkpoint():
    # Saved checkpoints name the layers conv / bn / classifier (sbcb.layers.ConvNormAct would make them 0 / 1).
    old = {
        "conv.weight": torch.randn(8, 4, 3, 3),
        "bn.weight": torch.rand(8),
        "bn.bias": torch.rand(8),
        "bn.running_mean": torch.rand(8),
        "bn.running_var": torch.rand(8) + 0.5,
        "bn.num_batches_tracked": torch.tensor(3),
        "classifier.weight": torch.randn(3, 8, 1, 1),
        "classifier.bias": torch.randn(3),
    }
    head = FCNAuxHead(4, 3, channels=8).eval()
    head.load_state_dict(old)  # strict: same keys and shapes
    assert list(head.state_dict()) == list(old)
    x = torch.randn(2, 4, 5, 6)
    manual = torch.nn.functional.conv2d(x, old["conv.weight"], padding=1)
    manual = torch.nn.functional.batch_norm(
        manual, old["bn.running_mean"], old["bn.running_var"], old["bn.weight"], old["bn.bias"]
    )
    manual = torch.nn.functional.conv2d(manual.relu(), old["classifier.weight"], old["classifier.bias"])
    torch.testing.assert_close(head(x), manual)
