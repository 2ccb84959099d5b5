"""Cityscapes loader on a tiny tree in the official layout, written here.

The key check: on-the-fly boundaries computed on the loader's compact label map equal boundaries computed
directly from raw labelIds with the official semantics (labelIds 2/3 ignored, every other void label a class),
using an independent EDT reference written from spec §2.2.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from sbcb.data.cityscapes import LABELS, Cityscapes, instance_ids_to_instances, label_ids_to_compact
from sbcb.data.validation import DataError

TRAIN_LABEL_IDS = [i for i, (_, t) in sorted(LABELS.items()) if t is not None]  # index = trainId


def edt_bands(label: np.ndarray, mask_value: int, ignore: set[int], radius: float) -> np.ndarray:
    """Spec §2.2 reference for one class: 0 < inner + outer <= r, ignore inside every class."""
    m = label == mask_value
    u = m | np.isin(label, list(ignore))
    if not m.any() or u.all():
        return np.zeros(label.shape, bool)
    d = distance_transform_edt(u) + distance_transform_edt(~m)
    return (d > 0) & (d <= radius)


def edt_mask_bands(m: np.ndarray, ign: np.ndarray, radius: float) -> np.ndarray:
    u = m | ign
    if not m.any() or u.all():
        return np.zeros(m.shape, bool)
    d = distance_transform_edt(u) + distance_transform_edt(~m)
    return (d > 0) & (d <= radius)


def random_label_ids(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Random rectangles of labelIds (incl. ignore 2/3, voids, things, groups) and matching instanceIds."""
    label = np.full((h, w), 7, np.uint8)  # road
    inst = np.full((h, w), 7, np.int32)
    pool = [1, 2, 3, 4, 5, 8, 9, 11, 17, 21, 23, 24, 26, 26, 29, 33]
    counter = {}
    for _ in range(14):
        lid = int(rng.choice(pool))
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        y1, x1 = y0 + int(rng.integers(3, h // 2)), x0 + int(rng.integers(3, w // 2))
        label[y0:y1, x0:x1] = lid
        if lid >= 24 and rng.random() < 0.8:  # an instance; otherwise a crowd "group" with the bare labelId
            counter[lid] = counter.get(lid, 0) + 1
            inst[y0:y1, x0:x1] = lid * 1000 + counter[lid]
        else:
            inst[y0:y1, x0:x1] = lid
    return label, inst


def write_tree(root: Path, split: str, frames: dict[str, tuple[np.ndarray, np.ndarray]], *, train_ids=True) -> None:
    for name, (label, inst) in frames.items():
        city = name.split("_")[0]
        img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        lab = label.astype(np.int32)
        image = np.dstack([lab * 7 % 256, lab * 3 % 256, lab]).astype(np.uint8)
        cv2.imwrite(str(img_dir / f"{name}_leftImg8bit.png"), image)
        cv2.imwrite(str(gt_dir / f"{name}_gtFine_labelIds.png"), label)
        cv2.imwrite(str(gt_dir / f"{name}_gtFine_instanceIds.png"), inst.astype(np.uint16))
        if train_ids:
            trainid = np.full(256, 255, np.uint8)
            for t, lid in enumerate(TRAIN_LABEL_IDS):
                trainid[lid] = t
            cv2.imwrite(str(gt_dir / f"{name}_gtFine_labelTrainIds.png"), trainid[label])


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(3)
    frames = {f"{city}_000000_00001{i}": random_label_ids(rng, 40, 56) for city in ("aachen", "bonn") for i in (0, 1)}
    write_tree(tmp_path, "train", frames)
    return tmp_path, frames


def test_compact_map_hand_cases():
    # Spec §9.1: labelId 7 road -> 0, 33 bicycle -> 18; 2/3 -> 255 (ignored); other voids -> 254 (void class).
    ids = np.array([[7, 33, 2, 3], [0, 1, 29, 30], [24, 26, 18, 255]], np.uint8)
    expected = np.array([[0, 18, 255, 255], [254, 254, 254, 254], [11, 13, 254, 254]], np.uint8)
    np.testing.assert_array_equal(label_ids_to_compact(ids), expected)


def test_instances_keep_only_train_instance_classes():
    # 26001/26002 cars, 24001 person -> instances; 26 (car group), 29001 (caravan), 7 (road) -> 0.
    ids = np.array([[26001, 26002, 26], [29001, 24001, 7]], np.int32)
    out = instance_ids_to_instances(ids)
    # sorted kept ids 24001 < 26001 < 26002 -> 1, 2, 3
    np.testing.assert_array_equal(out, [[2, 3, 0], [0, 1, 0]])


def test_loader_reads_tree(tree):
    root, frames = tree
    ds = Cityscapes(root, "train")
    assert len(ds) == 4
    assert [ds[i]["meta"]["name"] for i in range(4)] == sorted(frames)
    s = ds[0]
    label_ids, inst_ids = frames[s["meta"]["name"]]
    assert s["image"].shape == (40, 56, 3) and s["image"].dtype == np.uint8
    # image written as BGR (label*7, label*3, label) -> RGB channel 0 is `label`
    np.testing.assert_array_equal(s["image"][..., 0], label_ids)
    np.testing.assert_array_equal(s["label"], label_ids_to_compact(label_ids))
    assert s["instance"].dtype == np.int32
    # same partition as the raw instance ids restricted to train instance classes
    keep = (inst_ids >= 1000) & np.isin(inst_ids // 1000, [24, 25, 26, 27, 28, 31, 32, 33])
    assert (s["instance"] > 0).tolist() == keep.tolist()
    assert len(np.unique(s["instance"][keep])) == len(np.unique(inst_ids[keep]))


def test_train_ids_file_matches_conversion_with_void_as_ignore(tree):
    root, _ = tree
    a, b = Cityscapes(root, "train"), Cityscapes(root, "train", use_train_ids_file=True, instances=False)
    assert b.info.void_index is None and b[0]["instance"] is None
    for i in range(len(a)):
        compact = a[i]["label"].copy()
        compact[compact == 254] = 255  # the segmentation target of the compact map
        np.testing.assert_array_equal(b[i]["label"], compact)


def _reference_from_label_ids(label_ids, inst_ids, radius, instances):
    """Official semantics on raw labelIds: ignore {2, 3}; IS adds per-instance bands to the class channel."""
    ign = np.isin(label_ids, [2, 3])
    out = np.zeros((19, *label_ids.shape), bool)
    for t, lid in enumerate(TRAIN_LABEL_IDS):
        out[t] = edt_bands(label_ids, lid, {2, 3}, radius)
        if instances:
            for iid in np.unique(inst_ids[(inst_ids >= 1000) & (inst_ids // 1000 == lid)]):
                out[t] |= edt_mask_bands(inst_ids == iid, ign, radius)
    return out


def _reference_from_compact(label, instance, radius, instances):
    """The same reference run on the loader's compact map: 255 ignored, 254 just another value."""
    ign = label == 255
    out = np.zeros((19, *label.shape), bool)
    for t in range(19):
        out[t] = edt_bands(label, t, {255}, radius)
    if instances:
        for j in np.unique(instance[instance > 0]):
            m = instance == j
            out[int(label[m][0])] |= edt_mask_bands(m, ign, radius)
    return out


@pytest.mark.parametrize("instances", [False, True])
def test_otf_on_compact_map_equals_official_semantics_on_label_ids(tree, instances):
    root, frames = tree
    ds = Cityscapes(root, "train")
    for i in range(len(ds)):
        s = ds[i]
        label_ids, inst_ids = frames[s["meta"]["name"]]
        want = _reference_from_label_ids(label_ids, inst_ids, 2.0, instances)
        assert want.sum() > 0
        got = _reference_from_compact(s["label"], s["instance"], 2.0, instances)
        np.testing.assert_array_equal(got, want)


def test_mapping_all_voids_to_ignore_would_differ(tree):
    # Guards the test above: the trainId map with every void = 255 gives a different (sparser) GT here.
    root, frames = tree
    s = Cityscapes(root, "train")[0]
    label_ids, inst_ids = frames[s["meta"]["name"]]
    lossy = s["label"].copy()
    lossy[lossy == 254] = 255
    assert not np.array_equal(
        _reference_from_compact(lossy, s["instance"], 2.0, False),
        _reference_from_label_ids(label_ids, inst_ids, 2.0, False),
    )


@pytest.mark.parametrize("instances", [False, True])
def test_library_boundaries_on_compact_map_equal_official_semantics(tree, instances):
    boundaries = pytest.importorskip("sbcb.boundaries")
    root, frames = tree
    ds = Cityscapes(root, "train")
    for i in range(len(ds)):
        s = ds[i]
        label_ids, inst_ids = frames[s["meta"]["name"]]
        want = _reference_from_label_ids(label_ids, inst_ids, 2.0, instances)
        got = boundaries.mask_to_boundaries(
            s["label"], 19, radius=2.0, ignore_index=255, instance_mask=s["instance"] if instances else None
        )
        np.testing.assert_array_equal(np.asarray(got).astype(bool), want)


def test_missing_instance_files_are_listed(tree):
    root, frames = tree
    victim = sorted(frames)[1]
    (root / "gtFine" / "train" / "aachen" / f"{victim}_gtFine_instanceIds.png").unlink()
    with pytest.raises(DataError, match=f"{victim}_gtFine_labelIds.png.*instances=False"):
        Cityscapes(root, "train")
    assert len(Cityscapes(root, "train", instances=False)) == 4
    lenient = Cityscapes(root, "train", strict=False)
    assert len(lenient) == 3 and len(lenient.problems) == 1


def test_bad_label_id_names_file_and_value(tree):
    root, frames = tree
    name = sorted(frames)[0]
    path = root / "gtFine" / "train" / "aachen" / f"{name}_gtFine_labelIds.png"
    label = frames[name][0].copy()
    label[:2, :3] = 40  # not a Cityscapes labelId
    cv2.imwrite(str(path), label)
    with pytest.raises(DataError, match=r"labelIds.*40 \(6 px\)") as e:
        Cityscapes(root, "train")[0]
    assert str(path) in str(e.value)


def test_missing_split_lists_expected_and_found(tmp_path):
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing folder\(s\).*gtFine/val.*found: .*leftImg8bit/train"):
        Cityscapes(tmp_path, "val")


@pytest.mark.parametrize("ego_label_id", [3, 1])
def test_round_trip_of_synthetic_cityscapes_writer(tmp_path, ego_label_id):
    synthetic = pytest.importorskip("sbcb.data.synthetic")
    src = synthetic.SyntheticStreets(2, size=(32, 64), seed=1, split="train")
    synthetic.write_cityscapes(src, tmp_path, ego_label_id=ego_label_id)
    ds = Cityscapes(tmp_path, "train")
    to_train = np.full(256, 255, np.uint8)
    to_train[: len(synthetic.CITYSCAPES_TRAIN_IDS)] = synthetic.CITYSCAPES_TRAIN_IDS
    # the ignore band: labelId 3 stays ignored (255); labelId 1 ("ego vehicle") is a boundary-forming void (254)
    to_train[255] = 255 if ego_label_id == 3 else 254
    for i in range(2):
        a, b = src[i], ds[i]
        np.testing.assert_array_equal(b["image"], a["image"])
        np.testing.assert_array_equal(b["label"], to_train[a["label"]])
        # same instance partition (ids renumbered): pixel pairs agree on "same instance"
        ia, ib = a["instance"].ravel(), b["instance"].ravel()
        assert ((ia > 0) == (ib > 0)).all()
        pairs = set(zip(ia[ia > 0].tolist(), ib[ib > 0].tolist()))
        assert len(pairs) == len(set(ia[ia > 0].tolist())) == len(set(ib[ib > 0].tolist()))


def test_fast_uint16_instance_path_equals_generic_path():
    rng = np.random.default_rng(0)
    ids = rng.choice([7, 24, 26, 29001, 24000, 24001, 26000, 26005, 33002, 30000], size=(20, 30))
    np.testing.assert_array_equal(
        instance_ids_to_instances(ids.astype(np.uint16)), instance_ids_to_instances(ids.astype(np.int32))
    )


def test_training_pipeline_batches_carry_official_boundaries(tree):
    """Loader + library train transform + DataLoader: scale 1 and a full-size crop leave only flip and colour
    jitter, and OTF commutes with flips, so each batch's packed boundaries must equal the official-semantics
    reference on the raw labelIds (flipped when the segmentation target shows the sample was flipped)."""
    transforms = pytest.importorskip("sbcb.data.transforms")
    from sbcb.boundaries import unpack_boundaries
    from sbcb.data.loader import TransformedDataset, build_dataloader

    root, frames = tree
    raw = Cityscapes(root, "train")
    transform = transforms.build_train_transform((40, 56), 19, scale_range=(1.0, 1.0), cat_max_ratio=1.0)
    loader = build_dataloader(TransformedDataset(raw, transform), batch_size=2, shuffle=False)
    checked = 0
    for batch in loader:
        assert batch["boundaries"].dtype == torch.uint8 and batch["boundaries"].shape == (2, 3, 40, 56)
        dense = unpack_boundaries(batch["boundaries"], 19).numpy()
        for j, name in enumerate(batch["name"]):
            label_ids, inst_ids = frames[name]
            target = label_ids_to_compact(label_ids).astype(np.int64)
            target[target >= 19] = 255  # void 254 -> ignore in the segmentation target
            flipped = not np.array_equal(batch["label"][j].numpy(), target)
            if flipped:
                np.testing.assert_array_equal(batch["label"][j].numpy(), target[:, ::-1])
            want = _reference_from_label_ids(label_ids, inst_ids, 2.0, True)
            np.testing.assert_array_equal(dense[j], want[:, :, ::-1] if flipped else want)
            checked += 1
    assert checked == 4


def test_eight_bit_instance_ids_are_reported_by_check_data(tree, capsys):
    """Issue 16 item 9: an 8-bit instanceIds PNG holds no decodable instance (ids are labelId*1000+k)."""
    from sbcb.cli.main import main

    root, frames = tree
    victim = sorted(frames)[0]
    path = root / "gtFine" / "train" / "aachen" / f"{victim}_gtFine_instanceIds.png"
    inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), (inst % 256).astype(np.uint8))
    assert main(["check-data", "--dataset", "cityscapes", "--root", str(root), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert path.name in out and "16-bit" in out
