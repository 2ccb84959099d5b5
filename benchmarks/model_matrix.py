"""The model matrix of docs/models.md: every supported (model, backbone) pair wrapped with no extra arguments.

For each pair: `SBCB(model, num_classes=K)` (or the one-line reason it fails), the sides it chose, one training step
(finite losses, gradients in the SBD head), whether every parameter got a gradient in that step (what
DistributedDataParallel without `find_unused_parameters` needs; the 2-rank gloo runs are in
tests/adapters/test_ddp_models.py), `strip()` against a twin built from the same seed and never wrapped (the same
object, `torch.equal` outputs, the same state_dict keys), and ONNX export of the stripped model with onnxruntime
parity (`sbcb.export.export_model`: dynamic height/width where the model allows it, fixed otherwise).

Small configs and inputs (K = 4, batch 2, 64x64 unless the model needs more), random weights, nothing downloaded.

    PYTHONPATH=src .venv/bin/python benchmarks/model_matrix.py --docs docs/models.md   # the committed table
    PYTHONPATH=src .venv/bin/python benchmarks/model_matrix.py --only smp/Unet   # a subset (substring match)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

K = 4
MARKERS = ("<!-- model-matrix:begin -->", "<!-- model-matrix:end -->")


def train_losses(net: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """One training-mode forward and its losses through the wrapper's public API (the one place to update)."""
    net.train()
    return net(images, masks)


@dataclass
class Pair:
    family: str
    name: str
    build: Callable[[], nn.Module]
    size: tuple[int, int] = (64, 64)


@dataclass
class Row:
    pair: Pair
    wrap: str = ""
    sides: str = ""
    train: str = ""
    ddp: str = ""
    strip: str = ""
    export: str = ""
    seconds: float = 0.0


# -- builders -----------------------------------------------------------------------------------------------------

SMP_ARCHS = [
    "Unet",
    "UnetPlusPlus",
    "FPN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "Linknet",
    "MAnet",
    "PAN",
    "UPerNet",
    "Segformer",
]
SMP_ENCODERS = ["resnet18", "tu-mobilenetv3_small_050", "mit_b0"]


def _smp(arch: str, encoder: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder, encoder_weights=None, classes=K, **kw)

    return build


def _tv(name: str, aux: bool) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision.models import segmentation as tvseg

        kw: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": K}
        if not name.startswith("lraspp"):
            kw["aux_loss"] = aux
        return getattr(tvseg, name)(**kw)

    return build


class TimmSeg(nn.Module):
    """A user's segmentor on a timm `features_only` backbone: 1x1 classifier on the deepest level, upsampled."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        self.nhwc = str(getattr(self.backbone, "output_fmt", "NCHW")) in ("NHWC", "Format.NHWC")
        self.classifier = nn.Conv2d(self.backbone.feature_info.channels()[-1], K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)[-1]
        if self.nhwc:
            f = f.permute(0, 3, 1, 2)
        return F.interpolate(self.classifier(f), size=x.shape[-2:], mode="bilinear", align_corners=False)


def sequential_trunk(in_chans: int = 1) -> nn.Sequential:
    """An `nn.Sequential` segmentor (1-channel input): strided convs to 1/16, a 1x1 classifier, upsampling."""
    layers: list[nn.Module] = []
    c = in_chans
    for width in (8, 16, 32, 64):
        layers += [nn.Conv2d(c, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c = width
    return nn.Sequential(*layers, nn.Conv2d(c, K, 1), nn.Upsample(scale_factor=16, mode="bilinear"))


class CustomUNet(nn.Module):
    """A custom encoder-decoder with a pooling pyramid, written without any `sides=` hint."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.stem, self.down1, self.down2, self.down3 = block(3, 8), block(8, 16), block(16, 32), block(32, 64)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Conv2d(64, 64, 1))
        self.fuse = nn.Conv2d(128 + 16, 32, 3, padding=1)
        self.classifier = nn.Conv2d(32, K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(self.stem(x))
        deep = self.down3(self.down2(s1))
        ctx = torch.cat([deep, F.interpolate(self.pool(deep), size=deep.shape[-2:], mode="nearest")], 1)
        up = torch.cat([F.interpolate(ctx, size=s1.shape[-2:], mode="bilinear", align_corners=False), s1], 1)
        return F.interpolate(self.classifier(self.fuse(up)), size=x.shape[-2:], mode="bilinear", align_corners=False)


def _hf(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers as T

        from sbcb.adapters.transformers import transformers_model

        stages = ["stage1", "stage2", "stage3", "stage4"]
        configs: dict[str, dict[str, Any]] = {
            "segformer": dict(
                hidden_sizes=[8, 16, 24, 32],
                depths=[1, 1, 1, 1],
                num_attention_heads=[1, 1, 1, 1],
                decoder_hidden_size=16,
            ),
            "upernet-convnext": dict(
                backbone_config=T.ConvNextConfig(
                    hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=stages
                ),
                hidden_size=16,
                use_auxiliary_head=False,
            ),
            "upernet-swin": dict(
                backbone_config=T.SwinConfig(
                    embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, out_features=stages
                ),
                hidden_size=16,
                use_auxiliary_head=False,
            ),
            "dpt": dict(
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                intermediate_size=32,
                image_size=64,
                patch_size=16,
                backbone_out_indices=[0, 1, 2, 3],
                neck_hidden_sizes=[8, 16, 24, 32],
                fusion_hidden_size=16,
                use_auxiliary_head=False,
            ),
            "mobilevit": dict(
                image_size=64,
                hidden_sizes=[16, 24, 32],
                neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
                aspp_out_channels=16,
            ),
        }
        return transformers_model(name.split("-")[0], num_labels=K, **configs[name])

    return build


def pairs() -> list[Pair]:
    out = [
        Pair("smp", f"{a} / {e}", _smp(a, e), (128, 128) if a == "PAN" else (64, 64))
        for a in SMP_ARCHS
        for e in SMP_ENCODERS
    ]
    out.append(Pair("smp", "DPT / tu-test_vit", _smp("DPT", "tu-test_vit"), (64, 64)))
    out.append(Pair("smp", "Unet / resnet18, aux_params", _smp("Unet", "resnet18", aux_params={"classes": K})))
    for name in ("fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large"):
        for aux in (False, True):
            out.append(Pair("torchvision", f"{name}, aux_loss={aux}", _tv(name, aux)))
    out.append(Pair("torchvision", "lraspp_mobilenet_v3_large", _tv("lraspp_mobilenet_v3_large", False)))
    out.append(Pair("timm", "features_only resnet18", lambda: TimmSeg("resnet18")))
    out.append(Pair("timm", "features_only convnext_atto", lambda: TimmSeg("convnext_atto")))
    swin = dict(img_size=64, window_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    out.append(
        Pair(
            "timm",
            "features_only swin (tiny config, img_size 64)",
            lambda: TimmSeg("swin_tiny_patch4_window7_224", **swin),
        )
    )
    vit = dict(img_size=64, depth=3, out_indices=(0, 1, 2))
    out.append(Pair("timm", "features_only vit_tiny (img_size 64)", lambda: TimmSeg("vit_tiny_patch16_224", **vit)))
    for name in ("segformer", "upernet-convnext", "upernet-swin", "dpt", "mobilevit"):
        out.append(Pair("transformers", name, _hf(name)))
    out.append(Pair("plain", "nn.Sequential trunk, 1 channel", sequential_trunk))
    out.append(Pair("plain", "custom encoder-decoder", CustomUNet))
    return out


# -- checks -------------------------------------------------------------------------------------------------------


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:150]}"


def _unused_vs_baseline(
    unused: list[str], twin: nn.Module, images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]
) -> str:
    """Says whether the parameters without gradient are also unused when the model trains alone (`Segmentor`)."""
    from sbcb.segmentor import Segmentor

    base = Segmentor(twin, num_classes=K, probe_size=size).train()
    sum(base(images, masks).values()).backward()
    base_unused = {n for n, p in twin.named_parameters() if p.requires_grad and p.grad is None}
    if all(n.startswith("model.") and n[len("model.") :] in base_unused for n in unused):
        return f"no, as the baseline: {len(unused)} parameters its forward never uses ({unused[0]}, ...)"
    return f"no: {len(unused)} without gradient ({unused[0]}, ...)"


def check_pair(pair: Pair, *, export: bool = True, workdir: str | None = None) -> Row:
    """Wrap, train a step, strip and export one pair; every column is "ok ..." or the reason it failed."""
    from sbcb.export import export_model
    from sbcb.wrapper import SBCB

    row = Row(pair)
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        model = pair.build()
        torch.manual_seed(0)
        twin = pair.build()
    except Exception as e:  # noqa: BLE001 - the library itself refuses this pair
        row.wrap = f"n/a, the model cannot be built: {_short(e)}"
        row.seconds = time.perf_counter() - start
        return row
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = SBCB(model, num_classes=K, probe_size=pair.size)
    except Exception as e:  # noqa: BLE001 - the reason is the table entry
        row.wrap = _short(e)
        row.seconds = time.perf_counter() - start
        return row
    row.wrap = "ok"
    row.sides = ", ".join(f"{i.num_chs}@{i.reduction}" for i in net.side_infos)
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, in_chans, *pair.size)
    masks = torch.zeros(2, *pair.size, dtype=torch.long)
    masks[:, :, pair.size[1] // 2 :] = 1
    masks[:, pair.size[0] // 2 :, : pair.size[1] // 4] = 2
    try:
        model.eval()
        twin.eval()
        with torch.no_grad():
            same_before = torch.equal(net.seg_logits(net.strip()(x)), net.seg_logits(twin(x)))
        losses = train_losses(net, x, masks)
        total = sum(losses.values())
        total.backward()
        head_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head.parameters())
        ok = bool(torch.isfinite(total)) and head_grad
        row.train = f"ok ({len(losses)} losses)" if ok else "non-finite loss or no head gradient"
        # what DistributedDataParallel without find_unused_parameters needs: a gradient for every parameter
        unused = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
        row.ddp = "ok" if not unused else _unused_vs_baseline(unused, twin, x, masks, pair.size)
    except Exception as e:  # noqa: BLE001
        row.train = _short(e)
        same_before = False
    stripped = net.strip()
    sa, sb = stripped.state_dict(), twin.state_dict()
    keys_same = list(sa) == list(sb)
    row.strip = "ok" if stripped is model and keys_same and same_before else "differs"
    if export:
        try:
            with tempfile.TemporaryDirectory(dir=workdir) as d:
                report = export_model(
                    stripped.eval(), size=pair.size, in_chans=in_chans, output=net.seg_logits, onnx=Path(d) / "m.onnx"
                )
            worst = max(report.max_abs_diff.values())
            mode = "dynamic H/W" if report.onnx_dynamic_hw else f"fixed {pair.size[0]}x{pair.size[1]}"
            exporter = "dynamo" if "dynamo exporter" in report.onnx_note else "tracing"
            row.export = f"ok, {mode}, {exporter}, max diff {worst:.1e}"
        except Exception as e:  # noqa: BLE001
            row.export = _short(e)
    row.seconds = time.perf_counter() - start
    return row


def table(rows: list[Row]) -> str:
    lines = [
        "| family | model | wrap (no arguments) | sides (channels@stride) | train step | DDP-ready | strip exact "
        "| ONNX + onnxruntime |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.pair.family, r.pair.name, r.wrap, r.sides, r.train, r.ddp, r.strip, r.export]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run pairs whose 'family/name' contains this substring")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--docs", type=Path, help=f"replace the table between the {MARKERS} markers of this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for pair in pairs():
        if args.only and args.only not in f"{pair.family}/{pair.name}":
            continue
        row = check_pair(pair, export=not args.no_export)
        print(
            f"{pair.family}/{pair.name}: wrap {row.wrap}; train {row.train}; ddp {row.ddp}; strip {row.strip}; "
            f"export {row.export} ({row.seconds:.1f} s)",
            flush=True,
        )
        rows.append(row)
    text = table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.docs:
        doc = args.docs.read_text()
        begin, end = doc.index(MARKERS[0]) + len(MARKERS[0]), doc.index(MARKERS[1])
        args.docs.write_text(f"{doc[:begin]}\n{text}\n{doc[end:]}")


if __name__ == "__main__":
    main()
