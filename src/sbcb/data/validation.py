"""Checks and readers shared by the file datasets, and `DataError`, the one exception they raise.

Every message names the file (or folder) at fault and says what to do about it. Structural problems (a missing
folder, an image without its label) are collected for the whole dataset before anything is raised, so that a user
fixes them all in one go; `sbcb check-data` uses the same functions to scan every sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

# A complete PNG ends with the IEND chunk (length 0, type, CRC); a complete JPEG with the EOI marker.
_PNG_TRAILER = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"
_MAX_LISTED = 10  # names shown per problem before "... and N more"


class DataError(Exception):
    """A problem with dataset files on disk; the message names the file and says how to fix it."""


def format_names(names: Sequence[str], *, limit: int = _MAX_LISTED) -> str:
    """Comma-separated names, cut after `limit` with a count of the rest."""
    names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def check_folders(root: str | Path, expected: Sequence[str], *, dataset: str, hint: str = "") -> list[str]:
    """Problems with a dataset root: the root itself or any expected sub-folder missing.

    Args:
        root: Dataset root folder.
        expected: Sub-folders (relative to `root`) that must exist for the requested split.
        dataset: Dataset name for the message.
        hint: Extra sentence appended to the message (e.g. where the official archive unpacks to).

    Returns:
        One message per problem (empty when everything is there).
    """
    root = Path(root)
    if not root.is_dir():
        top = format_names(sorted({e.split("/")[0] for e in expected}))
        parent = "exists" if root.parent.is_dir() else "does not exist either"
        return [
            f"{dataset}: root folder {root} does not exist (its parent {parent}). Pass --root pointing at the "
            f"folder that contains {top}. {hint}".strip()
        ]
    missing = [e for e in expected if not (root / e).is_dir()]
    if not missing:
        return []
    found = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*") if p.is_dir())
    found += sorted(p.name for p in root.iterdir() if p.is_dir())
    return [
        f"{dataset}: missing folder(s) under {root}: {format_names(missing)}. Expected: {format_names(expected)}; "
        f"found: {format_names(found) or 'no sub-folders'}. {hint}".strip()
    ]


def pair_by_name(
    images: Mapping[str, Path],
    labels: Mapping[str, Path],
    *,
    dataset: str,
    image_dir: str | Path,
    label_dir: str | Path,
) -> tuple[list[str], list[str]]:
    """Match images with labels by sample name.

    Args:
        images: Sample name -> image path.
        labels: Sample name -> label path.
        dataset: Dataset name for the messages.
        image_dir: Where images were looked for (for the messages).
        label_dir: Where labels were looked for (for the messages).

    Returns:
        `(names, problems)`: the sorted names that have both files, and one message per kind of mismatch.
    """
    names = sorted(images.keys() & labels.keys())
    problems = []
    no_label = sorted(images.keys() - labels.keys())
    no_image = sorted(labels.keys() - images.keys())
    if no_label:
        problems.append(
            f"{dataset}: {len(no_label)} image(s) in {image_dir} have no label in {label_dir}: "
            f"{format_names([str(images[n]) for n in no_label])}. Add the label files or remove these images."
        )
    if no_image:
        problems.append(
            f"{dataset}: {len(no_image)} label(s) in {label_dir} have no image in {image_dir}: "
            f"{format_names([str(labels[n]) for n in no_image])}. Add the images or remove these labels."
        )
    return names, problems


def check_not_empty(num_samples: int, *, dataset: str, where: str | Path, pattern: str) -> list[str]:
    """A problem message when a split has no samples."""
    if num_samples > 0:
        return []
    return [f"{dataset}: no samples found in {where} (looked for {pattern}). Check --root and --split."]


def raise_problems(problems: Sequence[str]) -> None:
    """Raise one `DataError` listing every problem, or do nothing when there are none."""
    if problems:
        if len(problems) == 1:
            raise DataError(problems[0])
        raise DataError(f"{len(problems)} problems:\n" + "\n".join(f"- {p}" for p in problems))


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}. Check that the file exists and is readable.") from e
    if data.size == 0:
        raise DataError(f"{path} is empty (0 bytes). Re-copy or re-extract this file.")
    suffix = path.suffix.lower()
    tail = data[-64:].tobytes()
    if suffix == ".png" and not tail.endswith(_PNG_TRAILER):
        raise DataError(f"{path} is truncated (no PNG end marker). Re-copy or re-extract this file.")
    # JPEG writers may append padding after EOI, so look for the marker near the end rather than at it.
    if suffix in (".jpg", ".jpeg") and _JPEG_EOI not in tail:
        raise DataError(f"{path} is truncated (no JPEG end marker). Re-copy or re-extract this file.")
    return data


def read_image(path: str | Path) -> np.ndarray:
    """Read a colour image.

    Args:
        path: PNG or JPEG file.

    Returns:
        uint8 [H, W, 3], RGB.

    Raises:
        DataError: The file is missing, empty, truncated or not a decodable image.
    """
    path = Path(path)
    image = cv2.imdecode(_read_bytes(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path} is corrupt: OpenCV cannot decode it as an image. Re-copy or re-extract this file.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, *, channels: int = 1) -> np.ndarray:
    """Read a label map exactly as stored (8 or 16 bit).

    Args:
        path: PNG file.
        channels: 1 for an index mask; 3 for a 3-channel file (returned in the file's RGB order).

    Returns:
        [H, W] (channels 1) or [H, W, 3] (channels 3) array, uint8 or uint16 as stored.

    Raises:
        DataError: The file is unreadable or has the wrong number of channels.
    """
    path = Path(path)
    label = cv2.imdecode(_read_bytes(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DataError(f"{path} is corrupt: OpenCV cannot decode it as an image. Re-copy or re-extract this file.")
    got = 1 if label.ndim == 2 else label.shape[2]
    if channels == 1 and got != 1:
        raise DataError(
            f"{path} has {got} channels but a label must be a single-channel index mask (one class id per pixel). "
            "Colour or palette PNGs are not read as indices: convert it to an 8-bit greyscale PNG of class ids."
        )
    if channels == 3:
        if got < 3:
            raise DataError(f"{path} has {got} channel(s); this dataset stores labels as 3-channel PNGs.")
        label = label[..., 2::-1]  # BGR(A) -> RGB
    return label


def check_same_size(image: np.ndarray, label: np.ndarray, *, image_path: str | Path, label_path: str | Path) -> None:
    """Raise `DataError` when an image and its label differ in height or width."""
    if image.shape[:2] != label.shape[:2]:
        raise DataError(
            f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but label {label_path} "
            f"is {label.shape[1]}x{label.shape[0]}. Labels must have the image's size; re-export the label."
        )


def check_label_values(
    label: np.ndarray,
    allowed: Iterable[int],
    *,
    path: str | Path,
    what: str = "class ids",
    suggestion: str = "",
) -> None:
    """Raise `DataError` when a label map holds values outside `allowed`.

    Args:
        label: Integer label map, any shape.
        allowed: Every value the map may contain.
        path: The file it came from (for the message).
        what: What the allowed values are, for the message.
        suggestion: How to remap; the default suggestion maps the bad values to the ignore index.
    """
    allowed = np.asarray(sorted(set(allowed)))
    if label.dtype == np.uint8:  # bincount over 256 bins is several times faster than np.unique
        values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    else:
        values = np.unique(label)
    bad = np.setdiff1d(values, allowed)
    if bad.size:
        counts = {int(v): int(np.count_nonzero(label == v)) for v in bad[:_MAX_LISTED]}
        shown = ", ".join(f"{v} ({n} px)" for v, n in counts.items())
        more = f" and {bad.size - _MAX_LISTED} more values" if bad.size > _MAX_LISTED else ""
        raise DataError(
            f"{path}: label values {shown}{more} are not {what} ({_ranges(allowed)}). "
            + (suggestion or "Remap them to a valid class, or to the ignore index if they should not be trained.")
        )


def _ranges(values: np.ndarray) -> str:
    """'0-18, 255' style summary of sorted integers."""
    parts, start = [], None
    for i, v in enumerate(values.tolist()):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts) or "none"


def worker_error_message(error: BaseException) -> str:
    """The original message of a `DataError` that a DataLoader worker re-raised in the main process.

    PyTorch rebuilds a worker's exception from the whole formatted worker traceback; the original message is
    what follows the last ``sbcb.data.validation.DataError: `` in it.
    """
    text = str(error)
    marker = f"{DataError.__module__}.{DataError.__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker) :].rstrip() if at >= 0 else text


def files_by_stem(folder: str | Path, suffixes: Sequence[str], *, strip: str = "") -> dict[str, Path]:
    """Files directly inside `folder` whose suffix (lower-cased) is one of `suffixes`, keyed by file stem.

    Args:
        folder: Folder to list (not recursive).
        suffixes: e.g. ``(".jpg", ".png")``.
        strip: A tail removed from each stem to form the sample name (e.g. ``"_label"``).
    """
    out = {}
    for p in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if p.is_file() and p.suffix.lower() in suffixes:
            stem = p.stem[: -len(strip)] if strip and p.stem.endswith(strip) else p.stem
            out[stem] = p
    return out
