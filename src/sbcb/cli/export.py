"""`sbcb export`: strip the SBD head from a checkpoint; write ONNX / TorchScript / a stripped checkpoint, verified,
or a shareable folder (safetensors + config.json + model card, `sbcb.from_pretrained` reads it).

Strip the SBD head from a checkpoint and export the plain segmentor (the baseline's exact parameters). ONNX has a
dynamic batch, and dynamic height and width where the model allows it (found by trying; otherwise they are fixed at
--size, and the output says why); each export is compared with the stripped PyTorch model on shapes the model takes,
and the max absolute difference is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sbcb.cli import add_allow_custom_arch


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="strip the SBD head and export ONNX / TorchScript (checked in onnxruntime)",
        description=__doc__.split("\n\n")[1],  # argparse re-wraps it
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint from `sbcb train`")
    p.add_argument("--onnx", type=Path, metavar="OUT.onnx", help="write ONNX here")
    p.add_argument("--torchscript", type=Path, metavar="OUT.pt", help="write a traced TorchScript module here")
    p.add_argument("--stripped", type=Path, metavar="OUT.pt", help="write a stripped checkpoint here")
    p.add_argument(
        "--pretrained",
        type=Path,
        metavar="DIR",
        help='write a shareable folder of the stripped model here (safetensors, needs "sbcb[hub]")',
    )
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="sample size (default: crop)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--no-check", action="store_true", help="skip the parity checks")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max abs diff accepted (default: 1e-3)")
    add_allow_custom_arch(p)
    return p


def run(args: argparse.Namespace) -> int:
    from sbcb.cli.errors import UserError
    from sbcb.export import export_checkpoint
    from sbcb.train.checkpoint import load_checkpoint

    if args.onnx is None and args.torchscript is None and args.stripped is None and args.pretrained is None:
        raise UserError(
            "nothing to do: give --onnx OUT.onnx, --torchscript OUT.pt, --stripped OUT.pt and/or --pretrained DIR"
        )
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if args.pretrained is not None:
        print(f"wrote shareable folder: {_save_pretrained(args.checkpoint, ckpt, args.pretrained)}")
        if args.onnx is None and args.torchscript is None and args.stripped is None:
            return 0
    size = args.size
    if size is None:
        size = default_size(ckpt)
    if size[0] % 32 or size[1] % 32:
        raise UserError(f"--size {size[0]} {size[1]}: use multiples of 32 (the model's output stride)")
    try:
        report = export_checkpoint(
            args.checkpoint,
            onnx=args.onnx,
            torchscript=args.torchscript,
            stripped=args.stripped,
            size=size,
            opset=args.opset,
            check=not args.no_check,
            allow_custom=args.allow_custom_arch,
            tolerance=args.tolerance,
        )
    except (ImportError, ValueError) as e:
        raise UserError(str(e)) from None
    removed = report.num_params_with_head - report.num_params
    print(f"stripped model: {report.num_params:,} parameters ({removed:,} of SBD/aux heads removed)")
    fusion = ckpt["model"].get("kwargs", {}).get("fusion", "none")
    if fusion != "none":  # the fused model needs part of its SBD head: say so (costs in docs/models.md)
        print(f"fusion {fusion}: the SBD-head parts the segmentation uses are kept at inference")
    for label, path in (
        ("stripped checkpoint", report.stripped_checkpoint),
        ("TorchScript", report.torchscript),
        ("ONNX", report.onnx),
    ):
        if path is not None:
            print(f"wrote {label}: {path}")
    if report.onnx is not None:
        print(f"ONNX input size: {report.onnx_note}")
        print(f"ONNX nodes from the SBD/aux heads: {report.onnx_head_nodes}")
    worst = 0.0
    for key, diff in report.max_abs_diff.items():
        print(f"max abs diff vs PyTorch, {key}: {diff:.3g}")
        worst = max(worst, diff)
    if report.onnx_head_nodes:
        print("error: the exported graph contains SBD-head nodes")
        return 1
    if worst > args.tolerance:
        print(f"error: max abs diff {worst:.3g} exceeds --tolerance {args.tolerance}")
        return 1
    return 0


def _save_pretrained(path: Path, ckpt: dict, directory: Path) -> Path:
    """The stripped model of a checkpoint as a `sbcb.save_pretrained` folder, with the run's data and validation."""
    from sbcb.cli.errors import UserError
    from sbcb.pretrained import save_pretrained
    from sbcb.train.checkpoint import load_model
    from sbcb.train.run import config_of_checkpoint

    cfg = config_of_checkpoint(ckpt, source=str(path))
    validation: dict = dict(ckpt.get("metrics") or {})
    if validation:
        train = cfg.train
        validation["settings"] = {
            "boundary_f_radii_px": list(train.boundary_radii),
            "biou": f"{train.biou_width} px" if train.biou_width else f"{train.biou_ratio:g} of the diagonal",
            "inference": train.val_mode,
            "step": int(ckpt.get("step", 0)),
        }
    try:
        return save_pretrained(
            load_model(path),
            directory,
            config=ckpt["model"]["kwargs"],  # what the trainer recorded; checked by the allow-list
            stripped=True,
            dataset={"name": cfg.data.dataset, "split": cfg.data.train_split},
            metrics={"validation": validation} if validation else None,
        )
    except (ImportError, ValueError) as e:
        raise UserError(str(e)) from None


def default_size(ckpt: dict) -> list[int]:
    """The export sample size [H, W]: the run's training crop rounded down to multiples of 32 (256×512 without one)."""
    crop = ((ckpt.get("config") or {}).get("data") or {}).get("crop") or [256, 512]
    return [max(32, int(c) // 32 * 32) for c in crop]
