"""Command-line interface: thin argparse front ends over the library.

The small helpers below are the pieces several subcommands share (their flags, help texts and checks are written
once here).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_command(subparsers: argparse._SubParsersAction, name: str, *, help: str, doc: str) -> argparse.ArgumentParser:
    """The parser of subcommand `name`; its ``--help`` shows `doc` (the module docstring) with its line breaks."""
    return subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_allow_custom_arch(p: argparse.ArgumentParser) -> None:
    """The ``--allow-custom-arch`` flag of the commands that rebuild a model from a checkpoint."""
    p.add_argument(
        "--allow-custom-arch",
        action="store_true",
        help="import a module:function architecture named in the checkpoint (runs its code: trusted files only)",
    )


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    """``--mode``, ``--crop``, ``--stride``, ``--scales`` and ``--flip``: how `sbcb eval` and `sbcb predict` infer."""
    p.add_argument("--mode", choices=("whole", "slide"), default="whole", help="inference mode (default: whole)")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="slide window (default: training crop)")
    p.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="slide stride (default: 2/3 of crop)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales (default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")


def inference_options(args: argparse.Namespace, *, default_crop: Sequence[int] | None) -> dict[str, Any]:
    """The keyword options ``mode``, ``crop``, ``stride``, ``scales``, ``flip`` of `sbcb.train.evaluation.evaluate`
    and `predict_logits`, from the flags of `add_inference_arguments`.

    Args:
        args: The parsed flags.
        default_crop: [H, W] slide window without ``--crop`` (the run's training crop), or None.

    Raises:
        UserError: ``--mode slide`` without any crop.
    """
    from sbcb.cli.errors import UserError

    crop = args.crop or default_crop
    if args.mode == "slide" and crop is None:
        raise UserError("--mode slide needs --crop H W")
    return {"mode": args.mode, "crop": crop, "stride": args.stride, "scales": args.scales, "flip": args.flip}
