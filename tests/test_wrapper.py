"""SBCB wrapper on pure-torch models: taps, return types, losses against hand-written references, strip exactness."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbcb.features import FeatureInfo, FeatureTaps, default_sides, probe_features
from sbcb.heads.fcn_aux import FCNAuxHead
from sbcb.wrapper import SBCB, SBCBOutput

K = 3


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinySeg(nn.Module):
    """Stem 1/2 (8 ch) -> stages 1/4 (16), 1/8 (24), 1/16 (32), 1/32 (40) -> 1x1 classifier, upsampled to input."""

    def __init__(self, num_classes: int = K) -> None:
        super().__init__()
        self.stem = _block(3, 8, 2)
        self.stage1 = _block(8, 16, 2)
        self.stage2 = _block(16, 24, 2)
        self.stage3 = _block(24, 32, 2)
        self.stage4 = _block(32, 40, 2)
        self.dropout = nn.Dropout2d(0.1)
        self.classifier = nn.Conv2d(40, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stage4(self.stage3(self.stage2(self.stage1(self.stem(x)))))
        return F.interpolate(self.classifier(self.dropout(f)), size=x.shape[-2:], mode="bilinear", align_corners=False)


SIDES = ["stem", "stage1", "stage2", "stage4"]


def sgd_step(module: nn.Module, *, lr: float) -> None:
    """Plain SGD by hand: torch.optim's first import pulls in torch._dynamo (seconds), which these tests avoid."""
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None


def _twins(seed: int = 0) -> tuple[TinySeg, TinySeg]:
    torch.manual_seed(seed)
    a = TinySeg()
    torch.manual_seed(seed)
    b = TinySeg()
    return a, b


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _reference_sbd_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spec §4.2 written out per image in float64: w_b = clamp((T - P_b) / P_b, 1, T), mean over K*H*W, batch mean."""
    total = 0.0
    b, k, h, w = logits.shape
    t = h * w
    for i in range(b):
        x = logits[i].double()
        y = target[i].double()
        p = y.sum().item()
        wb = min(max((t - p) / p, 1.0), t) if p > 0 else float(t)
        log_sig = torch.log(torch.sigmoid(x))
        log_one_minus = torch.log(1 - torch.sigmoid(x))
        total += (-(wb * y * log_sig + (1 - y) * log_one_minus)).mean().item()
    return torch.tensor(total / b)


def test_explicit_sides_measure_channels_and_strides():
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, probe_size=(64, 64))
    # TinySeg's architecture above: channels 8, 16, 24, 40 at strides 2, 4, 8, 32
    assert [i.num_chs for i in net.side_infos] == [8, 16, 24, 40]
    assert [i.reduction for i in net.side_infos] == [2, 4, 8, 32]
    feats = net.extract_features(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 32, 48), (2, 16, 16, 24), (2, 24, 8, 12), (2, 40, 2, 3)]


def test_head_strides_come_from_the_sides_not_from_head_options():
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, head_options={"side_layer": "original"}, probe_size=(64, 64))
    # TinySeg's strides 2, 4, 8, 32: the original side layers upsample each side by its own stride
    assert [side.stride for side in net.head.sides] == [2, 4, 8, 32]
    assert net.config["head_options"] == {"side_layer": "original"}
    old = {**net.config, "head_options": {"side_layer": "original", "strides": [2, 4, 8, 32]}}  # sbcb <= 0.2.0
    assert [side.stride for side in SBCB(TinySeg(), **old, probe_size=(64, 64)).head.sides] == [2, 4, 8, 32]
    with pytest.raises(ValueError, match="strides"):
        SBCB(TinySeg(), num_classes=K, sides=SIDES, head_options={"strides": [2, 4, 8, 16]}, probe_size=(64, 64))


def test_train_forward_is_the_users_forward_and_eval_returns_logits():
    a, b = _twins()
    net = SBCB(a, num_classes=K, sides=SIDES, probe_size=(64, 64))
    x = torch.randn(2, 3, 64, 64)
    net.train()
    b.train()
    torch.manual_seed(1)
    out = net.forward_outputs(x)
    torch.manual_seed(1)  # same dropout mask
    ref = b(x)
    torch.manual_seed(1)
    logits = net(x)  # train mode too: the model's exact output, no head
    torch.manual_seed(1)
    assert isinstance(logits, torch.Tensor) and torch.equal(logits, b(x))  # (both BNs updated twice)
    assert isinstance(out, SBCBOutput)
    assert torch.equal(out.seg, ref)
    assert set(out.sbd) == {"fuse", "last"}
    assert all(v.shape == (2, K, 64, 64) for v in out.sbd.values())
    assert out.aux is None
    net.eval()
    b.eval()
    y = net(x)
    assert isinstance(y, torch.Tensor) and torch.equal(y, b(x))
    # forward_outputs works in eval mode too (SBD evaluation)
    assert isinstance(net.forward_outputs(x), SBCBOutput)


def test_strip_is_exact_after_construction_and_after_training():
    a, b = _twins()
    net = SBCB(a, num_classes=K, sides=SIDES, fcn_aux="stage3", probe_size=(64, 64))
    stripped = net.strip()
    assert stripped is a
    # the probe forward ran in eval mode: every buffer (BN running stats, num_batches_tracked) is untouched
    sa, sb = stripped.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sum(p.numel() for p in stripped.parameters()) == sum(p.numel() for p in b.parameters())
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(stripped.eval()(x), b.eval()(x))
    assert _no_hooks(stripped)

    # a training step through the wrapper, then strip: still the plain model, no hooks, same keys
    net.train()
    mask = torch.randint(0, K, (2, 64, 64))
    bnd = torch.rand(2, K, 64, 64) > 0.8
    losses = net(x, mask, boundaries=bnd)
    sum(losses.values()).backward()
    assert a.stem[0].weight.grad is not None and a.stem[0].weight.grad.abs().sum() > 0  # SBD gradient reaches stem
    sgd_step(net, lr=0.1)
    stripped = net.strip()
    assert _no_hooks(stripped)
    assert list(stripped.state_dict()) == list(b.state_dict())
    # the wrapper's own keys are the model's under "model." plus the heads
    extra = {k for k in net.state_dict() if not k.startswith("model.")}
    assert extra and all(k.startswith(("head.", "aux_head.")) for k in extra)


def test_loss_terms_match_hand_written_references():
    torch.manual_seed(0)
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, fcn_aux="stage3", probe_size=(64, 64))
    net.train()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.randint(0, K, (2, 32, 32))
    mask[0, :4] = 255  # ignore
    mask[1, :, :3] = 7  # a void label >= K: excluded from CE (treated as ignore)
    bnd = torch.rand(2, K, 32, 32) > 0.85
    torch.manual_seed(5)  # the FCN aux head's dropout
    out = net.forward_outputs(x)
    losses = net.compute_losses(out, mask, boundaries=bnd)
    torch.manual_seed(5)
    called = net(x, mask, boundaries=bnd)  # the one call: the same losses inside one forward
    assert list(called) == list(losses) and all(torch.equal(called[k], losses[k]) for k in losses)
    assert set(losses) == {"loss_seg", "loss_sbd_fuse", "loss_sbd_last", "loss_aux"}
    ce_target = mask.clone()
    ce_target[ce_target == 7] = 255
    ref_seg = F.cross_entropy(out.seg.double(), ce_target, ignore_index=255)
    torch.testing.assert_close(losses["loss_seg"].double(), ref_seg, rtol=1e-5, atol=1e-6)
    aux_up = F.interpolate(out.aux.double(), size=(32, 32), mode="bilinear", align_corners=False)
    ref_aux = 0.4 * F.cross_entropy(aux_up, ce_target, ignore_index=255)
    torch.testing.assert_close(losses["loss_aux"].double(), ref_aux, rtol=1e-5, atol=1e-6)
    for key in ("fuse", "last"):  # alpha = 5 on each multi-label term (Eq. 1)
        ref = 5.0 * _reference_sbd_loss(out.sbd[key].detach(), bnd)
        torch.testing.assert_close(losses[f"loss_sbd_{key}"].detach().double(), ref.double(), rtol=1e-4, atol=1e-6)
    assert all(v.ndim == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_dds_binary_and_head_scale():
    net = SBCB(TinySeg(), num_classes=K, head="dds", sides=["stem", "stage1", "stage2", "stage3", "stage4"])
    net.train()
    out = net.forward_outputs(torch.randn(2, 3, 32, 32))
    assert set(out.sbd) == {"fuse", "side1", "side2", "side3", "side4", "side5"}
    losses = net.compute_losses(out, torch.randint(0, K, (2, 32, 32)), boundaries=torch.rand(2, K, 32, 32) > 0.8)
    assert set(losses) == {"loss_seg", "loss_sbd_fuse", *(f"loss_sbd_side{i}" for i in range(1, 6))}

    bbcb = SBCB(TinySeg(), num_classes=K, sides=SIDES, binary=True, head_scale=0.5)
    bbcb.train()
    out = bbcb.forward_outputs(torch.randn(2, 3, 32, 64))
    assert {k: tuple(v.shape) for k, v in out.sbd.items()} == {"fuse": (2, 1, 16, 32), "last": (2, 1, 16, 32)}
    losses = bbcb.compute_losses(out, torch.randint(0, K, (2, 32, 64)), boundaries=torch.rand(2, K, 32, 64) > 0.8)
    assert all(torch.isfinite(v) for v in losses.values())


def test_packed_boundaries_equal_dense():
    pytest.importorskip("sbcb.boundaries")
    from sbcb import boundaries

    if not hasattr(boundaries, "unpack_boundaries"):
        pytest.skip("sbcb.boundaries.unpack_boundaries not landed yet")
    k = 11  # two bytes per pixel
    net = SBCB(TinySeg(k), num_classes=k, sides=SIDES, probe_size=(64, 64))
    net.train()
    dense = torch.rand(2, k, 32, 32) > 0.7
    # independent packer: class c -> bit c % 8 (LSB first) of byte c // 8
    packed = np.packbits(dense.numpy(), axis=1, bitorder="little")
    assert packed.shape == (2, math.ceil(k / 8), 32, 32)
    assert torch.equal(net.boundary_targets(torch.zeros(2, 32, 32, dtype=torch.long), torch.from_numpy(packed)), dense)


def test_on_the_fly_gt_equals_given_gt():
    from sbcb import boundaries

    if not hasattr(boundaries, "mask_to_boundaries_torch"):
        pytest.skip("sbcb.boundaries.mask_to_boundaries_torch not landed yet")
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, probe_size=(64, 64))
    net.train()
    mask = torch.zeros(2, 32, 32, dtype=torch.long)
    mask[:, :, 16:] = 1
    mask[:, 20:, :] = 255
    out = net.forward_outputs(torch.randn(2, 3, 32, 32))
    otf = net.compute_losses(out, mask)
    # hand-worked GT (spec §2.2, r = 2): classes 0|1 meet at column 15|16 in rows 0..19 -> 2-px band on each side,
    # in both channels; ignore rows 20+ form no band; rows 18, 19 still see the transition inside the disk.
    gt = torch.zeros(2, K, 32, 32, dtype=torch.bool)
    gt[:, 0:2, 0:20, 14:18] = True
    assert torch.equal(net.boundary_targets(mask), gt)
    given = net.compute_losses(out, mask, boundaries=gt)
    assert all(torch.equal(otf[k], given[k]) for k in otf)


def test_on_the_fly_gt_on_the_cpu_equals_the_torch_twin_with_instances():
    # On the CPU boundary_targets uses the numpy/numba scan; it must give the max-pool twin's bands exactly.
    from sbcb.boundaries import mask_to_boundaries_torch

    torch.manual_seed(1)
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, probe_size=(64, 64), radius=1.5)
    mask = torch.randint(0, K, (3, 4, 5)).repeat_interleave(6, 1).repeat_interleave(6, 2)  # 24x30 blocks
    mask[0, :3] = 255
    mask[1, 5:9, 5:9] = K + 3  # a non-class id: forms bands, is no class
    inst = torch.randint(0, 3, (3, 24, 30))
    for instances in (None, inst):
        expected = mask_to_boundaries_torch(mask, K, radius=1.5, ignore_index=255, instance_mask=instances)
        got = net.boundary_targets(mask, instance_mask=instances)
        assert got.dtype == torch.bool and got.device == mask.device
        assert expected.any() and torch.equal(got, expected)


def test_default_side_rule():
    five = [FeatureInfo(c, r, f"l{i}") for i, (c, r) in enumerate(zip([64, 256, 512, 1024, 2048], [2, 4, 8, 8, 8]))]
    assert [i.module for i in default_sides(five)] == ["l0", "l1", "l2", "l4"]  # paper's 1+2+3+5
    assert default_sides(five, all_levels=True) == five  # DDS
    assert default_sides(five[1:]) == five[1:]  # four levels: all
    with pytest.raises(ValueError, match="at least 2"):
        default_sides(five[:1])


def test_nhwc_and_branch_list_taps():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 6, 3, 2, 1)
            self.b = nn.Conv2d(6, 5, 3, 2, 1)

        def forward(self, x):
            return self.a(x)

    class NHWC(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 7, 4, 4)

        def forward(self, x):
            return self.conv(x).permute(0, 2, 3, 1)

    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Conv2d(3, 4, 2, 2)
            self.q = nn.Conv2d(3, 6, 4, 4)

        def forward(self, x):
            return [self.p(x), self.q(x)]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nhwc = NHWC()
            self.branches = Branches()

        def forward(self, x):
            return self.nhwc(x).sum() + sum(t.sum() for t in self.branches(x))

    net = Net()
    infos = probe_features(net, [FeatureInfo(7, 0, "nhwc"), FeatureInfo(0, 0, "branches")], input_size=(32, 32))
    assert infos[0].channels_last and infos[0].num_chs == 7 and infos[0].reduction == 4
    assert infos[1].concat_branches and infos[1].num_chs == 10 and infos[1].reduction == 2
    x = torch.randn(2, 3, 32, 32)
    with FeatureTaps(net, infos).capture() as grab:
        net(x)
    nhwc, cat = grab()
    assert torch.equal(nhwc, net.nhwc.conv(x))
    q = F.interpolate(net.branches.q(x), size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(cat, torch.cat([net.branches.p(x), q], dim=1))


def test_clear_errors():
    with pytest.raises(ValueError, match="no submodule 'stage9'"):
        SBCB(TinySeg(), num_classes=K, sides=["stem", "stage9"])
    # no adapter knows TinySeg: the generic probe finds its five levels and the paper's rule takes 1, 2, 3, 5
    assert [i.module for i in SBCB(TinySeg(), num_classes=K).side_infos] == SIDES

    class Twice(TinySeg):
        def forward(self, x):
            self.stem(x)
            return super().forward(x)

    with pytest.raises(RuntimeError, match="ran 2 times"):
        SBCB(Twice(), num_classes=K, sides=SIDES)
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES)
    with pytest.raises(ValueError, match="expected K = 3"):
        net.boundary_targets(torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 5, 8, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="forward_outputs"):
        net.compute_losses(net(torch.randn(2, 3, 32, 32)), torch.zeros(2, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="pass masks too"):
        net(torch.randn(2, 3, 32, 32), boundaries=torch.zeros(2, K, 32, 32, dtype=torch.bool))


def test_fcn_aux_head_parameter_count_matches_paper():
    # spec §7: 3x3 conv 1024->256 (2,359,296) + BN (512) + 1x1 256->19 with bias (4,883) = 2,364,691 (paper +2.37M)
    assert sum(p.numel() for p in FCNAuxHead(1024, 19).parameters()) == 2_364_691


def test_sync_batchnorm_only_on_cuda_distributed():
    from sbcb.train.distributed import DistInfo, maybe_convert_sync_bn

    model = TinySeg()
    assert maybe_convert_sync_bn(model, DistInfo()) is model
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def test_deepcopy_and_state_dict_roundtrip():
    net = SBCB(TinySeg(), num_classes=K, sides=SIDES, probe_size=(64, 64))
    twin = copy.deepcopy(net)
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    twin.eval()
    a, b = net.forward_outputs(x), twin.forward_outputs(x)
    assert torch.equal(a.sbd["fuse"], b.sbd["fuse"])
    assert twin.strip() is not net.strip() and _no_hooks(net.strip())


def test_core_modules_import_no_optional_package():
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "import sbcb.wrapper, sbcb.features, sbcb.backbone_trick, sbcb.weights, sbcb.adapters, sbcb.heads.fcn_aux\n"
        "from sbcb.adapters import timm, smp, torchvision\n"
        "net = sbcb.wrapper.SBCB(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.Conv2d(4, 3, 3, 2, 1)),"
        " num_classes=3, sides=['0', '1'], probe_size=(16, 16))\n"
        "bad = [m for m in ('timm', 'segmentation_models_pytorch', 'torchvision', 'lightning') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
