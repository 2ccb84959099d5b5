"""sbcb.viz: label colours, overlays, instance outlines, panels and PNG files, against hand-worked cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.base import DatasetInfo
from sbcb.viz import (
    colorize,
    draw_outlines,
    instance_outlines,
    overlay,
    read_png,
    render_sample,
    save_png,
    side_by_side,
)


def test_colorize_hand_case():
    label = np.array([[0, 1], [255, 7]], np.uint8)
    out = colorize(label, [(10, 20, 30), (40, 50, 60)], ignore_color=(1, 2, 3))
    expected = np.array([[[10, 20, 30], [40, 50, 60]], [[1, 2, 3], [255, 255, 255]]], np.uint8)  # 7: unknown -> white
    np.testing.assert_array_equal(out, expected)


def test_colorize_rejects_bad_labels():
    with pytest.raises(ValueError, match="integer"):
        colorize(np.zeros((2, 2), np.float32), [(0, 0, 0)])
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[300]], np.int32), [(0, 0, 0)])


def test_overlay_hand_case():
    image = np.full((1, 1, 3), 10, np.uint8)
    colours = np.full((1, 1, 3), 250, np.uint8)
    # 0.7 * 10 + 0.3 * 250 = 7 + 75 = 82
    assert overlay(image, colours, alpha=0.3)[0, 0].tolist() == [82, 82, 82]
    np.testing.assert_array_equal(overlay(image, colours, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, colours, alpha=1.5)


def test_instance_outlines_hand_case():
    # two touching instances 1 | 2 in a 4x5 map; outline = instance pixel with a 4-neighbour of another id
    inst = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 2, 2],
            [0, 1, 1, 2, 2],
            [0, 0, 0, 2, 2],
        ]
    )
    expected = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1],  # every pixel touches 0 above (row 0); the image border itself is not an edge
            [0, 1, 1, 1, 0],  # (2,2) touches 0 below, (2,3) touches 1 on the left; (2,4) only 2s and the border
            [0, 0, 0, 1, 0],  # (3,3) touches 0 on the left; (3,4) sees only 2s and the border
        ],
        bool,
    )
    np.testing.assert_array_equal(instance_outlines(inst), expected)


def _outlines_slow(inst: np.ndarray) -> np.ndarray:
    h, w = inst.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if inst[y, x] == 0:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and inst[yy, xx] != inst[y, x]:
                    out[y, x] = True
    return out


def test_instance_outlines_match_a_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(5):
        inst = rng.integers(0, 4, (9, 13))
        np.testing.assert_array_equal(instance_outlines(inst), _outlines_slow(inst))


def test_side_by_side_places_panels_and_gaps():
    a = np.full((2, 3, 3), 1, np.uint8)
    b = np.full((2, 1, 3), 2, np.uint8)
    out = side_by_side([a, b], gap=2, gap_color=(9, 9, 9))
    assert out.shape == (2, 3 + 2 + 1, 3)
    assert (out[:, :3] == 1).all() and (out[:, 3:5] == 9).all() and (out[:, 5:] == 2).all()
    with pytest.raises(ValueError, match="same height"):
        side_by_side([a, np.zeros((3, 1, 3), np.uint8)])


def test_render_sample_panels():
    info = DatasetInfo(name="t", class_names=("a", "b"), colors=((0, 0, 255), (0, 255, 0)), thing_classes=(1,))
    image = np.full((4, 5, 3), 100, np.uint8)
    label = np.array([[0, 0, 1, 1, 255]] * 4, np.uint8)
    inst = np.where(label == 1, 1, 0).astype(np.int32)
    out = render_sample({"image": image, "label": label, "instance": inst}, info, gap=1)
    assert out.shape == (4, 5 * 3 + 2, 3)
    np.testing.assert_array_equal(out[:, :5], image)
    np.testing.assert_array_equal(out[:, 6:11], colorize(label, info.colors))
    third = out[:, 12:]
    outline = instance_outlines(inst)
    assert (third[outline] == 255).all()  # instance outlines are white
    # elsewhere: 0.5 * 100 + 0.5 * 255 = 177.5 -> 178 (round half to even gives 178) in the coloured channel
    assert third[0, 0].tolist() == [50, 50, 178]


def test_draw_outlines_copies():
    image = np.zeros((2, 2, 3), np.uint8)
    mask = np.array([[True, False], [False, False]])
    out = draw_outlines(image, mask, color=(1, 2, 3))
    assert out[0, 0].tolist() == [1, 2, 3] and image[0, 0].tolist() == [0, 0, 0]


def test_save_png_round_trip_keeps_rgb_order(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)  # pure red
    path = save_png(tmp_path / "sub" / "x.png", rgb)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 255]  # OpenCV stores BGR
    np.testing.assert_array_equal(read_png(path), rgb)
    ids = np.array([[0, 65535]], np.uint16)
    np.testing.assert_array_equal(read_png(save_png(tmp_path / "ids.png", ids)), ids)
    with pytest.raises(ValueError, match=".png"):
        save_png(tmp_path / "x.jpg", rgb)


def test_viz_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, sbcb.viz; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
