"""smp adapter: `model.encoder` taps without the input entry and 0-channel placeholders, strides capped at OS."""

from __future__ import annotations

import pytest
import torch
from wrap_checks import K, check_wrapped

smp = pytest.importorskip("segmentation_models_pytorch")


def _declared(model, levels: list[int]) -> list[tuple[int, int]]:
    """(channels, stride) of the chosen encoder entries, from smp's own `out_channels` / `output_stride`.

    `levels` index the real levels: entries 1..depth of `encoder.out_channels` minus 0-channel placeholders.
    """
    enc = model.encoder
    real = [(c, min(2**i, enc.output_stride)) for i, c in enumerate(enc.out_channels) if i > 0 and c > 0]
    return [real[i] for i in levels]


CASES = [
    # DeepLabV3+ default encoder output stride 16: strides 2, 4, 8, 16, 16 -> sides 1, 2, 3, 5
    ("DeepLabV3Plus", "resnet18", [0, 1, 2, 4], False),
    # MiT: placeholder dropped, four levels from 1/4 -> all
    ("Segformer", "mit_b0", [0, 1, 2, 3], False),
    ("Unet", "efficientnet-b0", [0, 1, 2, 4], True),
    ("FPN", "tu-convnext_atto", [0, 1, 2, 3], True),
]


@pytest.mark.parametrize(
    "arch,encoder,levels",
    [pytest.param(a, e, lv, marks=[pytest.mark.slow] if slow else []) for a, e, lv, slow in CASES],
)
def test_smp_model(arch, encoder, levels):
    def build():
        return getattr(smp, arch)(encoder, encoder_weights=None, classes=K)

    expected = _declared(build(), levels)
    net = check_wrapped(build, expected)
    assert all(i.module == "encoder" and i.index not in (0, None) for i in net.side_infos)


def test_taps_equal_encoder_outputs_and_os8_strides():
    torch.manual_seed(0)
    model = smp.DeepLabV3("resnet18", encoder_weights=None, classes=K)  # encoder output stride 8
    from sbcb.wrapper import SBCB

    net = SBCB(model, num_classes=K, head="dds", fcn_aux=True, probe_size=(64, 64))
    assert [i.reduction for i in net.side_infos] == [2, 4, 8, 8, 8]
    # the JSON config rebuilds the same wrapper around a fresh model
    again = SBCB(smp.DeepLabV3("resnet18", encoder_weights=None, classes=K), probe_size=(64, 64), **net.config)
    assert again.side_infos == net.side_infos and list(again.state_dict()) == list(net.state_dict())
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.extract_features(x)
        ref = model.encoder(x)[1:]  # entry 0 is the input image itself
    assert len(feats) == 6 and all(torch.equal(a, b) for a, b in zip(feats, [*ref, ref[3]]))  # + aux = layer3


@pytest.mark.slow
def test_smp_hrnet_encoder_uses_stage_concat():
    from sbcb.wrapper import SBCB

    model = smp.Unet("tu-hrnet_w18_small", encoder_weights=None, classes=K)
    net = SBCB(model, num_classes=K, probe_size=(64, 64))
    assert [i.module for i in net.side_infos] == [f"encoder.model.{n}" for n in ("act2", "stage2", "stage3", "stage4")]
    assert [i.reduction for i in net.side_infos] == [4, 4, 4, 4]


@pytest.mark.slow
def test_resnet50_head_sizes_match_the_paper():
    # spec §3.3 / §3.7 / §7 and Tab. 4a: ResNet sides [64, 256, 512, 2048] with K = 19 give a 43,140-parameter
    # CASENet head (+0.05M), 2,928 for BBCB (+0.01M); the FCN aux head on layer3 (1024 ch) has 2,364,691 (+2.37M).
    from sbcb.wrapper import SBCB

    def build():
        return smp.DeepLabV3Plus("resnet50", encoder_weights=None, classes=19)

    net = SBCB(build(), num_classes=19, fcn_aux=True, probe_size=(64, 64))
    assert [i.num_chs for i in net.side_infos] == [64, 256, 512, 2048]
    assert sum(p.numel() for p in net.head.parameters()) == 43_140
    assert sum(p.numel() for p in net.aux_head.parameters()) == 2_364_691
    bbcb = SBCB(build(), num_classes=19, binary=True, probe_size=(64, 64))
    assert sum(p.numel() for p in bbcb.head.parameters()) == 2_928
