"""`sbcb train`: train a segmentation model with (or without) an SBD head, resumably, on one or many processes.

Defaults are the paper's CNN recipe (SGD lr 0.01, momentum 0.9, wd 5e-4, poly 0.9 to min_lr 1e-4, alpha 5, beta 1).
Every flag is a field of `sbcb.train.config.Config`; ``--config run.yaml`` sets any of them (flat keys = flag
names with ``-`` or ``_``, or sectioned as in a saved ``config.yaml``); flags on the command line win; unknown keys
are errors. The whole configuration is saved as ``OUT/config.yaml`` and in every checkpoint. Multi-process: run the
same command under ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on CUDA); ``--batch-size`` is the total batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sbcb.cli import add_command


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from sbcb.train.config import add_arguments

    p = add_command(subparsers, "train", help="train a model with an SBD head (or a baseline), resumably", doc=__doc__)
    p.add_argument("--config", metavar="CFG.yaml", help="YAML file of defaults for any flag below")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CKPT",
        help="continue from CKPT (default: the newest checkpoint in OUT) with the run's own configuration",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --out (checkpoints, logs) and start over"
    )
    p.add_argument(
        "--allow-custom-arch",
        action="store_true",
        help="allow a module:function architecture (imports and runs it; also when named by --config or a checkpoint)",
    )
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from sbcb.cli.errors import UserError
    from sbcb.train.checkpoint import CheckpointManager, load_checkpoint
    from sbcb.train.config import resolve
    from sbcb.train.run import config_of_checkpoint, run_training

    resume = args.resume
    base = None
    if resume is not None:
        if resume == "auto":
            if args.out is None:
                raise UserError("--resume without a checkpoint path needs --out DIR (it resumes DIR/last.pt)")
            latest = CheckpointManager(args.out).latest()
            resume = str(latest if latest is not None else Path(args.out) / "last.pt")
        try:
            base = config_of_checkpoint(load_checkpoint(resume), source=str(resume))
        except (FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
    cfg = resolve(vars(args), base=base, config_path=args.config)  # ConfigError: reported by sbcb.cli.main
    if resume is not None and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite deletes it: give one of them")
    return run_training(cfg, resume=resume, overwrite=args.overwrite, allow_custom=args.allow_custom_arch).code
