"""SyntheticStreets: procedurally generated street scenes, so everything runs without downloads.

Each sample is a pinhole-camera view of a street: road with lane markings, sidewalks and curbs, building facades
with windows or grass and tree lines behind a fence, far buildings on the horizon, poles with traffic signs, trees,
parked cars that touch each other, cars in the lanes, groups of pedestrians, and the ego vehicle's bonnet at the
bottom (label 255 = ignore). Objects are placed in metres and projected, so sizes shrink with depth as in
Cityscapes. The image is not a colour-coded label map: class colours are drawn from overlapping distributions
(grey road, grey buildings, grey cars, grey poles ...), then textured, lit with gradients and cast shadows,
blurred and noised, so a per-pixel colour classifier does poorly and a model must use shape and context.

Sample ``i`` of split ``s`` with seed ``seed`` is a pure function of ``(seed, s, i, size)``: its random generator is
seeded with ``numpy.random.SeedSequence(seed, spawn_key=(split_code, i))``, so splits are independent streams.

The dataset can write itself to disk in the plain-folder layout (`write_folder`) and in the Cityscapes layout
(`write_cityscapes`); `docs/synthetic.md` gives the exact file layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from sbcb.data.base import DatasetInfo

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "fence",
    "pole",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "car",
)
# Cityscapes palette colours of the same classes.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (190, 153, 153),
    (153, 153, 153),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (0, 0, 142),
)
ROAD, SIDEWALK, BUILDING, FENCE, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = range(11)
THING_CLASSES: tuple[int, ...] = (PERSON, CAR)
IGNORE_INDEX = 255

# Synthetic class id -> the real Cityscapes labelId / trainId of the same class (cityscapesscripts labels.py).
CITYSCAPES_LABEL_IDS: tuple[int, ...] = (7, 8, 11, 13, 17, 20, 21, 22, 23, 24, 26)
CITYSCAPES_TRAIN_IDS: tuple[int, ...] = (0, 1, 2, 4, 5, 7, 8, 9, 10, 11, 13)
# The ego-vehicle band (ignore) is written as Cityscapes labelId 3 "out of roi" by default: void *and* ignored by
# boundary ground truth, which is what label 255 means in memory. labelId 1 "ego vehicle" is void but forms
# boundaries (spec §9.1); `write_cityscapes(..., ego_label_id=1)` writes that instead.
CITYSCAPES_EGO_LABEL_IDS: tuple[int, ...] = (1, 3)

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
MIN_SIZE = 16

INFO = DatasetInfo(
    name="synthetic_streets",
    class_names=CLASS_NAMES,
    colors=CLASS_COLORS,
    ignore_index=IGNORE_INDEX,
    thing_classes=THING_CLASSES,
    extra={"cityscapes_label_ids": CITYSCAPES_LABEL_IDS, "cityscapes_train_ids": CITYSCAPES_TRAIN_IDS},
)

# Texture amplitude per class (grey levels): low-frequency blotches, per-pixel grain. Ego band last.
_TEXTURE_LOW = np.array([10, 10, 14, 8, 6, 4, 22, 16, 8, 6, 6, 4], np.float32)
_TEXTURE_GRAIN = np.array([9, 8, 7, 6, 4, 3, 16, 13, 2, 6, 4, 3], np.float32)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel polygon vertices keep thin and far objects in the right place
_FIXED = float(1 << _SHIFT)


# ----------------------------------------------------------------------------------------------------------------
# Drawing canvas: a segment-id map plus per-segment class, instance and colour.
# ----------------------------------------------------------------------------------------------------------------


class _Canvas:
    """Painter's-algorithm canvas: later draws cover earlier ones; each draw writes one segment id."""

    def __init__(self, height: int, width: int) -> None:
        self.seg = np.zeros((height, width), np.int32)
        self.classes: list[int] = []
        self.instances: list[int] = []
        self.colours: list[np.ndarray] = []
        self.num_instances = 0

    def segment(self, cls: int, colour: Sequence[float], instance: int = 0) -> int:
        self.classes.append(cls)
        self.instances.append(instance)
        self.colours.append(np.clip(np.asarray(colour, np.float32), 0, 255))
        return len(self.classes) - 1

    def new_instance(self) -> int:
        self.num_instances += 1
        return self.num_instances

    def poly(self, points: np.ndarray, seg_id: int) -> None:
        """Fill a polygon given as float pixel coordinates [N, 2] (x, y)."""
        pts = np.round(np.asarray(points, np.float64) * _FIXED).astype(np.int32)
        cv2.fillPoly(self.seg, [pts], int(seg_id), lineType=cv2.LINE_8, shift=_SHIFT)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, seg_id: int) -> None:
        center = (int(round(cx * _FIXED)), int(round(cy * _FIXED)))
        axes = (max(int(round(ax * _FIXED)), 1), max(int(round(ay * _FIXED)), 1))
        cv2.ellipse(self.seg, center, axes, 0, 0, 360, int(seg_id), -1, cv2.LINE_8, _SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, seg_id: int) -> None:
        # at least one pixel wide and tall, so thin poles never vanish
        if x1 - x0 < 1.0:
            cx = 0.5 * (x0 + x1)
            x0, x1 = cx - 0.5, cx + 0.5
        if y1 - y0 < 1.0:
            cy = 0.5 * (y0 + y1)
            y0, y1 = cy - 0.5, cy + 0.5
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), seg_id)


class _Camera:
    """Pinhole camera over a flat ground: metres (lateral x, height h, depth z) -> pixels."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.height, self.width = height, width
        self.horizon = height * rng.uniform(0.36, 0.48)
        self.vx = width * rng.uniform(0.38, 0.62)
        # Cityscapes: f = 2262 px at 2048 x 1024 = 1.1 W / 2. Images wider than 2:1 get a wider field of view
        # instead of a longer focal length, which would push the bottom row's depth beyond the scene.
        self.focal = min(width, 2 * height) * rng.uniform(0.5, 0.62)
        self.cam_height = rng.uniform(1.2, 1.6)
        # depth seen at the bottom row; anything nearer is below the image
        self.z_bottom = self.focal * self.cam_height / (height - self.horizon)

    def x(self, lateral: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        return self.vx + self.focal * np.asarray(lateral) / np.asarray(z)

    def y(self, h: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        return self.horizon + self.focal * (self.cam_height - np.asarray(h)) / np.asarray(z)

    def px(self, metres: float, z: float) -> float:
        return self.focal * metres / z


# ----------------------------------------------------------------------------------------------------------------
# Colour distributions (deliberately overlapping: greys everywhere).
# ----------------------------------------------------------------------------------------------------------------


def _grey(rng: np.random.Generator, lo: float, hi: float, tint: float = 0.06) -> np.ndarray:
    g = rng.uniform(lo, hi)
    return g * (1.0 + rng.uniform(-tint, tint, 3))


def _road_colour(rng: np.random.Generator) -> np.ndarray:
    return _grey(rng, 65, 140)


def _sidewalk_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:
        return np.array([rng.uniform(120, 175), rng.uniform(95, 140), rng.uniform(85, 125)])  # red/beige paving
    return _grey(rng, 90, 175)


def _building_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return _grey(rng, 55, 190)
    if kind == 1:
        return np.array([rng.uniform(160, 215), rng.uniform(140, 190), rng.uniform(105, 150)])  # sandstone
    if kind == 2:
        return np.array([rng.uniform(110, 170), rng.uniform(60, 95), rng.uniform(45, 80)])  # brick
    return _grey(rng, 170, 225, 0.03)  # white render


def _vegetation_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(45, 120), rng.uniform(70, 150), rng.uniform(25, 90)])


def _terrain_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.35:
        return np.array([rng.uniform(110, 160), rng.uniform(100, 140), rng.uniform(65, 100)])  # dry / soil
    return np.array([rng.uniform(80, 140), rng.uniform(105, 165), rng.uniform(50, 100)])


def _sky_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.4:  # overcast: grey-white, like light buildings
        top = _grey(rng, 150, 215, 0.03)
        return top, top * rng.uniform(1.0, 1.15)
    top = np.array([rng.uniform(60, 130), rng.uniform(110, 170), rng.uniform(170, 235)])
    return top, np.minimum(top + rng.uniform(30, 80), 250)


def _car_colour(rng: np.random.Generator) -> np.ndarray:
    palette = ((25, 25, 28), (215, 215, 215), (120, 120, 125), (165, 168, 172), (150, 30, 30), (30, 50, 120))
    return np.asarray(palette[rng.integers(len(palette))], np.float64) * rng.uniform(0.8, 1.15, 3)


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(15, 200, 3) if rng.random() < 0.5 else _grey(rng, 15, 150)


# ----------------------------------------------------------------------------------------------------------------
# Scene layers, drawn far to near.
# ----------------------------------------------------------------------------------------------------------------


def _ground_region(cam: _Camera, lateral_from: float, lateral_to: float, z_near: float, z_far: float) -> np.ndarray:
    """Polygon [4, 2] of the ground strip lateral_from..lateral_to (metres) between two depths."""
    lat = np.array([lateral_from, lateral_to, lateral_to, lateral_from])
    z = np.array([z_near, z_near, z_far, z_far])
    return np.stack([cam.x(lat, z), cam.y(0.0, z)], axis=1)


def _draw_ground(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, layout: dict) -> None:
    z_near, z_far = 0.3, 2000.0
    h, w = canvas.seg.shape
    road = canvas.segment(ROAD, _road_colour(rng))
    canvas.rect(-1, cam.horizon, w + 1, h + 1, road)
    centre, half = layout["road_centre"], layout["road_half"]
    for side in (-1, 1):
        edge = centre + side * half
        walk = canvas.segment(SIDEWALK, _sidewalk_colour(rng))
        outer = edge + side * layout["walk"][side]
        canvas.poly(_ground_region(cam, edge, edge + side * 400.0, z_near, z_far), walk)
        if layout["kind"][side] == "terrain":
            grass = canvas.segment(TERRAIN, _terrain_colour(rng))
            canvas.poly(_ground_region(cam, outer, outer + side * 400.0, z_near, z_far), grass)
        curb = canvas.segment(SIDEWALK, _grey(rng, 120, 200))
        canvas.poly(_ground_region(cam, edge, edge + side * 0.18, z_near, z_far), curb)
    # dashed centre line and solid edge lines are road
    paint = canvas.segment(ROAD, _grey(rng, 170, 235, 0.02))
    if rng.random() < 0.8:
        period, dash = rng.uniform(6, 12), rng.uniform(2.5, 4.0)
        z0 = rng.uniform(0, period) + 1.0
        for z in np.arange(z0, 120.0, period):
            canvas.poly(_ground_region(cam, centre - 0.08, centre + 0.08, z, z + dash), paint)
    for side in (-1, 1):
        if rng.random() < 0.5:
            lat = centre + side * (half - 0.35)
            canvas.poly(_ground_region(cam, lat - 0.07, lat + 0.07, z_near, 300.0), paint)


def _draw_far_background(canvas: _Canvas, cam: _Camera, rng: np.random.Generator) -> None:
    """Distant buildings and tree lines on the horizon: a strip of blocks with ragged tops."""
    h, w = canvas.seg.shape
    x = -1.0
    while x < w:
        bw = w * rng.uniform(0.03, 0.12)
        top = cam.horizon - h * rng.uniform(0.01, 0.09)
        if rng.random() < 0.6:
            seg = canvas.segment(BUILDING, _building_colour(rng) * rng.uniform(0.8, 1.0))
            canvas.rect(x, top, x + bw, cam.horizon + 2, seg)
        else:
            seg = canvas.segment(VEGETATION, _vegetation_colour(rng))
            xs = np.linspace(x, x + bw, 9)
            tops = top + h * rng.uniform(-0.015, 0.015, 9)
            pts = np.concatenate([np.stack([xs, tops], 1), [[x + bw, cam.horizon + 2], [x, cam.horizon + 2]]])
            canvas.poly(pts, seg)
        x += bw


def _draw_facades(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float) -> list[int]:
    """Building blocks along the plane x = lateral, near to far, with occasional gaps; returns their seg ids."""
    ids = []  # consecutive: nothing else creates segments meanwhile, so (first, last) bounds them
    z = 0.5
    while z < 160.0:
        length = rng.uniform(8.0, 35.0)
        if rng.random() < 0.85:
            height = rng.uniform(5.0, 25.0)
            seg = canvas.segment(BUILDING, _building_colour(rng))
            zs = np.array([z, z + length, z + length, z])
            hs = np.array([0.0, 0.0, height, height])
            canvas.poly(np.stack([cam.x(lateral, zs), cam.y(hs, zs)], 1), seg)
            ids.append(seg)
        z += length
    return ids


def _draw_treeline(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float) -> None:
    seg = canvas.segment(VEGETATION, _vegetation_colour(rng))
    zs = np.geomspace(0.5, 200.0, 64)
    # crowns: a random walk plus bumps, so the top reads as a row of trees rather than a hill
    hs = rng.uniform(4.0, 8.0) + np.cumsum(rng.normal(0, 0.5, zs.size)) + rng.uniform(0, 1.5, zs.size)
    hs = np.clip(hs, 2.5, 12.0)
    top = np.stack([cam.x(lateral, zs), cam.y(hs, zs)], 1)
    base = np.stack([cam.x(lateral, zs[::-1]), cam.y(0.0, zs[::-1])], 1)
    canvas.poly(np.concatenate([top, base]), seg)


def _draw_fence(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float) -> int:
    seg = canvas.segment(FENCE, _grey(rng, 80, 170, 0.12))
    z0, z1 = rng.uniform(0.5, 10.0), rng.uniform(30.0, 150.0)
    height = rng.uniform(0.8, 1.6)
    zs = np.array([z0, z1, z1, z0])
    hs = np.array([0.0, 0.0, height, height])
    canvas.poly(np.stack([cam.x(lateral, zs), cam.y(hs, zs)], 1), seg)
    return seg


def _draw_pole(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float, z: float) -> None:
    height = rng.uniform(3.5, 7.0)
    half = 0.5 * cam.px(rng.uniform(0.08, 0.16), z)
    cx = float(cam.x(lateral, z))
    seg = canvas.segment(POLE, _grey(rng, 60, 170))
    canvas.rect(cx - half, float(cam.y(height, z)), cx + half, float(cam.y(0.0, z)), seg)
    if rng.random() < 0.6:  # a traffic sign on the pole, facing the camera
        size = cam.px(rng.uniform(0.5, 0.9), z)
        cy = float(cam.y(height - rng.uniform(0.3, 1.5), z))
        sx = cx + rng.choice([-1, 0, 1]) * 0.6 * size
        colours = ((30, 70, 170), (190, 40, 40), (215, 185, 40), (215, 215, 215), (60, 130, 70))
        sign = canvas.segment(SIGN, np.asarray(colours[rng.integers(len(colours))]) * rng.uniform(0.75, 1.1))
        shape = rng.integers(3)
        if shape == 0:
            canvas.ellipse(sx, cy, size / 2, size / 2, sign)
        elif shape == 1:
            canvas.rect(sx - size / 2, cy - size / 2, sx + size / 2, cy + size / 2, sign)
        else:
            canvas.poly(
                np.array([[sx - size / 2, cy + size / 2], [sx + size / 2, cy + size / 2], [sx, cy - size / 2]]), sign
            )


def _draw_tree(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float, z: float) -> None:
    seg = canvas.segment(VEGETATION, _vegetation_colour(rng))
    trunk = canvas.segment(VEGETATION, _grey(rng, 40, 90) * np.array([1.1, 1.0, 0.8]))  # trunks are vegetation
    height = rng.uniform(4.0, 9.0)
    cx = float(cam.x(lateral, z))
    half = 0.5 * cam.px(rng.uniform(0.2, 0.4), z)
    canvas.rect(cx - half, float(cam.y(height * 0.6, z)), cx + half, float(cam.y(0.0, z)), trunk)
    crown = cam.px(rng.uniform(1.5, 3.0), z)
    cy = float(cam.y(height * 0.75, z))
    for _ in range(int(rng.integers(4, 8))):
        canvas.ellipse(
            cx + rng.normal(0, 0.5) * crown,
            cy + rng.normal(0, 0.35) * crown,
            crown * rng.uniform(0.4, 0.8),
            crown * rng.uniform(0.35, 0.7),
            seg,
        )


def _draw_car_rear(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float, z: float) -> None:
    """A car seen from behind (driving in a lane): body, rear window, tail lights, tyres."""
    inst = canvas.new_instance()
    width, height = rng.uniform(1.6, 2.0), rng.uniform(1.35, 1.8)
    cx, base = float(cam.x(lateral, z)), float(cam.y(0.0, z))
    hw, ph = cam.px(width, z) / 2, cam.px(height, z)
    body = canvas.segment(CAR, _car_colour(rng), inst)
    tyre = canvas.segment(CAR, _grey(rng, 15, 45), inst)
    glass = canvas.segment(CAR, _grey(rng, 30, 90) * np.array([0.9, 0.95, 1.1]), inst)
    light = canvas.segment(CAR, np.array([rng.uniform(140, 220), 30, 30]), inst)
    tw = 0.18 * hw
    canvas.rect(cx - hw * 0.92, base - 0.2 * ph, cx - hw * 0.92 + tw, base, tyre)
    canvas.rect(cx + hw * 0.92 - tw, base - 0.2 * ph, cx + hw * 0.92, base, tyre)
    canvas.rect(cx - hw, base - 0.62 * ph, cx + hw, base - 0.12 * ph, body)
    cabin = np.array(
        [
            [cx - hw * 0.95, base - 0.6 * ph],
            [cx + hw * 0.95, base - 0.6 * ph],
            [cx + hw * 0.72, base - ph],
            [cx - hw * 0.72, base - ph],
        ]
    )
    canvas.poly(cabin, body)
    canvas.poly(
        np.array(
            [
                [cx - hw * 0.8, base - 0.64 * ph],
                [cx + hw * 0.8, base - 0.64 * ph],
                [cx + hw * 0.65, base - 0.94 * ph],
                [cx - hw * 0.65, base - 0.94 * ph],
            ]
        ),
        glass,
    )
    for s in (-1, 1):
        canvas.rect(
            cx + s * hw * 0.9 - (s > 0) * 0.22 * hw,
            base - 0.55 * ph,
            cx + s * hw * 0.9 + (s < 0) * 0.22 * hw,
            base - 0.45 * ph,
            light,
        )


def _draw_car_side(
    canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float, z0: float, z1: float
) -> None:
    """A parked car seen from the side, occupying depths z0..z1 on the plane x = lateral (perspective quad)."""
    inst = canvas.new_instance()
    height = rng.uniform(1.35, 1.8)
    body = canvas.segment(CAR, _car_colour(rng), inst)
    glass = canvas.segment(CAR, _grey(rng, 30, 90) * np.array([0.9, 0.95, 1.1]), inst)
    tyre = canvas.segment(CAR, _grey(rng, 15, 45), inst)

    def quad(za: float, zb: float, h_low: float, h_high: float) -> np.ndarray:
        zs = np.array([za, zb, zb, za])
        hs = np.array([h_low, h_low, h_high, h_high])
        return np.stack([cam.x(lateral, zs), cam.y(hs, zs)], 1)

    length = z1 - z0
    canvas.poly(quad(z0, z1, 0.2, 0.6 * height), body)
    canvas.poly(quad(z0 + 0.2 * length, z1 - 0.15 * length, 0.55 * height, height), body)
    canvas.poly(quad(z0 + 0.27 * length, z1 - 0.22 * length, 0.62 * height, 0.93 * height), glass)
    for zc in (z0 + 0.18 * length, z1 - 0.18 * length):
        r = cam.px(0.33, zc)
        canvas.ellipse(float(cam.x(lateral, zc)), float(cam.y(0.33, zc)), r * 0.6, r, tyre)


def _draw_person(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, lateral: float, z: float) -> None:
    inst = canvas.new_instance()
    height = rng.uniform(1.5, 1.95)
    cx, base = float(cam.x(lateral, z)), float(cam.y(0.0, z))
    ph = cam.px(height, z)
    hw = cam.px(rng.uniform(0.2, 0.28), z)
    legs = canvas.segment(PERSON, _cloth_colour(rng), inst)
    torso = canvas.segment(PERSON, _cloth_colour(rng), inst)
    skin = canvas.segment(PERSON, np.array([rng.uniform(90, 230), rng.uniform(60, 180), rng.uniform(40, 150)]), inst)
    stride = rng.uniform(0, 0.6) * hw
    canvas.poly(
        np.array(
            [
                [cx - 0.8 * hw, base - 0.5 * ph],
                [cx - 0.1 * hw, base - 0.5 * ph],
                [cx - stride, base],
                [cx - stride - 0.45 * hw, base],
            ]
        ),
        legs,
    )
    canvas.poly(
        np.array(
            [
                [cx + 0.1 * hw, base - 0.5 * ph],
                [cx + 0.8 * hw, base - 0.5 * ph],
                [cx + stride + 0.45 * hw, base],
                [cx + stride, base],
            ]
        ),
        legs,
    )
    canvas.ellipse(cx, base - 0.66 * ph, hw, 0.2 * ph, torso)
    canvas.ellipse(cx, base - 0.91 * ph, 0.45 * hw, 0.09 * ph, skin)


def _draw_ego(canvas: _Canvas, rng: np.random.Generator) -> None:
    h, w = canvas.seg.shape
    seg = canvas.segment(IGNORE_INDEX, _grey(rng, 20, 90, 0.1))
    depth = h * rng.uniform(0.07, 0.13)
    xs = np.linspace(-1, w + 1, 33)
    u = (xs - w * rng.uniform(0.4, 0.6)) / w
    tops = h - depth * (1.0 - 1.2 * u**2)
    canvas.poly(np.concatenate([np.stack([xs, tops], 1), [[w + 1, h + 1], [-1, h + 1]]]), seg)


def _layout(rng: np.random.Generator) -> dict:
    return {
        "road_centre": rng.uniform(-1.5, 1.5),
        "road_half": rng.uniform(3.5, 7.5),
        "walk": {s: rng.uniform(2.0, 5.0) for s in (-1, 1)},
        "kind": {s: ("building" if rng.random() < 0.7 else "terrain") for s in (-1, 1)},
    }


def _draw_scene(canvas: _Canvas, cam: _Camera, rng: np.random.Generator) -> dict:
    """Draw everything; returns what the renderer needs (facade planes and seg ids for window textures)."""
    layout = _layout(rng)
    sky_top, sky_horizon = _sky_colours(rng)
    canvas.segment(SKY, sky_top)  # segment 0 = sky, the canvas is zero-initialised
    _draw_far_background(canvas, cam, rng)
    _draw_ground(canvas, cam, rng, layout)

    centre, half = layout["road_centre"], layout["road_half"]
    facades, fences = {}, []
    objects: list[tuple[float, Callable]] = []  # (depth, draw(canvas, cam, rng)) for painter's ordering
    for side in (-1, 1):
        outer = centre + side * (half + layout["walk"][side])
        if layout["kind"][side] == "building":
            facades[side] = (outer, _draw_facades(canvas, cam, rng, outer))
        else:
            _draw_treeline(canvas, cam, rng, outer + side * rng.uniform(4.0, 25.0))
            if rng.random() < 0.7:
                fences.append((outer, _draw_fence(canvas, cam, rng, outer)))
        kerb = centre + side * (half + rng.uniform(0.4, 0.8))
        for z in rng.uniform(cam.z_bottom * 0.9, 80.0, rng.integers(1, 5)):
            objects.append((z, partial(_draw_pole, lateral=kerb, z=z)))
        for z in rng.uniform(cam.z_bottom, 60.0, rng.integers(0, 3)):
            lat = centre + side * (half + layout["walk"][side] * 0.6)
            objects.append((z, partial(_draw_tree, lateral=lat, z=z)))
        # pedestrians on the sidewalk, some in touching groups
        for _ in range(int(rng.integers(0, 4))):
            z = rng.uniform(cam.z_bottom * 1.2, 45.0)
            lat = centre + side * (half + rng.uniform(0.6, 0.9) * layout["walk"][side])
            for k in range(int(rng.integers(1, 4))):
                zk = z + 0.3 * k
                objects.append((zk, partial(_draw_person, lateral=lat - side * 0.45 * k, z=zk)))
        # a row of parked cars along the kerb, bumper to bumper so that neighbours touch
        if rng.random() < 0.7:
            lat = centre + side * (half - rng.uniform(0.9, 1.2))
            z = rng.uniform(cam.z_bottom * 0.8, 25.0)
            for _ in range(int(rng.integers(1, 5))):
                length = rng.uniform(3.8, 4.8)
                objects.append((z, partial(_draw_car_side, lateral=lat, z0=z, z1=z + length)))
                z += length + (0.0 if rng.random() < 0.6 else rng.uniform(0.5, 4.0))
    for _ in range(int(rng.integers(0, 4))):  # cars driving in the lanes
        lane = centre + rng.choice([-1, 1]) * rng.uniform(0.3, 0.55) * half
        z = rng.uniform(cam.z_bottom * 1.3, 70.0)
        objects.append((z, partial(_draw_car_rear, lateral=lane, z=z)))
    objects.sort(key=lambda o: -o[0])  # far first, so nearer objects occlude farther ones
    for _, draw in objects:
        draw(canvas, cam, rng)
    if rng.random() < 0.85:
        _draw_ego(canvas, rng)
    return {"sky": (sky_top, sky_horizon), "facades": facades, "fences": fences}


# ----------------------------------------------------------------------------------------------------------------
# Appearance: colours, textures, lighting, blur, noise.
# ----------------------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise [H, W] float32 with features about `cell` pixels wide."""
    small = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _facade_pattern(cam: _Camera, height: int, width: int, lateral: float, period_z: float, period_h: float) -> tuple:
    """Facade coordinates of the columns on one side of the vanishing point.

    Returns (column slice, depth [W'] in metres, height above ground [H, W'] in metres) for the plane x = lateral.
    """
    xs = np.arange(width, dtype=np.float32) + 0.5
    if lateral > 0:
        cols = slice(int(min(max(np.ceil(cam.vx + 1), 0), width)), width)
    else:
        cols = slice(0, int(min(max(np.floor(cam.vx - 1), 0), width)))
    dx = xs[cols] - cam.vx
    z = cam.focal * lateral / dx  # depth of the facade seen in each column
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    h = cam.cam_height - (ys - cam.horizon) * (z / cam.focal)[None, :]
    return cols, z / period_z, h / period_h


def _uniform_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean noise with unit standard deviation, float32; triangular (sum of two uniform bytes).

    Random bytes cost a tenth of `standard_normal` and sensor grain needs no exact Gaussian.
    """
    n = int(np.prod(shape))
    raw = np.frombuffer(rng.bytes(2 * n), np.uint8).reshape(2, n)
    out = raw[0].astype(np.float32)
    out += raw[1]
    out -= 255.0
    out *= np.float32(1.0 / 104.5)  # std of the sum of two uniform bytes: 256 / sqrt(6)
    return out.reshape(shape)


def _render(canvas: _Canvas, cam: _Camera, rng: np.random.Generator, scene: dict) -> np.ndarray:
    """Turn the segment map into an RGB uint8 image [H, W, 3].

    Colour work is split so that only two full-frame passes touch all three channels: additive colour (segment
    colours, sky gradient, grey texture) and one multiplicative single-channel shading map (windows, fence posts,
    lighting gradient, cast shadows).
    """
    h, w = canvas.seg.shape
    seg = canvas.seg
    classes = np.asarray(canvas.classes, np.int64)
    tex_class = np.where(classes == IGNORE_INDEX, len(CLASS_NAMES), classes)
    cast = rng.uniform(0.8, 1.2, 3).astype(np.float32)  # white balance: shifts every class colour together
    img = np.take(np.stack(canvas.colours).astype(np.float32) * cast, seg, axis=0)  # [H, W, 3]

    # sky: vertical gradient towards the horizon (segment 0 is the sky, never below the horizon band)
    top, horizon = scene["sky"]
    rows = min(h, int(np.ceil(cam.horizon)) + 2)
    t = np.clip((np.arange(rows, dtype=np.float32) + 0.5) / cam.horizon, 0, 1)[:, None, None]
    sky = np.broadcast_to(((top + (horizon - top) * t) * cast).astype(np.float32), (rows, w, 3))
    np.copyto(img[:rows], sky, where=(seg[:rows] == 0)[..., None])

    # texture: low-frequency blotches and grain, amplitude by class, the same on all channels
    texture = _smooth_noise(rng, h, w, max(h // 16, 2))
    texture += 0.5 * _smooth_noise(rng, h, w, max(h // 64, 1))
    texture *= np.take(_TEXTURE_LOW[tex_class], seg)
    texture += np.take(_TEXTURE_GRAIN[tex_class], seg) * _uniform_noise(rng, (h, w))
    img += texture[..., None]

    # shading: exposure and a linear lighting gradient ...
    ys = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    shade = np.float32(rng.uniform(0.65, 1.25)) * (
        1 + np.float32(rng.uniform(-0.5, 0.5)) * xs + np.float32(rng.uniform(-0.3, 0.3)) * ys
    )
    # ... windows on facades and posts on fences, in facade coordinates so that they follow the perspective ...
    for lateral, ids in scene["facades"].values():
        if not ids:
            continue
        cols, zq, hq = _facade_pattern(cam, h, w, lateral, rng.uniform(2.0, 3.5), rng.uniform(2.8, 3.6))
        hf = hq % 1.0
        window = ((zq % 1.0) > 0.35)[None, :] & (hf > 0.3) & (hf < 0.8) & (hq > 1.0)
        sub = seg[:, cols]
        window &= (sub >= ids[0]) & (sub <= ids[-1])
        view = shade[:, cols]  # a view: the in-place multiply writes into shade
        view[window] *= np.float32(rng.uniform(0.35, 0.7))
    for lateral, fence_id in scene["fences"]:
        cols, zq, _ = _facade_pattern(cam, h, w, lateral, rng.uniform(1.5, 3.0), 1.0)
        post = ((zq % 1.0) < 0.15)[None, :] & (seg[:, cols] == fence_id)
        view = shade[:, cols]
        view[post] *= np.float32(0.6)
    # ... and cast shadows that cross class borders
    shadow = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(0, 3))):
        x0 = rng.uniform(-0.2, 1.2) * w
        pts = np.array(
            [
                [x0, cam.horizon + rng.uniform(0, 0.3) * h],
                [x0 + rng.uniform(0.2, 0.8) * w, cam.horizon + rng.uniform(0, 0.3) * h],
                [x0 + rng.uniform(0.0, 1.0) * w, h],
                [x0 - rng.uniform(0.0, 0.6) * w, h],
            ]
        )
        cv2.fillPoly(shadow, [np.round(pts).astype(np.int32)], 1)
    strength = np.float32(rng.uniform(0.3, 0.5))
    if shadow.any():
        shade *= 1 - strength * shadow
    img *= shade[..., None]

    # optics and sensor: blur across object edges, then luminance noise
    sigma = max(0.5, rng.uniform(0.6, 1.3) * w / 1024)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += (_uniform_noise(rng, (h, w)) * np.float32(rng.uniform(2.0, 6.0)))[..., None]
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def render_street(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one random street scene.

    Args:
        rng: Source of randomness; the scene is a pure function of its state.
        height: Image height H in pixels (>= 16).
        width: Image width W in pixels (>= 16).

    Returns:
        ``(image, label, instance)``: uint8 RGB [H, W, 3]; uint8 class ids [H, W] (255 = ego-vehicle ignore band);
        int32 instance ids [H, W] (0 = none, each id within one person or car).
    """
    canvas = _Canvas(height, width)
    cam = _Camera(height, width, rng)
    scene = _draw_scene(canvas, cam, rng)
    label = np.asarray(canvas.classes, np.uint8)[canvas.seg]
    instance = np.asarray(canvas.instances, np.int32)[canvas.seg]
    image = _render(canvas, cam, rng, scene)
    return image, label, instance


# ----------------------------------------------------------------------------------------------------------------
# The dataset.
# ----------------------------------------------------------------------------------------------------------------


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (height, width) of integers, got {size!r}") from None
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE}x{MIN_SIZE} pixels (height, width), got {height}x{width}")
    return height, width


class SyntheticStreets:
    """Procedural street scenes with Cityscapes-like classes, instances and an ignore band.

    Follows the dataset protocol of `sbcb.data.base`: ``ds[i]`` is a dict with ``"image"`` uint8 [H, W, 3] RGB,
    ``"label"`` uint8 [H, W] (class ids 0..10, 255 = ignore), ``"instance"`` int32 [H, W] (0 = none; people and
    cars) and ``"meta"`` (``name``, ``split``, ``index``, ``seed``). Samples are generated on access, never cached.

    Args:
        num_samples: Number of samples N (>= 1).
        size: Image size ``(H, W)`` in pixels, each >= 16.
        seed: Base seed; sample ``i`` is identical for the same ``(seed, split, i, size)``.
        split: ``"train"``, ``"val"`` or ``"test"``; each split uses its own, disjoint random stream.

    Example:
        >>> ds = SyntheticStreets(num_samples=4, size=(64, 128), split="val")
        >>> ds[0]["image"].shape, ds.info.num_classes
        ((64, 128, 3), 11)
    """

    info: DatasetInfo = INFO

    def __init__(
        self,
        num_samples: int = 64,
        *,
        size: Sequence[int] = (256, 512),
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.num_samples = int(num_samples)
        self.size = _check_size(size)
        self.seed = int(seed)
        self.split = split

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        args = f"num_samples={self.num_samples}, size={self.size}, seed={self.seed}, split={self.split!r}"
        return f"SyntheticStreets({args})"

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of sample `index`: seeded by (seed, split, index) only."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(SPLITS[self.split], index)))

    def __getitem__(self, index: int) -> dict:
        if isinstance(index, (int, np.integer)) and -self.num_samples <= index < 0:
            index += self.num_samples
        if not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_samples:
            raise IndexError(f"index {index!r} out of range for {self.num_samples} samples")
        index = int(index)
        image, label, instance = render_street(self.rng(index), *self.size)
        meta = {"name": f"{self.split}_{index:06d}", "split": self.split, "index": index, "seed": self.seed}
        return {"image": image, "label": label, "instance": instance, "meta": meta}

    def write_folder(self, root: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write this split in the plain-folder layout; see `write_folder`."""
        return write_folder(self, root, overwrite=overwrite)

    def write_cityscapes(
        self, root: str | os.PathLike, *, city: str = "synth", ego_label_id: int = 3, overwrite: bool = False
    ) -> Path:
        """Write this split in the Cityscapes layout; see `write_cityscapes`."""
        return write_cityscapes(self, root, city=city, ego_label_id=ego_label_id, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------------
# Writing to disk.
# ----------------------------------------------------------------------------------------------------------------


def _imwrite(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose an empty root")


def dataset_yaml(info: DatasetInfo) -> str:
    """The ``dataset.yaml`` text of the plain-folder layout (class names, colours, ignore index, thing classes)."""
    import yaml

    doc = {
        "name": info.name,
        "class_names": list(info.class_names),
        "colors": [list(c) for c in info.colors],
        "ignore_index": info.ignore_index,
        "thing_classes": list(info.thing_classes),
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def write_folder(dataset: SyntheticStreets, root: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a dataset split in the plain-folder layout.

    Layout (PNG, lossless)::

        root/dataset.yaml                         class names, colours, ignore index, thing classes
        root/images/{split}/{name}.png            RGB uint8
        root/labels/{split}/{name}.png            uint8 class ids, 255 = ignore
        root/instances/{split}/{name}.png         uint16 instance ids, 0 = none

    Writing several splits into one root is fine: ``dataset.yaml`` is the same for all of them.

    Args:
        dataset: The split to write (`SyntheticStreets`).
        root: Output folder; created if needed.
        overwrite: Replace existing files instead of raising `FileExistsError`.

    Returns:
        `root` as a Path.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; pass a folder to write the dataset into")
    meta_path = root / "dataset.yaml"
    text = dataset_yaml(dataset.info)
    if meta_path.exists() and meta_path.read_text() != text and not overwrite:
        raise FileExistsError(f"{meta_path} exists with different classes; pass overwrite=True or choose another root")
    split = dataset.split
    for i in range(len(dataset)):
        sample = dataset[i]
        name = sample["meta"]["name"]
        paths = [root / sub / split / f"{name}.png" for sub in ("images", "labels", "instances")]
        for p in paths:
            _check_target(p, overwrite)
        if sample["instance"].max(initial=0) > np.iinfo(np.uint16).max:
            raise ValueError(f"{name}: instance ids above 65535 do not fit a uint16 PNG")
        _imwrite(paths[0], sample["image"])
        _imwrite(paths[1], sample["label"])
        _imwrite(paths[2], sample["instance"].astype(np.uint16))
    root.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(text)
    return root


def cityscapes_ids(
    label: np.ndarray, instance: np.ndarray, *, ego_label_id: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a synthetic (label, instance) pair to the three Cityscapes gtFine maps.

    Args:
        label: Synthetic class ids, uint8 [H, W], 255 = ignore band.
        instance: Instance ids, int [H, W], 0 = none.
        ego_label_id: labelId written for the ignore band: 3 (out of roi: ignored by boundary GT, the meaning of
            255 in memory) or 1 (ego vehicle: void, but forms boundaries).

    Returns:
        ``(label_ids, instance_ids, train_ids)``: uint8 labelIds [H, W]; uint16 instanceIds [H, W] with
        labelId * 1000 + k on instance pixels (k = 0, 1, ... per class, in instance-id order) and the bare labelId
        elsewhere; uint8 trainIds [H, W] with 255 for the ignore band.
    """
    if ego_label_id not in CITYSCAPES_EGO_LABEL_IDS:
        raise ValueError(f"ego_label_id must be 1 (ego vehicle) or 3 (out of roi), got {ego_label_id!r}")
    to_label = np.full(256, ego_label_id, np.uint8)
    to_label[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS
    to_train = np.full(256, 255, np.uint8)
    to_train[: len(CITYSCAPES_TRAIN_IDS)] = CITYSCAPES_TRAIN_IDS
    label_ids = to_label[label]
    train_ids = to_train[label]
    instance_ids = label_ids.astype(np.uint16)
    counters: dict[int, int] = {}
    for inst in np.unique(instance[instance > 0]):
        mask = instance == inst
        classes = np.unique(label[mask])
        if classes.size != 1 or int(classes[0]) not in THING_CLASSES:
            raise ValueError(f"instance {inst} covers classes {classes.tolist()}, expected one thing class")
        lid = int(to_label[classes[0]])
        k = counters.get(lid, 0)
        counters[lid] = k + 1
        instance_ids[mask] = lid * 1000 + k
    return label_ids, instance_ids, train_ids


def write_cityscapes(
    dataset: SyntheticStreets,
    root: str | os.PathLike,
    *,
    city: str = "synth",
    ego_label_id: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write a dataset split in the Cityscapes file layout.

    Layout, with ``base = {city}_{index:06d}_000019``::

        root/leftImg8bit/{split}/{city}/{base}_leftImg8bit.png          RGB uint8
        root/gtFine/{split}/{city}/{base}_gtFine_labelIds.png           uint8 Cityscapes labelIds
        root/gtFine/{split}/{city}/{base}_gtFine_instanceIds.png        uint16, labelId*1000+k or bare labelId
        root/gtFine/{split}/{city}/{base}_gtFine_labelTrainIds.png      uint8 trainIds, 255 = void

    Synthetic classes map to the real Cityscapes ids of the same class (`CITYSCAPES_LABEL_IDS`,
    `CITYSCAPES_TRAIN_IDS`); the ignore band becomes `ego_label_id` (see `cityscapes_ids`).

    Args:
        dataset: The split to write.
        root: Output folder; created if needed.
        city: City folder name and file-name prefix (letters, digits, no underscore).
        ego_label_id: 3 (out of roi, default) or 1 (ego vehicle).
        overwrite: Replace existing files instead of raising `FileExistsError`.

    Returns:
        `root` as a Path.
    """
    if not city.isalnum():
        raise ValueError(f"city must be letters and digits only (it is split on '_' by loaders), got {city!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; pass a folder to write the dataset into")
    split = dataset.split
    for i in range(len(dataset)):
        sample = dataset[i]
        base = f"{city}_{sample['meta']['index']:06d}_000019"
        img_path = root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png"
        gt = root / "gtFine" / split / city
        gt_paths = [gt / f"{base}_gtFine_{kind}.png" for kind in ("labelIds", "instanceIds", "labelTrainIds")]
        for p in (img_path, *gt_paths):
            _check_target(p, overwrite)
        maps = cityscapes_ids(sample["label"], sample["instance"], ego_label_id=ego_label_id)
        _imwrite(img_path, sample["image"])
        for p, m in zip(gt_paths, maps):
            _imwrite(p, m)
    return root
