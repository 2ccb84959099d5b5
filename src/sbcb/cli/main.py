"""`sbcb` console script: argparse subcommands.

Each subcommand lives in its own module under `sbcb.cli` and exposes two functions:

- `add_parser(subparsers) -> argparse.ArgumentParser`: registers the subcommand and its flags;
- `run(args: argparse.Namespace) -> int`: does the work and returns the exit code.

Modules are imported only to build the parser; heavy libraries are imported inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import sbcb
from sbcb.cli.errors import UserError
from sbcb.train.config import ConfigError

# Subcommand modules, in the order `sbcb --help` lists them.
COMMANDS: list[str] = [
    "sbcb.cli.demo",
    "sbcb.cli.info",
    "sbcb.cli.train",
    "sbcb.cli.eval",
    "sbcb.cli.eval_sbd",
    "sbcb.cli.export",
    "sbcb.cli.predict",
    "sbcb.cli.check_data",
    "sbcb.cli.boundaries",
]


__all__ = ["COMMANDS", "UserError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sbcb",
        description="Semantic Boundary Conditioned Backbones: train, evaluate and export segmentation models "
        "whose backbones learned from semantic boundaries.",
    )
    parser.add_argument("--version", action="version", version=f"sbcb {sbcb.__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for user errors too")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(name)
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    from sbcb.data.validation import DataError

    previous_format = warnings.formatwarning
    warnings.formatwarning = _warning_formatter(f"sbcb {args.command}", previous_format)
    try:
        return int(args._run(args) or 0)
    except (UserError, ConfigError, DataError) as e:
        if args.debug:
            raise
        print(f"sbcb {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # `sbcb train` saves first and says how to resume (also on SIGTERM)
        print(f"sbcb {args.command}: {e or 'interrupted'}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", signal.SIGINT))  # 130 for Ctrl-C, 143 for SIGTERM
    finally:
        warnings.formatwarning = previous_format


def _warning_formatter(prefix: str, fallback: Callable[..., str]) -> Callable[..., str]:
    """`warnings.formatwarning` for a command: sbcb's own warnings as one ``PREFIX: warning: ...`` line, like its
    errors (not ``/path/to/sbcb/train/run.py:422: UserWarning: ...``); other libraries' warnings unchanged."""
    package = str(Path(sbcb.__file__).resolve().parent)

    def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                       line: str | None = None) -> str:  # fmt: skip
        if str(Path(filename).resolve()).startswith(package):
            return f"{prefix}: warning: {one_line(str(message))}\n"
        return fallback(message, category, filename, lineno, line)

    return format_warning


def one_line(message: str) -> str:
    """A possibly multi-line message (a list of data problems) as one line."""
    message = message.strip()
    if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":  # str(KeyError) quotes its text
        message = message[1:-1]
    lines = [line.strip().removeprefix("- ") for line in message.splitlines()]
    return "; ".join(line for line in lines if line)


if __name__ == "__main__":
    raise SystemExit(main())
