"""Joint (image, mask) transforms. Masks are always resized with NEAREST."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from alseg_core.types import IGNORE_INDEX, IMAGE_MEAN, IMAGE_STD


def resize_pair(
    image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize image (H, W, 3) uint8 bilinearly and mask (H, W) with NEAREST to size (h, w)."""
    h, w = size
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    if mask is None:
        return img, None
    return img, np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


def hflip_pair(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return image[:, ::-1].copy(), mask[:, ::-1].copy()


def random_crop_pair(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random (h, w) crop; pads with 0 (image) / IGNORE_INDEX (mask) when too small."""
    h, w = size
    ih, iw = mask.shape
    if ih < h or iw < w:
        ph, pw = max(h - ih, 0), max(w - iw, 0)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        ih, iw = mask.shape
    y = int(rng.integers(0, ih - h + 1))
    x = int(rng.integers(0, iw - w + 1))
    return image[y : y + h, x : x + w], mask[y : y + h, x : x + w]


def random_scale_pair(
    image: np.ndarray, mask: np.ndarray, scale_range: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    s = float(rng.uniform(*scale_range))
    h, w = mask.shape
    return resize_pair(image, mask, (max(8, round(h * s)), max(8, round(w * s))))  # type: ignore[return-value]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised with ImageNet statistics."""
    t = (
        torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
        .permute(2, 0, 1)
        .float()
        .div_(255.0)
    )
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    return (t - mean) / std
