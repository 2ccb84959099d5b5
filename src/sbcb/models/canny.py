"""Canny edges of normalized image batches, GSCNN's "image gradient" input (Takikawa et al. 2019; paper Tab. 6).

- `cv2_canny`: `cv2.Canny` (L1 gradient, Sobel aperture 3, full hysteresis) on the de-normalized uint8 RGB image, per
  image on the CPU, under ``no_grad``. Exact OpenCV, but not traceable: ONNX/TorchScript export refuses it.
- `torch_canny`: the same steps in torch ops on any device (Sobel per channel, the channel of largest L1 magnitude,
  non-maximum suppression in 4 directions, double threshold, hysteresis as a fixed number of 3x3 growth steps), so it
  exports to ONNX. It approximates OpenCV: hysteresis stops after `hysteresis_steps` pixels of growth, and ties in
  the suppression are broken differently (tested against `cv2_canny` on synthetic scenes).

Both return ``[B, 1, H, W]`` float 0/1 (GSCNN fed OpenCV's raw 0/255; 0/1 keeps the 1x1 conv after it well scaled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# GSCNN's hysteresis thresholds on 0..255 images (its data loader calls cv2.Canny(img, 10, 100))
CANNY_LOW, CANNY_HIGH = 10.0, 100.0


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``[B, 3, H, W]`` normalized images back to 0..255 floats (``(x * std + mean) * 255``)."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return ((images * s + m) * 255.0).clamp(0.0, 255.0)


def cv2_canny(
    images: Tensor,
    *,
    low: float = CANNY_LOW,
    high: float = CANNY_HIGH,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """OpenCV Canny (GSCNN's thresholds 10, 100) of normalized RGB images [B, 3, H, W] -> [B, 1, H, W] float 0/1."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        raise RuntimeError(
            "cv2 Canny runs in numpy and can't be traced or exported; build the model with canny='torch'"
        )
    with torch.no_grad():
        rgb = denormalize(images.detach().float(), mean, std).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        edges = np.stack([cv2.Canny(np.ascontiguousarray(img), low, high) for img in rgb])
    return torch.from_numpy(edges > 0).unsqueeze(1).to(device=images.device, dtype=images.dtype)


def torch_canny(
    images: Tensor,
    *,
    low: float = CANNY_LOW,
    high: float = CANNY_HIGH,
    hysteresis_steps: int = 8,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Canny in torch ops (exportable), approximating `cv2_canny`; same arguments, same output."""
    with torch.no_grad():
        x = denormalize(images.detach().float(), mean, std)
        b, c, h, w = x.shape
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
        kernel = torch.stack([kx, kx.t()]).unsqueeze(1)  # [2, 1, 3, 3]: gx, gy
        # OpenCV's Sobel borders reflect without repeating the edge pixel (BORDER_REFLECT_101 = torch "reflect");
        # channels folded into the batch so the kernel's shape is static (ONNX export needs that)
        planes = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="reflect")
        g = F.conv2d(planes, kernel).view(b, c, 2, h, w)
        gx, gy = g[:, :, 0], g[:, :, 1]
        mag = gx.abs() + gy.abs()  # L1, cv2's default
        best = mag.argmax(dim=1, keepdim=True)  # a colour image: the channel with the strongest gradient
        mag = mag.gather(1, best)
        gx, gy = gx.gather(1, best), gy.gather(1, best)
        # direction bins: |gy| <= tan(22.5)|gx| horizontal gradient, >= tan(67.5)|gx| vertical, else diagonal
        ax, ay = gx.abs(), gy.abs()
        horizontal = ay <= math.tan(math.pi / 8) * ax
        vertical = ay >= math.tan(3 * math.pi / 8) * ax
        same_sign = (gx * gy) > 0
        p = F.pad(mag, (1, 1, 1, 1))

        def shifted(dy: int, dx: int) -> Tensor:
            return p[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

        # neighbours along the gradient; like OpenCV, strictly greater than one and not less than the other
        pairs = [
            (horizontal, shifted(0, -1), shifted(0, 1)),
            (vertical, shifted(-1, 0), shifted(1, 0)),
            (~horizontal & ~vertical & same_sign, shifted(-1, -1), shifted(1, 1)),
            (~horizontal & ~vertical & ~same_sign, shifted(-1, 1), shifted(1, -1)),
        ]
        keep = torch.zeros_like(mag, dtype=torch.bool)
        for region, before, after in pairs:
            keep = keep | (region & (mag > before) & (mag >= after))  # not |=: no in-place or in ONNX
        weak = keep & (mag > low)
        strong = (keep & (mag > high)).float()
        for _ in range(hysteresis_steps):  # grow strong edges into 8-connected weak pixels
            strong = torch.where(weak, F.max_pool2d(strong, 3, stride=1, padding=1), strong)
        return strong.to(images.dtype)
