"""Aggregation of pixel scores to superpixels: a bincount over the precomputed region map."""

from __future__ import annotations

import numpy as np


def region_means(
    pixel_scores: np.ndarray,
    region_map: np.ndarray,
    *,
    n_regions: int | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Mean score per region id 0..n_regions-1 over ``valid`` pixels (NaN for none).

    pixel_scores : (H, W) float; region_map : (H, W) int; valid : (H, W) bool or None.
    """
    pixel_scores, region_map = np.asarray(pixel_scores), np.asarray(region_map)
    if pixel_scores.shape != region_map.shape:
        raise ValueError(
            f"scores shape {pixel_scores.shape} != region map shape {region_map.shape}"
        )
    n = int(region_map.max()) + 1 if n_regions is None else n_regions
    regions = region_map.ravel()
    scores = pixel_scores.ravel().astype(np.float64)
    if valid is not None:
        keep = valid.ravel()
        regions, scores = regions[keep], scores[keep]
    sums = np.bincount(regions, weights=scores, minlength=n)
    counts = np.bincount(regions, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
