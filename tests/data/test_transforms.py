"""Tests for sbcb.data.transforms: joint geometry, pad values, the training-sample step and its boundary GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from sbcb.boundaries import mask_to_boundaries, pack_boundaries, unpack_boundaries
from sbcb.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    Pad,
    PhotometricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ToTrainingSample,
    build_eval_transform,
    build_train_transform,
)


def _coded_sample(h: int = 12, w: int = 16):
    """Image whose pixels encode their own (row, col), a label and an instance map derived from the position."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.uint8)
    label = ((yy // 4) * 3 + xx // 6).astype(np.uint8)
    instance = (yy * 100 + xx).astype(np.int32)
    return image, label, instance


def test_random_crop_takes_the_same_window_from_all_maps():
    image, label, instance = _coded_sample()
    for seed in range(5):
        img, lab, ins = RandomCrop((5, 7), cat_max_ratio=1.0, rng=np.random.default_rng(seed))(image, label, instance)
        assert img.shape == (5, 7, 3) and lab.shape == ins.shape == (5, 7)
        y0, x0 = int(img[0, 0, 0]), int(img[0, 0, 1])  # the image tells where the window starts
        assert np.array_equal(lab, label[y0 : y0 + 5, x0 : x0 + 7])
        assert np.array_equal(ins, instance[y0 : y0 + 5, x0 : x0 + 7])
    # an image smaller than the crop keeps its size (Pad fills it up later)
    img, lab, _ = RandomCrop((50, 50))(image, label, None)
    assert img.shape[:2] == lab.shape == (12, 16)


def test_random_crop_cat_max_ratio_rejects_single_class_crops():
    # 10 x 100 strip: cols 0..59 class 0, cols 60..99 alternate classes 1/2. A 20-px wide crop at x0 is balanced
    # (max share < 0.75) iff it holds < 15 px of class 0, i.e. x0 >= 46: 35 of the 81 offsets (p = 0.43).
    label = np.zeros((10, 100), np.uint8)
    label[:, 60:] = 1 + (np.arange(40) % 2)
    image = np.zeros((10, 100, 3), np.uint8)

    def balanced_share(ratio: float) -> float:
        ok = 0
        for seed in range(60):
            _, lab, _ = RandomCrop((10, 20), ratio, rng=np.random.default_rng(seed))(image, label, None)
            counts = np.bincount(lab.ravel())
            ok += counts.max() / counts.sum() < 0.75
        return ok / 60

    # with 10 tries: 1 - 0.57^10 = 0.996 expected; without the check: 0.43 expected
    assert balanced_share(0.75) >= 0.9
    assert balanced_share(1.0) <= 0.65


def test_random_scale_is_nearest_for_labels():
    image, label, instance = _coded_sample()
    img, lab, ins = RandomScale(1.5, 1.5)(image, label, instance)
    assert img.shape == (18, 24, 3) and lab.shape == ins.shape == (18, 24)
    assert set(np.unique(lab)) <= set(np.unique(label))  # no blended label values
    assert set(np.unique(ins)) <= set(np.unique(instance))
    # nearest neighbour: every output pixel copies one input pixel, the same one in label and instance
    src_y, src_x = ins // 100, ins % 100
    assert np.array_equal(lab, label[src_y, src_x])
    _, lab64, _ = RandomScale(0.5, 0.5)(image, label.astype(np.int64), None)  # int64 labels work too
    assert lab64.dtype == np.int64 and lab64.shape == (6, 8)


def test_horizontal_flip():
    image, label, instance = _coded_sample()
    img, lab, ins = RandomHorizontalFlip(1.0)(image, label, instance)
    assert np.array_equal(img, image[:, ::-1]) and np.array_equal(lab, label[:, ::-1])
    assert np.array_equal(ins, instance[:, ::-1])
    img, lab, ins = RandomHorizontalFlip(0.0)(image, label, instance)
    assert img is image and lab is label and ins is instance


def test_photometric_distortion_keeps_labels_and_grey():
    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (6, 8, 1), dtype=np.uint8), 3, axis=2)
    _, label, instance = _coded_sample(6, 8)
    changed = 0
    for seed in range(20):
        img, lab, ins = PhotometricDistortion(rng=np.random.default_rng(seed))(grey, label, instance)
        assert img.dtype == np.uint8 and img.shape == grey.shape
        assert lab is label and ins is instance
        # brightness and contrast act on all channels alike; a grey pixel has no saturation or hue to change
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
        changed += not np.array_equal(img, grey)
    assert changed >= 10


def test_normalize_hand_values():
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, 0] = (124, 116, 104)  # ~ the mean
    image[0, 1] = np.round(np.array(IMAGENET_MEAN) + np.array(IMAGENET_STD))
    out, _, _ = Normalize()(image, np.zeros((1, 2), np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], (np.array([124, 116, 104]) - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], 1.0, atol=0.01)  # (mean + std - mean) / std, up to rounding
    as_float, _, _ = Normalize()(image.astype(np.float32), np.zeros((1, 2), np.uint8))  # the non-table path
    np.testing.assert_allclose(as_float, out, atol=1e-6)


def test_pad_values():
    image, label, instance = _coded_sample(3, 4)
    img, lab, ins = Pad((5, 6), ignore_index=255)(image, label, instance)
    assert img.shape == (5, 6, 3) and lab.shape == ins.shape == (5, 6)
    assert np.array_equal(lab[:3, :4], label) and (lab[3:] == 255).all() and (lab[:, 4:] == 255).all()
    assert (ins[3:] == 0).all() and (ins[:, 4:] == 0).all() and (img[3:] == 0).all() and (img[:, 4:] == 0).all()


def test_to_training_sample_and_pad_never_creates_boundaries():
    label = np.zeros((6, 10), np.uint8)
    label[:, 5:] = 1
    label[0, 0] = 7  # K = 3: a foreign value, -> ignore in the segmentation target
    image = np.zeros((6, 10, 3), np.uint8)
    padded = Pad((9, 14))(image, label, None)
    sample = ToTrainingSample(3)(*padded)
    assert sample["image"].shape == (3, 9, 14) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["label"][0, 0] == 255 and sample["label"][0, 1] == 0
    b = unpack_boundaries(sample["boundaries"], 3).numpy()
    assert sample["boundaries"].dtype == torch.uint8 and sample["boundaries"].shape == (1, 9, 14)
    # identical to the bands of the unpadded crop: the pad is ignore, so nothing appears along it
    unpadded = mask_to_boundaries(label, 3)
    assert np.array_equal(b[:, :6, :10], unpadded) and not b[:, 6:].any() and not b[:, :, 10:].any()
    # the official behaviour (pad value acting as a class) would draw bands along the pad edge
    official = ToTrainingSample(3)(*Pad((9, 14), label_pad_value=254)(image, label, None))
    assert unpack_boundaries(official["boundaries"], 3)[:, 4:8].any()


def test_instances_make_the_sample_instance_sensitive():
    label = np.full((6, 10), 1, np.uint8)
    instance = np.zeros((6, 10), np.int32)
    instance[:, :5], instance[:, 5:] = 1, 2
    image = np.zeros((6, 10, 3), np.uint8)
    with_inst = ToTrainingSample(2)(image, label, instance)["boundaries"]
    assert np.array_equal(with_inst.numpy(), pack_boundaries(mask_to_boundaries(label, 2, instance_mask=instance)))
    assert with_inst.numpy().any() and not ToTrainingSample(2)(image, label, None)["boundaries"].numpy().any()


def test_train_pipeline_computes_boundaries_on_the_final_crop_and_collates():
    rng = np.random.default_rng(0)
    label = np.zeros((40, 60), np.uint8)
    label[10:30, 15:45] = 1
    label[:, 50:] = 255
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    transform = build_train_transform((32, 48), 2, rng=np.random.default_rng(1))
    samples = [transform(image, label, None) for _ in range(4)]
    for s in samples:
        assert set(s) == {"image", "label", "boundaries"}
        assert s["image"].shape == (3, 32, 48) and s["label"].shape == (32, 48) and s["boundaries"].shape == (1, 32, 48)
        # the GT is the OTF rule applied to the final (scaled, cropped, flipped, padded) label
        expected = pack_boundaries(mask_to_boundaries(s["label"].numpy().astype(np.uint8), 2))
        assert np.array_equal(s["boundaries"].numpy(), expected)
    batch = default_collate(samples)
    assert batch["image"].shape == (4, 3, 32, 48) and batch["boundaries"].shape == (4, 1, 32, 48)


def test_eval_transform():
    image, label, instance = _coded_sample()
    s = build_eval_transform(20)(image, label, instance)
    assert set(s) == {"image", "label"} and s["image"].shape == (3, 12, 16)
    assert np.array_equal(s["label"].numpy(), label)
    s = build_eval_transform(20, boundaries=True)(image, label, instance)
    assert s["boundaries"].shape == (3, 12, 16)


def test_compose_and_errors():
    image, label, _ = _coded_sample()
    out = Compose([RandomHorizontalFlip(1.0), RandomHorizontalFlip(1.0)])(image, label)
    assert np.array_equal(out[0], image) and out[2] is None
    with pytest.raises(ValueError, match="label"):
        RandomHorizontalFlip()(image, label[:5])
    with pytest.raises(ValueError, match="before Normalize"):
        PhotometricDistortion()(image.astype(np.float32), label)


def test_photometric_contrast_is_clipped_scaling():
    # only contrast x2 can act (brightness 0, saturation x1, hue 0): each output is the input or clip(2 * input)
    image = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8, 1).repeat(3, axis=2)
    doubled = np.minimum(image.astype(np.int32) * 2, 255).astype(np.uint8)
    seen = set()
    for seed in range(12):
        t = PhotometricDistortion(0, (2.0, 2.0), (1.0, 1.0), 0, rng=np.random.default_rng(seed))
        img, _, _ = t(image, np.zeros((8, 8), np.uint8))
        if np.array_equal(img, image):
            seen.add("same")
        else:
            assert np.array_equal(img, doubled)
            seen.add("doubled")
    assert seen == {"same", "doubled"}
