"""sbcb's encoder-decoder models (OCR, DenseASPP, ANN, GCNet, DNLNet, CCNet, FCN): parameter counts at the paper's
settings, training with and without SBCB on synthetic streets, exact strip, the paper's sides, ONNX parity.

Parameter references. mmseg's model zoo publishes no parameter counts, so each head is checked against a count of its
layers done by hand (arithmetic in the comments: a conv + BN has k*k*Cin*Cout + 2*Cout parameters, a conv with bias
k*k*Cin*Cout + Cout), and the backbones against published figures: torchvision ResNet-101 without fc has 42,500,160
parameters (spec §5.2) and the paper's Tab. 1c gives HRNet-W48 + FCN as 65.9M. Full-size models build on the meta
device (shapes only), which takes well under a second each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("timm")

from sbcb import SBCB  # noqa: E402
from sbcb.contract import DeclaresSides, HasAuxiliaryHeads  # noqa: E402
from sbcb.data.synthetic import render_street  # noqa: E402
from sbcb.models import build_model, build_segmentor, list_models  # noqa: E402
from sbcb.models.encoder_decoder import timm_encoder  # noqa: E402
from sbcb.segmentor import Segmentor  # noqa: E402

K = 19
ARCHS = ["ocr", "denseaspp", "ann", "gcnet", "dnlnet", "ccnet", "fcn"]
R101 = 42_500_160  # torchvision ResNet-101 without fc (spec §5.2)
CONV_BN_3x3_2048_512 = 9 * 2048 * 512 + 2 * 512  # 9,438,208: the first 3x3 conv of the FCN-style heads
CONV_BN_3x3_512_512 = 9 * 512 * 512 + 2 * 512  # 2,360,320
CONV_CAT_3x3 = 9 * (2048 + 512) * 512 + 2 * 512  # 11,797,504: conv on [input, feature]
CLS_512 = 512 * K + K  # 9,747
FCN_AUX_1024 = 9 * 1024 * 256 + 2 * 256 + 256 * K + K  # 2,364,691 (spec §7, the paper's "+2.37M")
OCR_BLOCK = (
    2 * (512 * 256 + 2 * 256 + 256 * 256 + 2 * 256)  # query and key: two 1x1 conv + BN each (197,632 each)
    + (512 * 256 + 2 * 256)  # value 131,584
    + (256 * 512 + 2 * 512)  # out 132,096
    + (1024 * 512 + 2 * 512)  # fuse [context, feature] 525,312
    + CLS_512
)  # = 1,194,003

# (arch, encoder, factory kwargs) -> (decode head, auxiliary head) parameters, K = 19
HEAD_PARAMS = {
    # CCHead: conv, criss-cross (q, k: 1x1 512->64 with bias, v: 1x1 512->512 with bias, gamma), conv, conv_cat, cls
    ("ccnet", None, ()): (
        CONV_BN_3x3_2048_512
        + (2 * (512 * 64 + 64) + 512 * 512 + 512 + 1)
        + CONV_BN_3x3_512_512
        + CONV_CAT_3x3
        + CLS_512,
        0,
    ),  # 23,934,100
    # GCHead: context block = mask 1x1 512->1 (513) + 512->128 (65,664) + LayerNorm (256) + 128->512 (66,048)
    ("gcnet", None, ()): (
        CONV_BN_3x3_2048_512 + (513 + 65_664 + 256 + 66_048) + CONV_BN_3x3_512_512 + CONV_CAT_3x3 + CLS_512,
        0,
    ),  # 23,738,260
    # DNLHead: g, theta, phi 1x1 512->256 with bias, unary mask 1x1 512->1, out 1x1 256->512 + BN
    ("dnlnet", None, ()): (
        CONV_BN_3x3_2048_512
        + (3 * (512 * 256 + 256) + 513 + 256 * 512 + 2 * 512)
        + CONV_BN_3x3_512_512
        + CONV_CAT_3x3
        + CLS_512,
        0,
    ),  # 24,132,372
    # FCN (fcn_r101-d8): conv, conv, conv_cat, cls
    ("fcn", None, ()): (CONV_BN_3x3_2048_512 + CONV_BN_3x3_512_512 + CONV_CAT_3x3 + CLS_512, 0),  # 23,605,779
    # ANNHead: AFNB attention (q 2048->256+BN, k 1024->256+BN, v 1024->256 bias, out 256->2048 bias),
    # AFNB fuse 1x1 4096->2048 + BN, bottleneck 3x3 2048->512 + BN, APNB attention (q, k 512->256 + BN, v 512->256,
    # out 256->512), APNB fuse 1x1 1024->512 + BN, cls
    ("ann", None, ()): (
        (2048 * 256 + 512 + 1024 * 256 + 512 + 1024 * 256 + 256 + 256 * 2048 + 2048)
        + (4096 * 2048 + 2 * 2048)
        + CONV_BN_3x3_2048_512
        + (2 * (512 * 256 + 512) + 512 * 256 + 256 + 256 * 512 + 512)
        + (1024 * 512 + 2 * 512)
        + CLS_512,
        0,
    ),  # 20,468,243
    # OCR on R101 d8 (Tab. 12): bottleneck 3x3 2048->512 + BN and the object context; regions: the FCN aux head
    ("ocr", "resnet101", ()): (CONV_BN_3x3_2048_512 + OCR_BLOCK, FCN_AUX_1024),  # 10,632,211 + 2,364,691
    # OCR on HRNet-W48 (Tab. 11): branches concatenated to 48+96+192+384 = 720 channels; bottleneck 3x3 720->512,
    # regions: 1x1 720->720 + BN and a 1x1 classifier, no dropout
    ("ocr", None, ()): (9 * 720 * 512 + 2 * 512 + OCR_BLOCK, 720 * 720 + 2 * 720 + 720 * K + K),  # 4,512,787 + 533,539
    # DenseASPP on R50 d8 (Tab. 11), 512/128: layer i reads c_i = 2048 + 128 i (i = 0..4, sum 11,520; BN on i > 0,
    # sum 9,472): 1x1 c_i->512 with bias, BN(512), 3x3 512->128 with bias; cls 1x1 (2048 + 640)->19
    ("denseaspp", None, ()): (
        (11_520 * 512 + 5 * 512) + 2 * 9_472 + 5 * 2 * 512 + 5 * (9 * 512 * 128 + 128) + (2048 + 5 * 128) * K + K,
        0,
    ),  # 8,925,715
    # DenseASPP on DenseNet-169 (Tab. 11) with the DenseASPP authors' 336/168: c_i = 1664 + 168 i (sum 10,000;
    # i > 0: 8,336)
    ("denseaspp", "densenet169", (("hidden_channels", 336), ("growth_channels", 168))): (
        (10_000 * 336 + 5 * 336) + 2 * 8_336 + 5 * 2 * 336 + 5 * (9 * 336 * 168 + 168) + (1664 + 5 * 168) * K + K,
        0,
    ),  # 5,970,307
}


def count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def build_meta(arch: str, encoder: str | None, kwargs: dict) -> torch.nn.Module:
    with torch.device("meta"):
        return build_segmentor(arch, num_classes=K, encoder=encoder, factory_kwargs=kwargs)


@pytest.mark.parametrize("key", sorted(HEAD_PARAMS, key=str), ids=lambda k: f"{k[0]}-{k[1] or 'default'}")
def test_head_parameters_match_the_hand_count(key):
    arch, encoder, kwargs = key
    model = build_meta(arch, encoder, dict(kwargs))
    head, aux = HEAD_PARAMS[key]
    print(f"{arch} {encoder or '(default)'}: total {count(model):,}, head {count(model.decode_head):,}")
    assert (count(model.decode_head), count(model.aux_head)) == (head, aux)
    if encoder == "resnet101" or (encoder is None and arch not in ("ocr", "denseaspp")):
        assert count(model.encoder) == R101  # the paper's d8 ResNet-101: dilation adds no parameters


def test_hrnet_w48_fcn_matches_the_paper_table_1c():
    model = build_meta("fcn", "hrnet_w48", {})
    # paper Tab. 1c: "HR48 FCN" 65.9M (mmseg fcn_hr48: 1x1 720->720 + BN, 1x1 classifier)
    assert round(count(model) / 1e6, 1) == 65.9
    assert count(model.decode_head) == 720 * 720 + 2 * 720 + 720 * K + K


def test_registry_and_defaults():
    assert set(ARCHS) <= set(list_models())
    assert isinstance(build_meta("ocr", None, {}).encoder, torch.nn.Module)
    # the paper's default encoders: HRNet-W48 for OCR, ResNet-50 d8 for DenseASPP, ResNet-101 d8 for the rest
    assert count(build_meta("ocr", None, {}).encoder) == count(build_meta("fcn", "hrnet_w48", {}).encoder)
    assert count(build_meta("denseaspp", None, {}).encoder) == 23_508_032  # torchvision R50 without fc
    assert build_meta("ccnet", None, {}).encoder.feature_info.reduction() == [2, 4, 8, 8, 8]


def test_densenet_is_dilated_to_output_stride_8_without_new_parameters():
    plain = timm_encoder("densenet121", output_stride=None)
    dilated = timm_encoder("densenet121", output_stride=8)
    assert count(plain) == count(dilated)
    assert dilated.feature_info.reduction() == [2, 4, 8, 8, 8]
    with torch.no_grad():
        shapes = [tuple(f.shape[-2:]) for f in dilated.eval()(torch.randn(1, 3, 64, 64))]
    assert shapes == [(32, 32), (16, 16), (8, 8), (8, 8), (8, 8)]


# -- training on synthetic streets ------------------------------------------------------------------------------------

TINY = {"resnet": "resnet18", "hrnet": "hrnet_w18_small"}
TRAIN_CASES = [(arch, "resnet") for arch in ARCHS] + [("ocr", "hrnet"), ("fcn", "hrnet")]
NUM_CLASSES = 11  # SyntheticStreets classes


@pytest.fixture(scope="module")
def street_batch() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    images, labels = zip(*(render_street(rng, 64, 64)[:2] for _ in range(2)))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.25, torch.from_numpy(np.stack(labels)).long()


# narrow heads keep each training test around a second on a shared CPU
TINY_HEAD = {
    "ocr": {"channels": 32, "key_channels": 16},
    "denseaspp": {"hidden_channels": 32, "growth_channels": 16},
    "ann": {"channels": 32, "project_channels": 16},
}


def build_tiny(arch: str, family: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {**TINY_HEAD.get(arch, {"channels": 32}), **kwargs}
    return build_segmentor(arch, num_classes=NUM_CLASSES, encoder=TINY[family], factory_kwargs=options)


def train_losses(net: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One training forward through the call contract: ``net(images, masks)`` -> the weighted losses."""
    assert isinstance(net, Segmentor), "wrap a bare model with Segmentor(model, num_classes=K), as the trainer does"
    net.train()
    losses = net(images, masks)
    assert isinstance(losses, dict)
    return losses


def train_steps(net: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, steps: int = 2) -> list[float]:
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(steps):
        losses = train_losses(net, images, masks)
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total.detach()))
    return totals


@pytest.mark.parametrize(("arch", "family"), TRAIN_CASES, ids=lambda v: str(v))
def test_trains_with_and_without_sbcb_and_strips_exactly(arch, family, street_batch):
    images, masks = street_batch
    baseline = build_tiny(arch, family)
    assert isinstance(baseline, DeclaresSides) and isinstance(baseline, HasAuxiliaryHeads)
    before = {k: v.clone() for k, v in baseline.state_dict().items()}
    base_net = Segmentor(baseline, num_classes=NUM_CLASSES)  # what `sbcb train` trains for a baseline row
    # the baseline trains the model's own auxiliary loss too (OCR's soft-region head)
    assert set(train_losses(base_net, images, masks)) == {"loss_seg"} | ({"loss_aux"} if arch == "ocr" else set())
    train_steps(base_net, images, masks)
    assert any(not torch.equal(before[k], v) for k, v in baseline.state_dict().items())

    model = build_tiny(arch, family)
    net = SBCB(model, num_classes=NUM_CLASSES)  # no sides=: the model declares the paper's
    losses = train_losses(net, images, masks)
    expected = {"loss_seg", "loss_sbd_fuse", "loss_sbd_last"} | ({"loss_aux"} if arch == "ocr" else set())
    assert set(losses) == expected
    train_steps(net, images, masks)
    stripped = net.strip()
    assert stripped is model
    assert list(stripped.state_dict()) == list(build_tiny(arch, family).state_dict())
    stripped.eval()
    with torch.no_grad():
        logits = stripped(images)
    assert logits.shape == (2, NUM_CLASSES, 64, 64)


def test_sides_follow_the_paper_rules():
    resnet = SBCB(build_tiny("ccnet", "resnet"), num_classes=NUM_CLASSES)
    encoder = resnet.model.encoder
    # five levels (stem 1/2, layer1..4): levels 1, 2, 3, 5 (spec §5.1/5.2)
    chosen = [0, 1, 2, 4]
    assert [s.num_chs for s in resnet.side_infos] == [encoder.feature_info.channels()[i] for i in chosen]
    assert [s.reduction for s in resnet.side_infos] == [2, 4, 8, 8]
    hrnet = SBCB(build_tiny("ocr", "hrnet"), num_classes=NUM_CLASSES)
    branches = hrnet.model.encoder.feature_info.channels()[1:]
    # spec §5.4: stem (1/4), then stages 2, 3, 4 with their branches resized to 1/4 and concatenated
    assert [s.num_chs for s in hrnet.side_infos] == [64, *np.cumsum(branches)[1:].tolist()]
    assert {s.reduction for s in hrnet.side_infos} == {4}


def test_forward_runs_no_auxiliary_head_and_the_aux_loss_is_weighted(street_batch):
    images, masks = street_batch
    model = build_tiny("ccnet", "resnet", aux_head=True).eval()
    calls = []
    model.aux_head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        logits = model(images)
    assert calls == [] and logits.shape == (2, NUM_CLASSES, 64, 64)
    out = model.forward_train(images)
    torch.testing.assert_close(out.logits, logits)  # eval mode: the same logits
    up = F.interpolate(out.aux["aux"], size=(64, 64), mode="bilinear", align_corners=False)
    expected = 0.4 * F.cross_entropy(up, masks, ignore_index=255)  # mmseg's auxiliary weight
    torch.testing.assert_close(model.auxiliary_losses(out.aux, masks)["loss_aux"], expected)


def test_segmentor_trains_the_models_auxiliary_head(street_batch):
    images, masks = street_batch
    model = build_tiny("ocr", "resnet")
    net = Segmentor(model, num_classes=NUM_CLASSES).train()
    torch.manual_seed(1)  # dropout: the same draws in both forwards
    losses = net(images, masks)
    # the slow, obvious version: the model's own training forward, CE on its logits, its own auxiliary loss
    torch.manual_seed(1)
    out = model.forward_train(images)
    up = F.interpolate(out.logits, size=(64, 64), mode="bilinear", align_corners=False)
    expected = {"loss_seg": F.cross_entropy(up, masks, ignore_index=255), **model.auxiliary_losses(out.aux, masks)}
    assert set(losses) == {"loss_seg", "loss_aux"} == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value)
    # the trainer's LR groups: everything but the encoder (decode and auxiliary heads) is a head parameter
    head = {id(p) for p in net.head_parameters()}
    assert head == {id(p) for n, p in model.named_parameters() if not n.startswith("encoder.")}


def test_build_model_by_name_wraps_and_strips():
    net = build_model(arch="ocr", encoder="hrnet_w18_small", num_classes=NUM_CLASSES, sbcb_head="dds")
    baseline = build_model(arch="ocr", encoder="hrnet_w18_small", num_classes=NUM_CLASSES, sbcb_head="none")
    assert list(net.strip().state_dict()) == list(baseline.state_dict())


@pytest.mark.onnx
@pytest.mark.parametrize("arch", ARCHS + ["ocr-hrnet"])
def test_onnx_export_matches_pytorch(arch, tmp_path):
    pytest.importorskip("onnxruntime")
    from sbcb.export import export_onnx, run_onnx

    name, family = (arch.split("-")[0], "hrnet") if arch.endswith("hrnet") else (arch, "resnet")
    model = build_tiny(name, family).eval()
    net = SBCB(model, num_classes=NUM_CLASSES)
    train_steps(net, torch.randn(2, 3, 64, 64), torch.randint(0, NUM_CLASSES, (2, 64, 64)), steps=1)
    stripped = net.strip().eval()
    path = export_onnx(stripped, tmp_path / "m.onnx", torch.randn(1, 3, 64, 64))
    for shape in [(1, 3, 64, 64), (2, 3, 96, 64)]:  # the second checks the dynamic batch / height axes
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = stripped(x)
        got = torch.from_numpy(run_onnx(path, x))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(8, 8), (13, 7), (3, 5)])
def test_ann_pyramid_pool_equals_adaptive_average_pooling(size):
    from sbcb.models.ann import pyramid_pool

    x = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 3, 6, 8)], dim=2)
    torch.testing.assert_close(pyramid_pool(x, (1, 3, 6, 8)), expected)


def test_recipes_exist_for_every_row_of_tables_11_and_12():
    from pathlib import Path

    names = {p.stem for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")}
    rows = [
        # Tab. 11 (backbones)
        "denseaspp_r50", "denseaspp_densenet169", "dlv3_resnest101", "ocr_hr18", "ocr_hr48", "dlv3_mobilenetv2",
        "lraspp_mobilenetv3",
        # Tab. 12 (heads, ResNet-101)
        "fcnd8_r101", "pspnet_r101", "ann_r101", "gcnet_r101", "dlv3_r101", "dnlnet_r101", "ccnet_r101",
        "upernet_r101", "ocr_r101",
    ]  # fmt: skip
    for dataset in ("cityscapes", "synthia"):  # a: Cityscapes, b: Synthia
        for row in rows:
            assert {f"{dataset}_{row}_baseline", f"{dataset}_{row}_sbcb_casenet"} <= names, row
