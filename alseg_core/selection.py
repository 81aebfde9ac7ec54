"""Aggregation of pixel scores to units and selection under an annotation-cost budget.

Units: an image (``region = -1``) or one superpixel of an image. Pixel -> region
aggregation is a bincount over the precomputed region map; selection is greedy on
score (or a seeded random order) until the budget is spent. Units already labelled are
never candidates. Ground truth is never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_UNIT = "image"
SUPERPIXEL_UNIT = "superpixel"
UNITS = (IMAGE_UNIT, SUPERPIXEL_UNIT)


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


@dataclass(frozen=True)
class Candidate:
    image_id: str
    region: int  # -1 for the whole image
    score: float
    est_cost: int


@dataclass(frozen=True)
class Chosen:
    candidates: tuple[Candidate, ...]
    budget: int
    spent: int


def select_under_budget(
    candidates: Sequence[Candidate],
    budget: int,
    *,
    rng: np.random.Generator | None = None,
) -> Chosen:
    """Greedy selection: best score first (or a seeded random order when ``rng`` is given).

    A unit whose estimated cost no longer fits is skipped; selection goes on with cheaper
    ones until the budget is spent or the candidates run out. Every unit costs at least
    one unit of budget, so zero-cost estimates cannot flood the selection. Ties break on
    (image id, region) so the result does not depend on input order.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    ordered = sorted(candidates, key=lambda c: (c.image_id, c.region))
    if rng is not None:
        order = rng.permutation(len(ordered))
        ordered = [ordered[i] for i in order]
    else:
        scores = np.array([-np.inf if np.isnan(c.score) else c.score for c in ordered])
        ordered = [ordered[i] for i in np.argsort(-scores, kind="stable")]
    chosen, spent = [], 0
    for cand in ordered:
        if spent >= budget:
            break
        cost = max(1, cand.est_cost)
        if spent + cost <= budget:
            chosen.append(cand)
            spent += cost
    return Chosen(tuple(chosen), budget, spent)
