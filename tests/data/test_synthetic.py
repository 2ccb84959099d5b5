"""SyntheticStreets: protocol, determinism, scene content, writers, and 'not solvable by colour'."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from sbcb.data.base import DatasetInfo
from sbcb.data.synthetic import (
    CAR,
    CLASS_NAMES,
    IGNORE_INDEX,
    PERSON,
    POLE,
    SyntheticStreets,
    cityscapes_ids,
)

SMALL = (64, 128)


def _load_benchmark():
    """The colour-baseline code lives in the benchmark script so that the documented numbers use the same code."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic_speed.py"
    spec = importlib.util.spec_from_file_location("synthetic_speed_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    ds = SyntheticStreets(12, size=(128, 256), seed=3, split="train")
    return [ds[i] for i in range(len(ds))]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 contended cores: one thread is several times faster than two here
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ protocol


def test_sample_follows_the_dataset_protocol():
    ds = SyntheticStreets(3, size=(40, 72), seed=1, split="val")
    assert len(ds) == 3
    assert isinstance(ds.info, DatasetInfo)
    assert ds.info.num_classes == len(CLASS_NAMES) == 11
    assert ds.info.ignore_index == 255
    assert set(ds.info.thing_classes) == {PERSON, CAR}
    s = ds[2]
    assert s["image"].dtype == np.uint8 and s["image"].shape == (40, 72, 3)
    assert s["label"].dtype == np.uint8 and s["label"].shape == (40, 72)
    assert s["instance"].dtype == np.int32 and s["instance"].shape == (40, 72)
    assert s["meta"]["name"] == "val_000002"
    assert set(np.unique(s["label"])) <= set(range(11)) | {IGNORE_INDEX}
    np.testing.assert_array_equal(ds[-1]["label"], s["label"])
    with pytest.raises(IndexError):
        ds[3]


def test_instances_are_exactly_the_thing_pixels(samples):
    for s in samples:
        label, inst = s["label"], s["instance"]
        is_thing = np.isin(label, [PERSON, CAR])
        assert np.all((inst != 0) == is_thing)  # every person/car pixel belongs to an instance, nothing else does
        for i in np.unique(inst[inst != 0]):
            assert np.unique(label[inst == i]).size == 1, "an instance spans two classes"


@pytest.mark.parametrize("size", [(16, 16), (16, 512), (512, 16), (17, 33), (90, 64)])
def test_any_size_from_16_pixels_works(size):
    # extreme aspect ratios once crashed: a 16x512 camera put the bottom row beyond the furthest object
    ds = SyntheticStreets(6, size=size, seed=1)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (*size, 3) and s["label"].shape == size and s["instance"].shape == size
        assert set(np.unique(s["label"])) <= set(range(11)) | {IGNORE_INDEX}


# ------------------------------------------------------------------ determinism and splits


def test_sample_depends_only_on_seed_split_index():
    a = SyntheticStreets(5, size=SMALL, seed=7, split="train")
    b = SyntheticStreets(50, size=SMALL, seed=7, split="train")  # a different length must not matter
    later_first = [b[4], b[1]]
    for got, i in zip(later_first, (4, 1)):
        for key in ("image", "label", "instance"):
            np.testing.assert_array_equal(got[key], a[i][key])
    np.testing.assert_array_equal(a[1]["image"], a[1]["image"])  # repeated access


def test_splits_and_seeds_give_different_scenes():
    train = SyntheticStreets(4, size=SMALL, seed=0, split="train")
    val = SyntheticStreets(4, size=SMALL, seed=0, split="val")
    test = SyntheticStreets(4, size=SMALL, seed=0, split="test")
    other = SyntheticStreets(4, size=SMALL, seed=1, split="train")
    train_labels = [train[i]["label"].tobytes() for i in range(4)]
    for ds in (val, test, other):
        for i in range(4):
            assert ds[i]["label"].tobytes() not in train_labels


# ------------------------------------------------------------------ scene content


def test_every_class_appears(samples):
    seen = set()
    for s in samples:
        seen |= set(np.unique(s["label"]).tolist())
    assert seen >= set(range(len(CLASS_NAMES))), f"missing classes {set(range(11)) - seen}"
    assert IGNORE_INDEX in seen


def test_ignore_is_a_band_at_the_bottom(samples):
    with_band = 0
    for s in samples:
        ign = s["label"] == IGNORE_INDEX
        if not ign.any():
            continue
        with_band += 1
        h = ign.shape[0]
        assert ign[-1].all(), "the ego-vehicle band covers the whole bottom row"
        assert not ign[: int(0.75 * h)].any(), "the band stays in the bottom quarter"
        # in each column, once ignore starts it continues to the bottom (a bonnet, not speckles)
        below = np.flip(np.logical_and.accumulate(np.flip(ign, 0), axis=0), 0)
        np.testing.assert_array_equal(ign, below)
    assert with_band >= len(samples) // 2


def test_some_instances_of_one_class_touch(samples):
    touching = 0
    for s in samples:
        inst, label = s["instance"], s["label"]
        for a, b, la, lb in (
            (inst[1:], inst[:-1], label[1:], label[:-1]),
            (inst[:, 1:], inst[:, :-1], label[:, 1:], label[:, :-1]),
        ):
            touching += int(np.any((a != b) & (a != 0) & (b != 0) & (la == lb)))
    assert touching >= 2


def test_poles_are_thin(samples):
    pole_pixels = thin = 0
    for s in samples:
        pole = s["label"] == POLE
        # a pixel of a thin vertical structure has no pole pixel 4 columns to its left or right
        left = np.zeros_like(pole)
        left[:, 4:] = pole[:, :-4]
        right = np.zeros_like(pole)
        right[:, :-4] = pole[:, 4:]
        pole_pixels += int(pole.sum())
        thin += int((pole & ~left & ~right).sum())
    assert pole_pixels > 0
    assert thin / pole_pixels > 0.7


def test_image_is_not_a_flat_colour_map(samples):
    # within one class of one image the colour varies (texture, light, noise): std of grey level > 4
    s = samples[0]
    grey = s["image"].astype(np.float64).mean(-1)
    for c in np.unique(s["label"]):
        region = grey[s["label"] == c]
        if region.size > 200:
            assert region.std() > 4.0, f"class {c} is flat"


# ------------------------------------------------------------------ argument validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"num_samples": -3}, "num_samples must be a positive integer"),
        ({"size": (-64, 128)}, "size must be at least"),
        ({"size": (64, 0)}, "size must be at least"),
        ({"size": 64}, "size must be a pair"),
        ({"split": "training"}, "split must be one of"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticStreets(**{"num_samples": 2, **kwargs})


# ------------------------------------------------------------------ writers


def test_write_folder_round_trip(tmp_path):
    ds = SyntheticStreets(2, size=(32, 48), seed=5, split="val")
    ds.write_folder(tmp_path)
    meta = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["ignore_index"] == 255 and meta["thing_classes"] == [PERSON, CAR]
    assert [tuple(c) for c in meta["colors"]] == list(ds.info.colors)
    for i in range(2):
        s = ds[i]
        name = s["meta"]["name"]
        image = cv2.imread(str(tmp_path / "images" / "val" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(tmp_path / "labels" / "val" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(str(tmp_path / "instances" / "val" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(image[..., ::-1], s["image"])  # cv2 reads BGR
        np.testing.assert_array_equal(label, s["label"])
        assert inst.dtype == np.uint16
        np.testing.assert_array_equal(inst.astype(np.int32), s["instance"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ds.write_folder(tmp_path)
    ds.write_folder(tmp_path, overwrite=True)


def test_folder_layout_loads_with_folder_dataset(tmp_path):
    from sbcb.data import FolderDataset

    ds = SyntheticStreets(2, size=(32, 48), seed=5, split="train")
    ds.write_folder(tmp_path)
    loaded = FolderDataset(tmp_path, "train")
    assert len(loaded) == 2
    assert loaded.info.class_names == ds.info.class_names
    by_name = {loaded[i]["meta"]["name"]: loaded[i] for i in range(len(loaded))}
    for i in range(2):
        s = ds[i]
        got = by_name[s["meta"]["name"]]
        np.testing.assert_array_equal(got["image"], s["image"])
        np.testing.assert_array_equal(got["label"], s["label"])
        np.testing.assert_array_equal(np.asarray(got["instance"]), s["instance"])


def test_cityscapes_ids_hand_case():
    # columns: road | car inst 4 | car inst 9 | person inst 2 | ego band
    label = np.array([[0, 10, 10, 9, 255]], np.uint8)
    inst = np.array([[0, 4, 9, 2, 0]], np.int32)
    label_ids, instance_ids, train_ids = cityscapes_ids(label, inst)
    np.testing.assert_array_equal(label_ids, [[7, 26, 26, 24, 3]])  # road 7, car 26, person 24, out of roi 3
    np.testing.assert_array_equal(train_ids, [[0, 13, 13, 11, 255]])
    # instance k counts per class in id order: car 4 -> 26000, car 9 -> 26001, person 2 -> 24000
    np.testing.assert_array_equal(instance_ids, [[7, 26000, 26001, 24000, 3]])
    assert cityscapes_ids(label, inst, ego_label_id=1)[0][0, 4] == 1
    with pytest.raises(ValueError, match="ego_label_id"):
        cityscapes_ids(label, inst, ego_label_id=2)


def test_write_cityscapes_layout(tmp_path):
    ds = SyntheticStreets(2, size=(64, 128), seed=2, split="train")
    ds.write_cityscapes(tmp_path, city="synth")
    # real Cityscapes ids of the synthetic classes (cityscapesscripts labels.py)
    expected_label_id = {0: 7, 1: 8, 2: 11, 3: 13, 4: 17, 5: 20, 6: 21, 7: 22, 8: 23, 9: 24, 10: 26, 255: 3}
    expected_train_id = {0: 0, 1: 1, 2: 2, 3: 4, 4: 5, 5: 7, 6: 8, 7: 9, 8: 10, 9: 11, 10: 13, 255: 255}
    for i in range(2):
        s = ds[i]
        base = f"synth_{i:06d}_000019"
        image = cv2.imread(str(tmp_path / "leftImg8bit" / "train" / "synth" / f"{base}_leftImg8bit.png"))
        np.testing.assert_array_equal(image[..., ::-1], s["image"])
        gt = tmp_path / "gtFine" / "train" / "synth"
        label_ids = cv2.imread(str(gt / f"{base}_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
        train_ids = cv2.imread(str(gt / f"{base}_gtFine_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
        instance_ids = cv2.imread(str(gt / f"{base}_gtFine_instanceIds.png"), cv2.IMREAD_UNCHANGED)
        assert instance_ids.dtype == np.uint16
        for c in np.unique(s["label"]):
            assert set(np.unique(label_ids[s["label"] == c])) == {expected_label_id[int(c)]}
            assert set(np.unique(train_ids[s["label"] == c])) == {expected_train_id[int(c)]}
        things = s["instance"] != 0
        np.testing.assert_array_equal(instance_ids[~things], label_ids[~things])
        np.testing.assert_array_equal(instance_ids[things] // 1000, label_ids[things])
        # one-to-one between synthetic instance ids and Cityscapes instance ids
        pairs = set(zip(s["instance"][things].tolist(), instance_ids[things].tolist()))
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_cityscapes_layout_loads_with_the_cityscapes_loader(tmp_path):
    from sbcb.data import Cityscapes

    ds = SyntheticStreets(2, size=(64, 128), seed=3, split="train")
    ds.write_cityscapes(tmp_path)
    loaded = Cityscapes(tmp_path, "train")
    assert len(loaded) == 2
    to_train = np.full(256, 255, np.uint8)
    to_train[:11] = [0, 1, 2, 4, 5, 7, 8, 9, 10, 11, 13]  # written out independently of the module's table
    for i in range(2):
        got, s = loaded[i], ds[i]
        np.testing.assert_array_equal(got["image"], s["image"])
        np.testing.assert_array_equal(np.asarray(got["label"]), to_train[s["label"]])  # out of roi -> 255
        np.testing.assert_array_equal(np.asarray(got["instance"]) != 0, s["instance"] != 0)


def test_writers_refuse_a_file_root(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    ds = SyntheticStreets(1, size=SMALL)
    with pytest.raises(NotADirectoryError):
        ds.write_folder(f)
    with pytest.raises(NotADirectoryError):
        ds.write_cityscapes(f)
    with pytest.raises(ValueError, match="city"):
        ds.write_cityscapes(tmp_path / "cs", city="my_city")


# ------------------------------------------------------------------ not solvable by colour


def test_colour_alone_scores_well_below_a_tiny_cnn(one_thread):
    bench = _load_benchmark()
    train = SyntheticStreets(32, size=SMALL, seed=0, split="train")
    val = SyntheticStreets(8, size=SMALL, seed=0, split="val")
    colour = bench.colour_nearest_mean_miou(train, val)
    cnn = bench.tiny_cnn_miou(train, val, steps=120, batch_size=4, width=16)
    assert colour < 0.2, f"colour classifier mIoU {colour:.3f}: classes are separable by colour"
    assert cnn > 1.5 * colour and cnn - colour > 0.08, f"cnn {cnn:.3f} vs colour {colour:.3f}"


@pytest.mark.slow
def test_colour_alone_scores_well_below_a_tiny_cnn_full(one_thread):
    bench = _load_benchmark()
    train = SyntheticStreets(64, size=SMALL, seed=0, split="train")
    val = SyntheticStreets(16, size=SMALL, seed=0, split="val")
    colour = bench.colour_nearest_mean_miou(train, val)
    cnn = bench.tiny_cnn_miou(train, val, steps=300, batch_size=4, width=32)
    assert colour < 0.2
    assert cnn > 2.0 * colour, f"cnn {cnn:.3f} vs colour {colour:.3f}"


def test_mean_iou_helper_hand_case():
    bench = _load_benchmark()
    # target [0 0 1 1 255], pred [0 1 1 1 0]: class 0 tp 1, fp 0, fn 1 -> 1/2; class 1 tp 2, fp 1 -> 2/3
    conf = bench.confusion(np.array([0, 1, 1, 1, 0]), np.array([0, 0, 1, 1, 255]), num_classes=3)
    assert bench.miou(conf) == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 absent from the target: not averaged
