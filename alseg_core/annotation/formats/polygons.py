"""Polygons to pixels, one convention for every format."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rasterise_polygon(
    points: Sequence[tuple[float, float]], shape: tuple[int, int], *, source: str
) -> np.ndarray:
    """(H, W) bool: the pixels inside the polygon of (x, y) points in pixel coordinates.

    The COCO convention, through pycocotools: a pixel belongs to the polygon when its
    centre does (what COCO's own ``annToMask`` gives).
    """
    from pycocotools import mask as mask_utils

    if len(points) < 3:
        raise ValueError(f"{source}: a polygon needs at least 3 points, got {len(points)}")
    flat = [float(v) for xy in points for v in xy]
    height, width = shape
    rle = mask_utils.frPyObjects([flat], height, width)
    return mask_utils.decode(mask_utils.merge(rle)).astype(bool)
