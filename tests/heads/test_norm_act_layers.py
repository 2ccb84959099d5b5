"""Heads take timm-style `norm_layer` / `act_layer` (a name or a class); the defaults stay BatchNorm + ReLU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sbcb.heads import HEADS, build_head
from sbcb.heads.fcn_aux import FCNAuxHead


def group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)  # the same affine parameters (2C) as BatchNorm2d(C)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("side_layer", ["sbcb", "original"])
def test_norm_and_act_layers_replace_batchnorm_and_relu(name, side_layer):
    channels, strides = [3, 4, 5], [2, 4, 8]
    options = {"side_layer": side_layer, "strides": strides}
    default = build_head(name, channels, 2, **options)
    head = build_head(name, channels, 2, **options, norm_layer=group_norm, act_layer="gelu")
    default_kinds = {type(m) for m in default.modules()}
    kinds = {type(m) for m in head.modules()}
    assert nn.BatchNorm2d in default_kinds and nn.BatchNorm2d not in kinds and nn.GroupNorm in kinds
    assert nn.ReLU not in kinds and (nn.GELU in kinds) == (nn.ReLU in default_kinds)
    assert n_params(head) == n_params(default)
    feats = [torch.randn(2, c, 16 // s, 16 // s) for c, s in zip(channels, strides)]
    assert all(torch.isfinite(v).all() for v in head(feats, (16, 16)).values())


def test_fcn_aux_head_layers():
    default = FCNAuxHead(4, 3, channels=8)
    assert isinstance(default.bn, nn.BatchNorm2d) and isinstance(default.act, nn.ReLU) and default.act.inplace
    head = FCNAuxHead(4, 3, channels=8, norm_layer=group_norm, act_layer="silu")
    assert isinstance(head.bn, nn.GroupNorm) and isinstance(head.act, nn.SiLU)
    assert n_params(head) == n_params(default)
    assert head(torch.randn(2, 4, 6, 6)).shape == (2, 3, 6, 6)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_groupnorm_by_name_builds_and_runs(name):
    # "groupnorm" is a listed name, so it must work as `norm_layer(channels)`: gcd(32, C) groups, i.e. timm's 32
    # groups where C allows it and fewer (down to 1) where it does not; here C = 64 -> 32, 4 -> 4, 1 -> 1.
    from sbcb.layers import get_norm_layer

    assert [get_norm_layer("groupnorm")(c).num_groups for c in (64, 48, 4, 19, 1)] == [32, 16, 4, 1, 1]
    channels = [3, 4, 64]
    head = build_head(name, channels, 2, norm_layer="groupnorm")
    assert any(isinstance(m, nn.GroupNorm) for m in head.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in head.modules())
    feats = [torch.randn(2, c, 16 // s, 16 // s) for c, s in zip(channels, (2, 4, 8))]
    assert all(torch.isfinite(v).all() for v in head(feats, (16, 16)).values())
