"""Contract tests over every registered head: shapes, gradients, config round trip, input errors."""

from __future__ import annotations

import json

import pytest
import torch

from sbcb.heads import HEADS, CASENetHead, DDSHead, DFFHead, build_head, list_heads

# Tiny pyramid: side i has 3 + i channels at a resolution that halves per side (min 2 px), like a backbone's.
OUTPUT_SIZE = (12, 10)  # non-square, so a swapped H/W shows up


def make_features(n: int, batch: int = 2, *, requires_grad: bool = False) -> tuple[list[int], list[torch.Tensor]]:
    channels = [3 + i for i in range(n)]
    feats = []
    for i, c in enumerate(channels):
        h, w = max(OUTPUT_SIZE[0] >> (i + 1), 2), max(OUTPUT_SIZE[1] >> (i + 1), 2)
        feats.append(torch.randn(batch, c, h, w, requires_grad=requires_grad))
    return channels, feats


def expected_channels(name: str, n: int, k: int) -> dict[str, int]:
    # Every output the head's loss plan names: K channels for the multi-label loss, 1 for the binary loss on the
    # GT union (paper §3.3-3.5: CASENet/DFF fuse+last K; DDS sides 1..N-1 binary, side N and fuse K).
    plan = build_head(name, [3 + i for i in range(n)], k).loss_plan
    return {key: (k if kind == "multilabel" else 1) for key, kind in plan.items()}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_loss_plan_is_declared_and_matches_the_paper(name):
    from sbcb.losses import LOSS_KINDS

    plan = build_head(name, [3, 4, 5, 6], 19).loss_plan
    assert plan and set(plan.values()) <= set(LOSS_KINDS) and next(iter(plan)) == "fuse"
    paper = {  # spec §4.4 table, for the heads the paper defines
        "casenet": {"fuse": "multilabel", "last": "multilabel"},
        "dff": {"fuse": "multilabel", "last": "multilabel"},
        "dds": {"fuse": "multilabel", "side1": "binary", "side2": "binary", "side3": "binary", "side4": "multilabel"},
    }
    if name in paper:
        assert plan == paper[name]


def test_registry_names():
    assert list_heads() == ["casenet", "dds", "dff"]
    assert HEADS["casenet"] is CASENetHead and HEADS["dff"] is DFFHead and HEADS["dds"] is DDSHead


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("k", [1, 2, 19, 150])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_output_shapes(name, n, k):
    channels, feats = make_features(n)
    head = build_head(name, channels, k)
    out = head(feats, OUTPUT_SIZE)
    assert {key: tuple(v.shape) for key, v in out.items()} == {
        key: (2, c, *OUTPUT_SIZE) for key, c in expected_channels(name, n, k).items()
    }
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("n", [2, 4, 6])
def test_gradients_reach_every_feature_and_parameter(name, n):
    channels, feats = make_features(n, requires_grad=True)
    head = build_head(name, channels, 3)
    out = head(feats, OUTPUT_SIZE)
    # A random projection, not a plain sum: BN makes the sum of a normalised map's gradient vanish.
    loss = sum((v * torch.randn_like(v)).sum() for v in out.values())
    loss.backward()
    for i, f in enumerate(feats):
        assert f.grad is not None and f.grad.abs().sum() > 0, f"side {i + 1} gets no gradient"
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} gets no gradient"


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("size", [(6, 5), (3, 2), (24, 20)])
def test_any_output_size(name, size):
    """Reduced (half, quarter) and enlarged output sizes all work; output follows the request exactly."""
    channels, feats = make_features(4)
    out = build_head(name, channels, 2)(feats, size)
    assert all(tuple(v.shape[-2:]) == size for v in out.values())


@pytest.mark.parametrize("name", sorted(HEADS))
def test_config_is_json_and_rebuilds_an_equal_head(name):
    channels, feats = make_features(3)
    head = build_head(name, channels, 4, side_layer="original", strides=[2, 4, 8])
    config = json.loads(json.dumps(head.config))  # plain JSON types only
    rebuilt = build_head(head.name, **config)
    rebuilt.load_state_dict(head.state_dict())  # same keys and shapes
    head.eval(), rebuilt.eval()
    a, b = head(feats, OUTPUT_SIZE), rebuilt(feats, OUTPUT_SIZE)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_build_head_drops_none_options():
    head = build_head("casenet", [4, 8], 3, fuse_bias=None, side_layer=None)
    assert head.config["fuse_bias"] is False and head.config["side_layer"] == "sbcb"


@pytest.mark.parametrize("name", sorted(HEADS))
def test_input_errors_say_what_to_fix(name):
    channels, feats = make_features(3)
    head = build_head(name, channels, 2)
    with pytest.raises(ValueError, match="3 sides but got 2"):
        head(feats[:2], OUTPUT_SIZE)
    with pytest.raises(ValueError, match=r"feature 1 \(side 2\) must be \[B, 4"):
        head([feats[0], feats[0], feats[2]], OUTPUT_SIZE)
    with pytest.raises(ValueError, match="at least"):
        head(feats, (1, 10))
    with pytest.raises(ValueError, match="N >= 2"):
        build_head(name, [8], 2)
    with pytest.raises(ValueError, match="needs strides"):
        build_head(name, channels, 2, side_layer="original")
    with pytest.raises(ValueError, match="side_layer must be one of"):
        build_head(name, channels, 2, side_layer="deconv")
    with pytest.raises(TypeError):
        build_head(name, channels, 2, fuse_bais=True)  # typos are not swallowed
    with pytest.raises(ValueError, match="unknown SBD head"):
        build_head("hed", channels, 2)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_autocast_bf16_outputs_follow_the_autocast_dtype(name):
    channels, feats = make_features(3)
    head = build_head(name, channels, 3)
    reference = head(feats, OUTPUT_SIZE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(feats, OUTPUT_SIZE)
    for key, value in out.items():
        assert value.dtype == torch.bfloat16, key  # no silent fp32 copy of a [B, K, H, W] map
        # bf16 keeps ~3 significant digits; the fp32 run is the reference.
        torch.testing.assert_close(value.float(), reference[key], rtol=0.1, atol=0.1)


def forward_macs(name: str, channels: list[int], strides: list[int], k: int, size: tuple[int, int]) -> float:
    """Conv/matmul multiply-accumulates of one forward pass, counted on the meta device (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        head = build_head(name, channels, k)
        feats = [torch.empty(1, c, size[0] // s, size[1] // s) for c, s in zip(channels, strides)]
        with FlopCounterMode(display=False) as counter:
            head(feats, size)
    return counter.get_total_flops() / 2  # FLOPs count a multiply-accumulate as 2


def test_macs_match_the_paper_gflops_deltas():
    """Paper Tab. 1a (GFLOPs = MACs at a 512x1024 input, spec §10.1): SBCB with CASENet 508, DFF 545, DDS 2228.

    Same segmentor, so the head differences are DFF - CASENet = 545 - 508 = 37 (each value rounded: +-1) and
    DDS - CASENet = 2228 - 508 = 1720 (+-1). R101-d8 sides: stem 1/2, layer1 1/4, layer2..4 1/8.
    """
    size = (512, 1024)
    casenet = forward_macs("casenet", [64, 256, 512, 2048], [2, 4, 8, 8], 19, size)
    dff = forward_macs("dff", [64, 256, 512, 2048], [2, 4, 8, 8], 19, size)
    dds = forward_macs("dds", [64, 256, 512, 1024, 2048], [2, 4, 8, 8, 8], 19, size)
    assert abs((dff - casenet) / 1e9 - 37) <= 1
    assert abs((dds - casenet) / 1e9 - 1720) <= 1
    # CASENet alone, by hand (P = 512*1024 = 524,288 output pixels):
    #   semantic 3x3 19->19 at full res:      9*19*19 * 524,288        = 1,703,411,712
    #   semantic 1x1 2048->19 at 64x128:      2048*19 * 8,192          =   318,767,104
    #   binary 1x1s: 64*131,072 + 256*32,768 + 512*8,192               =    20,971,520
    #   binary 3x3 1->1 on three full-res maps: 3 * 9 * 524,288        =    14,155,776
    #   fuse: 19 x 3 binary-side mixing per pixel: 57 * 524,288        =    29,884,416
    #   (the per-class scale of S is elementwise, not counted)     total = 2,087,190,528
    assert casenet == 2_087_190_528
