"""Channel-Merge and Two-Stream Merge (spec §6): training, inference honesty, hand-counted costs, gradients, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

smp = pytest.importorskip("segmentation_models_pytorch")

from sbcb.contract import HasAuxiliaryHeads  # noqa: E402
from sbcb.data.synthetic import SyntheticStreets  # noqa: E402
from sbcb.fusion import ChannelMerge, TwoStreamMerge, build_fused  # noqa: E402
from sbcb.fusion.common import context_features, finish  # noqa: E402
from sbcb.models import strip_model  # noqa: E402
from sbcb.segmentor import Segmentor  # noqa: E402

K = 11  # SyntheticStreets classes
SIZE = (64, 128)


def segmentor(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "pspnet":  # PSP on the last stage, as the paper's (smp's default stops at 1/8 with depth 3)
        return smp.PSPNet("resnet18", encoder_weights=None, classes=K, encoder_depth=5, upsampling=32)
    return smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=K, encoder_output_stride=8)


def batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    ds = SyntheticStreets(n, size=SIZE)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = torch.stack(
        [(torch.from_numpy(ds[i]["image"]).permute(2, 0, 1).float() / 255 - mean) / std for i in range(n)]
    )
    masks = torch.stack([torch.from_numpy(ds[i]["label"].astype(np.int64)) for i in range(n)])
    return images, masks


def training_losses(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One training forward through the call contract, exactly as the trainer makes it (no special case)."""
    net = Segmentor(model, num_classes=K).train()
    return net(images, masks)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_macs(model: torch.nn.Module, images: torch.Tensor) -> int:
    """Conv + matmul multiply-accumulates of one eval forward (aten FLOPs / 2; BN, resizes, pointwise: 0)."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() // 2


VARIANTS = [("pspnet", "channel-merge"), ("deeplabv3plus", "channel-merge"), ("deeplabv3plus", "two-stream")]


@pytest.mark.parametrize("arch", ["pspnet", "deeplabv3plus"])
def test_reentry_split_reproduces_the_segmentor(arch):
    seg = segmentor(arch).eval()
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        features = seg.encoder(x)
        for reentry in ("context", "decoder"):
            assert torch.equal(finish(seg, features, context_features(seg, features, reentry), reentry), seg(x))


@pytest.mark.parametrize(("arch", "fusion"), VARIANTS)
def test_trains_on_synthetic_data_and_deploys_exactly(arch, fusion):
    model = build_fused(segmentor(arch), fusion, num_classes=K)
    assert isinstance(model, HasAuxiliaryHeads)
    images, masks = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _ in range(2):
        losses = training_losses(model, images, masks)
        assert set(losses) == {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"}
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    model.eval()
    deployed = strip_model(model)  # the export path calls strip(): it must keep every used branch
    with torch.no_grad():
        train_logits = model.forward_train(images).logits
        assert torch.allclose(deployed(images), model(images), atol=1e-5)
        assert torch.allclose(model(images), train_logits, atol=1e-5)  # forward = the training path's logits
    if fusion == "two-stream":
        assert deployed is model  # every SBD part feeds the ASPP
    else:
        assert count(deployed) < count(model)
        with pytest.raises(RuntimeError, match="deployable"):
            deployed.forward_train(images)


def test_channel_merge_dlv3p_extra_parameters_and_macs_by_hand():
    base, seg = segmentor("deeplabv3plus"), segmentor("deeplabv3plus")
    model = ChannelMerge(seg, num_classes=K)
    # resnet18 sides (stem, layer1, layer2, layer4) = 64, 64, 128, 512 ch; side outputs c = 1, 1, 1, K = 11;
    # ASPP output C = 256, so W = 256 + 3 + 11 = 270 = hidden D.
    pre = (64 + 2) + (64 + 2) + (128 + 2) + (512 * 11 + 2 * 11)  # 1x1 (no bias) + BN: 66 + 66 + 130 + 5654 = 5916
    merge_used = (270 * 270 + 2 * 270) + 270 * 256  # 73440 + 69120 = 142560
    assert model.merge_width == 270
    assert count(model.deployable()) - count(base) == pre + merge_used == 148476
    train_only = 270 * 14 + 18 * (1 + 1 + 1 + 121) + 11 * 4  # unused rows 3780, 3x3 2c->c: 2232, fuse 44
    assert count(model) - count(base) == 148476 + train_only == 154532
    x = torch.randn(1, 3, *SIZE)
    # inference MACs at 64x128: side 1x1 convs at 32x64, 16x32, 8x16, 8x16 (OS 8) pixels, merge at 8x16 = 128 px
    side_macs = 2048 * 64 + 512 * 64 + 128 * 128 + 128 * 512 * 11  # 131072 + 32768 + 16384 + 720896 = 901120
    merge_macs = 128 * 270 * 270 + 128 * 270 * 256  # 9331200 + 8847360 = 18178560
    assert conv_macs(model.deployable(), x) - conv_macs(base, x) == side_macs + merge_macs == 19079680


def test_channel_merge_pspnet_extra_parameters_and_macs_by_hand():
    base, model = segmentor("pspnet"), ChannelMerge(segmentor("pspnet"), num_classes=K)
    # PPM output = layer4 512 + 4 pooled branches of 128 = 1024 ch; W = 1024 + 3 + 11 = 1038
    assert model.context_channels == 1024 and model.merge_width == 1038
    pre = 5916  # as for DeepLabV3+ (same encoder, same K)
    merge_used = (1038 * 1038 + 2 * 1038) + 1038 * 1024  # 1077444 + 2076 + 1062912 = 2142432
    assert count(model.deployable()) - count(base) == pre + merge_used == 2148348
    # inference MACs at 64x128 (no dilation, PPM at 1/32 = 2x4 = 8 px): side 1x1 convs at 32x64, 16x32, 8x16 and
    # 2x4 pixels, merge at 8 px
    x = torch.randn(1, 3, *SIZE)
    side_macs = 2048 * 64 + 512 * 64 + 128 * 128 + 8 * 512 * 11  # 131072 + 32768 + 16384 + 45056 = 225280
    merge_macs = 8 * 1038 * 1038 + 8 * 1038 * 1024  # 8619552 + 8503296 = 17122848
    assert conv_macs(model.deployable(), x) - conv_macs(base, x) == side_macs + merge_macs == 17_348_128


def test_two_stream_extra_parameters_and_macs_by_hand():
    base, model = segmentor("deeplabv3plus"), TwoStreamMerge(segmentor("deeplabv3plus"), num_classes=K)
    # CASENet (spec §3.3): binary sides C_in + 2 + 9 -> 75, 75, 139; semantic 512*11 + 22 + 9*121 = 6743; fuse 44
    head = 75 + 75 + 139 + 6743 + 44  # 7076
    edge_branch = 11 * 256 + 2 * 256  # 1x1 K -> C (no bias) + BN: 3328
    project = 256 * 256  # the ASPP projection's extra input columns: 65536
    assert count(model.sbd_head) == head
    assert count(model) - count(base) == head + edge_branch + project == 75940
    x = torch.randn(1, 3, *SIZE)
    px = 64 * 128  # the SBD head's 3x3 convs and fuse run at the input size: 8192 px
    side_1x1 = 2048 * 64 + 512 * 64 + 128 * 128 + 128 * 512 * 11  # 901120, as in Channel-Merge
    side_3x3 = px * 9 * 3 + px * 9 * 121  # binary 221184 + semantic 8921088
    fuse = px * 11 * 3  # the K x (N - 1) mixing as a matmul (the per-class scale is elementwise): 270336
    aspp = 128 * 11 * 256 + 128 * 256 * 256  # edge branch 360448 + extra projection 8388608 at 1/8
    expected = side_1x1 + side_3x3 + fuse + aspp
    assert conv_macs(model, x) - conv_macs(base, x) == expected == 19062784


@pytest.mark.parametrize(("arch", "fusion"), VARIANTS)
def test_gradients_reach_the_backbone_from_both_losses(arch, fusion):
    model = build_fused(segmentor(arch), fusion, num_classes=K).train()
    images, masks = batch()
    stem = model.segmentor.encoder.conv1.weight  # side 1's feature comes from the stem
    deep = model.segmentor.encoder.layer4[0].conv1.weight
    for key in ("loss_seg", "loss_sbd"):
        model.zero_grad()
        losses = training_losses(model, images, masks)
        sum(v for k, v in losses.items() if k.startswith(key)).backward()
        assert stem.grad is not None and stem.grad.abs().sum() > 0, key
        assert deep.grad is not None and deep.grad.abs().sum() > 0, key
        if fusion == "channel-merge":
            # the segmentation loss trains the side 1x1 convs and the merge, but not the SBD-only 3x3 convs / fuse
            merge_grad = model.merge[0][0].weight.grad.abs().sum()
            post_grad = model.post_sides[0].weight.grad
            assert merge_grad > 0
            assert (post_grad is None or post_grad.abs().sum() == 0) == (key == "loss_seg")
        else:  # the segmentation loss reaches the SBD head through the edge branch (spec §6.2 proposal)
            assert model.sbd_head.sides[0].conv.weight.grad.abs().sum() > 0


def test_build_fused_refuses_wrappers_and_unknown_names():
    from sbcb import SBCB

    with pytest.raises(ValueError, match="unknown fusion"):
        build_fused(segmentor("deeplabv3plus"), "sum", num_classes=K)
    with pytest.raises(TypeError, match="SBCB wrapper"):
        build_fused(SBCB(segmentor("deeplabv3plus"), num_classes=K), num_classes=K)
    with pytest.raises(ValueError, match="DeepLabV3"):
        build_fused(segmentor("pspnet"), "two-stream", num_classes=K)


@pytest.mark.onnx
@pytest.mark.parametrize(("arch", "fusion"), VARIANTS)
def test_onnx_export_of_the_deployable_model_matches(arch, fusion, tmp_path):
    pytest.importorskip("onnxruntime")
    from sbcb.export import export_onnx, run_onnx

    model = build_fused(segmentor(arch), fusion, num_classes=K).eval()
    deployed = model.deployable().eval()
    x1, x2 = torch.randn(1, 3, *SIZE), torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        if arch == "pspnet":
            # smp's PPM exports its adaptive pooling only for a fixed input size (the plain smp PSPNet too), so
            # PSPNet is exported with static axes and checked on the traced shape only.
            # and pool sizes 3 and 6 must divide the 1/32 feature: 192x384 -> 6x12
            x1 = torch.randn(1, 3, 192, 384)
            path = tmp_path / "m.onnx"
            torch.onnx.export(deployed, (x1,), str(path), input_names=["image"], output_names=["logits"], dynamo=False)
            shapes = (x1,)
        else:
            path = export_onnx(deployed, tmp_path / "m.onnx", x1)
            shapes = (x1, x2)  # the second shape proves the dynamic axes
        for x in shapes:
            ref = model(x)
            got = torch.from_numpy(run_onnx(path, x))
            assert got.shape == ref.shape
            assert (got - ref).abs().max() < 1e-3
