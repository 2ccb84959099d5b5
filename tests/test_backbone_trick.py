"""Backbone trick (Tab. 7): same parameters, original weights load, side strides as in the paper; weight files."""

from __future__ import annotations

import pytest
import torch

from sbcb.backbone_trick import mod_convnext, mod_mit, resnet_variant
from sbcb.features import FeatureInfo, probe_features
from sbcb.weights import load_weights

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


RESNET_LEVELS = ["relu", "layer1", "layer2", "layer3", "layer4"]
# Tab. 7 / spec §5.3: side strides (stem, layer1..layer4)
TAB7 = {"classification": [2, 4, 8, 16, 32], "segmentation": [2, 4, 8, 8, 8], "hed": [1, 2, 4, 8, 8]}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", ["segmentation", "hed", "classification"])
def test_timm_resnet_variants(variant, tmp_path):
    model = timm.create_model("resnet18", pretrained=False, features_only=True)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    n = _count(model)
    torch.save(original, tmp_path / "r18.pth")
    resnet_variant(model, variant)
    assert _count(model) == n
    load_weights(model, tmp_path / "r18.pth")  # strict: every key and shape fits
    infos = [FeatureInfo(c, 0, "", index=i, channels_last=False) for i, c in enumerate(model.feature_info.channels())]
    assert [i.reduction for i in probe_features(model, infos, input_size=(64, 64))] == TAB7[variant]


def test_torchvision_resnet_hed_and_seg_output_sizes():
    # odd input 65 x 97, hand arithmetic with out = floor((in + 2p - d(k-1) - 1) / s) + 1:
    # seg: stem 7x7/2 p3 -> 33 x 49; max-pool 3x3/2 p1 -> 17 x 25 (layer1); layer2 /2 -> 9 x 13; layer3/4 stride 1
    #      with padding = dilation keep 9 x 13.
    # hed: stem stride 1 -> 65 x 97; max-pool -> 33 x 49; layer2 /2 -> 17 x 25; layer3 /2 -> 9 x 13; layer4 9 x 13.
    expected = {
        "segmentation": [(33, 49), (17, 25), (9, 13), (9, 13), (9, 13)],
        "hed": [(65, 97), (33, 49), (17, 25), (9, 13), (9, 13)],
    }
    for variant, sizes in expected.items():
        model = torchvision.models.resnet18(weights=None)
        state = model.state_dict()
        resnet_variant(model, variant)
        model.load_state_dict(state, strict=True)
        model.eval()
        shapes = {}
        hooks = [
            model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n, s=shapes: s.__setitem__(n, o.shape[-2:]))
            for n in RESNET_LEVELS
        ]
        with torch.no_grad():
            model(torch.randn(1, 3, 65, 97))
        for h in hooks:
            h.remove()
        assert [tuple(shapes[n]) for n in RESNET_LEVELS] == sizes
        layer4 = [m for m in model.layer4.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        assert all(m.dilation == (4, 4) and m.padding == (4, 4) for m in layer4)


def test_mod_convnext_and_mit():
    model = timm.create_model("convnext_atto", pretrained=False, features_only=True)
    state, n = model.state_dict(), _count(model)
    mod_convnext(model)
    assert _count(model) == n
    model.load_state_dict(state, strict=True)
    infos = [FeatureInfo(c, 0, "", index=i, channels_last=False) for i, c in enumerate(model.feature_info.channels())]
    assert [i.reduction for i in probe_features(model, infos, input_size=(64, 64))] == [2, 4, 8, 16]
    with pytest.raises(ValueError, match="not 4"):
        mod_convnext(model)  # already applied

    smp = pytest.importorskip("segmentation_models_pytorch")
    model = smp.Segformer("mit_b0", encoder_weights=None, classes=3)
    state, n = model.state_dict(), _count(model)
    mod_mit(model)
    assert _count(model) == n
    model.load_state_dict(state, strict=True)
    infos = [FeatureInfo(0, 0, "encoder", index=i) for i in (2, 3, 4, 5)]  # 0 = input, 1 = placeholder
    assert [i.reduction for i in probe_features(model, infos, input_size=(64, 64))] == [2, 4, 8, 16]


def test_weight_file_errors(tmp_path):
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_weights(model, tmp_path / "missing.pth")
    other = torchvision.models.resnet18(weights=None, num_classes=10)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "r18_10.pth")
    with pytest.raises(ValueError, match=r"shape mismatches.*fc\.weight: file \(10, 512\) vs model \(1000, 512\)"):
        load_weights(model, tmp_path / "r18_10.pth")
    # a backbone-only file into a model whose keys carry a prefix: the error suggests add_prefix
    wrapper = torch.nn.Module()
    wrapper.backbone = torchvision.models.resnet18(weights=None)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="add_prefix='backbone.'"):
        load_weights(wrapper, tmp_path / "r18.pth")
    load_weights(wrapper, tmp_path / "r18.pth", add_prefix="backbone.")
    assert torch.equal(wrapper.backbone.conv1.weight, model.conv1.weight)
    # DDP "module." prefixes are removed automatically
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pth")
    fresh = torchvision.models.resnet18(weights=None)
    load_weights(fresh, tmp_path / "ddp.pth")
    assert torch.equal(fresh.fc.weight, model.fc.weight)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch weights file"):
        load_weights(fresh, tmp_path / "junk.pth")
