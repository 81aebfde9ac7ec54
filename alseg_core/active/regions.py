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


def region_embeddings(
    embedding: np.ndarray, region_map: np.ndarray, *, n_regions: int | None = None
) -> np.ndarray:
    """Mean feature vector per region, each feature cell weighted by the region's area in
    it: (k, h, w) features on a coarse grid + (H, W) region map -> (n_regions, k) float32,
    L2-normalised (a region with no pixel gets zeros).

    Pixel (y, x) lies in cell (y * h // H, x * w // W), so the grid need not divide the
    image exactly; no full-resolution copy of the features is made.
    """
    embedding, region_map = np.asarray(embedding, np.float32), np.asarray(region_map)
    if embedding.ndim != 3 or region_map.ndim != 2:
        raise ValueError(
            f"embedding must be (k, h, w) and region map (H, W), got {embedding.shape} "
            f"and {region_map.shape}"
        )
    k, h, w = embedding.shape
    big_h, big_w = region_map.shape
    n = int(region_map.max()) + 1 if n_regions is None else n_regions
    rows = (np.arange(big_h) * h // big_h)[:, None]
    cols = (np.arange(big_w) * w // big_w)[None, :]
    cell = (rows * w + cols).ravel()
    area = np.bincount(region_map.ravel().astype(np.int64) * (h * w) + cell, minlength=n * h * w)
    area = area[: n * h * w].reshape(n, h * w).astype(np.float32)  # pixels of r in cell c
    out = area @ embedding.reshape(k, h * w).T  # (n, k) area-weighted sums
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 0, out / np.maximum(norm, 1e-12), 0.0).astype(np.float32)
