"""`sbcb check-data`: scan a dataset before a long training run and report every problem at once.

Checks the folder layout, image/label pairing, that every image decodes (corrupt and truncated files), image and
label sizes, and label values against the dataset's classes. Exits 1 when it found problems (each bad file is
named), 0 when the data is clean.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

_CHECKED_SPLITS = ("train", "val")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from sbcb.data.registry import list_datasets

    parser = subparsers.add_parser(
        "check-data",
        help="scan a dataset for missing, unpaired, corrupt or mislabelled files before training",
        description="Scan every sample of a dataset (layout, pairing, decoding, sizes, label values) and report "
        "all problems at once. Exit code 1 when any problem is found.",
    )
    parser.add_argument("--dataset", required=True, choices=list_datasets(), help="dataset name")
    parser.add_argument("--root", type=Path, help="dataset root folder (not needed for 'synthetic')")
    parser.add_argument(
        "--split",
        action="append",
        help="split to check; repeat for several (default: train and val; 'all' for synthia; every "
        "images/<split> folder for 'folder')",
    )
    parser.add_argument("--workers", type=int, default=0, help="worker processes for decoding (default 0)")
    return parser


def _default_splits(name: str, root: Path | None) -> list[str]:
    if name == "synthia":
        return ["all"]
    if name == "folder" and root is not None and (root / "images").is_dir():
        found = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
        return found or ["train"]
    return list(_CHECKED_SPLITS)


class _Scan:
    """Reads sample i and returns `None` or a problem message (so one bad file never stops the scan)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> str | None:
        import numpy as np

        from sbcb.data.validation import DataError, check_label_values

        try:
            sample = self.dataset[index]
            info = self.dataset.info
            allowed = [*range(info.num_classes), info.ignore_index]
            allowed += [] if info.void_index is None else [info.void_index]
            name = sample["meta"].get("label_path") or sample["meta"]["name"]
            check_label_values(np.asarray(sample["label"]), allowed, path=name, what="class ids after conversion")
        except DataError as e:
            return str(e)
        except Exception as e:  # anything else is still a problem with this one sample; name it and go on
            return f"sample {index}: {type(e).__name__}: {e}"
        return None


def _first(batch: list) -> object:
    return batch[0]


def check_split(name: str, root: Path | None, split: str, *, workers: int = 0) -> tuple[int, list[str]]:
    """Scan one split.

    Returns:
        `(num_samples_scanned, problems)`.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from sbcb.data.registry import build_dataset, dataset_class
    from sbcb.data.validation import DataError

    options = {"strict": False} if "strict" in inspect.signature(dataset_class(name)).parameters else {}
    try:
        dataset = build_dataset(name, root, split, **options)
    except (DataError, TypeError, ValueError) as e:
        return 0, [str(e)]
    problems = list(getattr(dataset, "problems", []))
    loader = DataLoader(_Scan(dataset), batch_size=1, num_workers=workers, collate_fn=_first)
    for message in tqdm(loader, total=len(dataset), desc=f"{name}/{split}", unit="img", file=sys.stderr):
        if message is not None:
            problems.append(message)
    return len(dataset), problems


def run(args: argparse.Namespace) -> int:
    from sbcb.cli.errors import UserError

    if args.root is None and args.dataset != "synthetic":
        raise UserError(f"--root is required for dataset {args.dataset!r}")
    if args.workers < 0:
        raise UserError("--workers must be >= 0")
    splits = args.split or _default_splits(args.dataset, args.root)
    total_problems = 0
    for split in splits:
        count, problems = check_split(args.dataset, args.root, split, workers=args.workers)
        total_problems += len(problems)
        if problems:
            print(f"{args.dataset}/{split}: {len(problems)} problem(s), {count} sample(s) scanned:")
            for p in problems:
                print("  - " + p.replace("\n", "\n    "))
        else:
            print(f"{args.dataset}/{split}: OK, {count} sample(s) checked")
    if total_problems:
        print(f"found {total_problems} problem(s); fix them before training.")
        return 1
    return 0
