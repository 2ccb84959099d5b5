"""Bad inputs give DataErrors that name the file and say what to fix, also from DataLoader workers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.folder import FolderDataset
from sbcb.data.loader import TransformedDataset, build_dataloader
from sbcb.data.validation import DataError, check_label_values, read_image, read_label


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def folder_tree(root, n=3):
    (root / "dataset.yaml").write_text("class_names: [a, b, c]\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(root / f"images/train/s{i}.png", rng.integers(0, 255, (8, 12, 3)).astype(np.uint8))
        write_png(root / f"labels/train/s{i}.png", rng.integers(0, 3, (8, 12)).astype(np.uint8))
    return root


def test_truncated_png_and_jpeg(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    for suffix in (".png", ".jpg"):
        path = tmp_path / f"x{suffix}"
        cv2.imwrite(str(path), img)
        path.write_bytes(path.read_bytes()[:-20])
        with pytest.raises(DataError, match=rf"x{suffix} is truncated"):
            read_image(path)


def test_corrupt_and_empty_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all" + b"\x00\x00\x00\x00IEND\xaeB`\x82")  # right trailer, garbage body
    with pytest.raises(DataError, match="bad.png is corrupt"):
        read_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png is empty"):
        read_label(empty)


def test_colour_label_is_refused(tmp_path):
    path = write_png(tmp_path / "l.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="3 channels but a label must be a single-channel index mask"):
        read_label(path)


def test_label_value_message_lists_values_counts_and_allowed_ranges():
    label = np.array([[0, 1, 7], [7, 255, 30]], np.uint8)
    with pytest.raises(DataError) as e:
        check_label_values(label, [0, 1, 2, 255], path="x.png", what="class ids")
    # 7 occurs twice, 30 once; allowed {0, 1, 2, 255} summarised as ranges
    assert str(e.value).startswith("x.png: label values 7 (2 px), 30 (1 px) are not class ids (0-2, 255). Remap")


def test_size_mismatch(tmp_path):
    folder_tree(tmp_path)
    write_png(tmp_path / "labels/train/s1.png", np.zeros((8, 10), np.uint8))
    with pytest.raises(DataError, match=r"image .*s1.png is 12x8 \(WxH\) but label .*s1.png is 10x8"):
        FolderDataset(tmp_path, "train")[1]


def test_unpaired_files_are_all_listed(tmp_path):
    folder_tree(tmp_path)
    (tmp_path / "labels/train/s0.png").unlink()
    (tmp_path / "labels/train/s2.png").unlink()
    write_png(tmp_path / "labels/train/orphan.png", np.zeros((8, 12), np.uint8))
    with pytest.raises(DataError) as e:
        FolderDataset(tmp_path, "train")
    text = str(e.value)
    assert text.startswith("2 problems:")
    assert "2 image(s)" in text and "s0.png" in text and "s2.png" in text and "orphan.png" in text


def test_empty_split_and_missing_root(tmp_path):
    folder_tree(tmp_path, n=0)
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    with pytest.raises(DataError, match="no samples found in .*images/train"):
        FolderDataset(tmp_path, "train")
    with pytest.raises(DataError, match="root folder .*nowhere does not exist"):
        FolderDataset(tmp_path / "nowhere", "train")


def _identity(image, label, instance):
    import torch

    return {"image": torch.from_numpy(image), "label": torch.from_numpy(label)}


def _failing(image, label, instance):
    raise ValueError("crop larger than image")


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_errors_surface_as_readable_data_error(tmp_path, workers):
    folder_tree(tmp_path)
    broken = tmp_path / "images/train/s1.png"
    broken.write_bytes(broken.read_bytes()[:-30])
    loader = build_dataloader(
        TransformedDataset(FolderDataset(tmp_path, "train"), _identity),
        batch_size=1,
        shuffle=False,
        num_workers=workers,
    )
    with pytest.raises(DataError) as e:
        list(loader)
    assert str(e.value) == f"{broken} is truncated (no PNG end marker). Re-copy or re-extract this file."


def test_transform_errors_name_the_sample(tmp_path):
    folder_tree(tmp_path)
    ds = TransformedDataset(FolderDataset(tmp_path, "train"), _failing)
    with pytest.raises(DataError, match=r"transform failed on .*s0.png \(label .*s0.png\): ValueError: crop larger"):
        ds[0]


def test_batches_hold_names_and_stacked_tensors(tmp_path):
    folder_tree(tmp_path)
    loader = build_dataloader(
        TransformedDataset(FolderDataset(tmp_path, "train"), _identity), batch_size=2, shuffle=False
    )
    batches = list(loader)
    assert [b["name"] for b in batches] == [["s0", "s1"], ["s2"]]
    assert batches[0]["label"].shape == (2, 8, 12)


def test_skip_bad_samples_warns_and_uses_the_next_one(tmp_path):
    folder_tree(tmp_path)
    broken = tmp_path / "images/train/s1.png"
    broken.write_bytes(broken.read_bytes()[:-30])
    ds = TransformedDataset(FolderDataset(tmp_path, "train"), _identity, skip_bad_samples=True)
    with pytest.warns(UserWarning, match=r"skipping a bad sample: .*s1.png is truncated"):
        s = ds[1]
    assert s["name"] == "s2"  # the next sample stands in
    strict = TransformedDataset(FolderDataset(tmp_path, "train"), _identity, skip_bad_samples=True, max_skips=0)
    with pytest.raises(DataError, match="s1.png is truncated"):
        strict[1]
