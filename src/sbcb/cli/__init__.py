"""Command-line interface: thin argparse front ends over the library."""

from __future__ import annotations

import argparse


def add_allow_custom_arch(p: argparse.ArgumentParser) -> None:
    """The ``--allow-custom-arch`` flag of the commands that rebuild a model from a checkpoint."""
    p.add_argument(
        "--allow-custom-arch",
        action="store_true",
        help="import a module:function architecture named in the checkpoint (runs its code: trusted files only)",
    )
