"""Selection under an annotation-cost budget.

Units: an image (``region = -1``) or one superpixel of an image. Selection is greedy on
score (or a seeded random order) until the budget is spent. Units already labelled are
never candidates (``candidates_for_image``). Ground truth is never read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

IMAGE_UNIT = "image"
SUPERPIXEL_UNIT = "superpixel"
UNITS = (IMAGE_UNIT, SUPERPIXEL_UNIT)


@dataclass(frozen=True)
class Candidate:
    """One pool unit: (image id, region id; -1 = the whole image), score, estimated cost."""

    image_id: str
    region: int
    score: float
    est_cost: int


def candidates_for_image(
    image_id: str,
    region_scores: Sequence[float] | np.ndarray,
    region_costs: Sequence[int] | np.ndarray,
    *,
    labelled_regions: Iterable[int] = (),
) -> list[Candidate]:
    """The superpixels of one image not yet labelled; NaN scores (no valid pixel) rank last.

    region_scores : (n_regions,) float; region_costs : (n_regions,) int estimated costs.
    """
    if len(region_scores) != len(region_costs):
        raise ValueError(
            f"{image_id}: {len(region_scores)} region scores but {len(region_costs)} region costs"
        )
    done = set(labelled_regions)
    out = []
    for region, (score, cost) in enumerate(zip(region_scores, region_costs, strict=True)):
        if region in done:
            continue
        value = -np.inf if score is None or np.isnan(score) else float(score)
        out.append(Candidate(image_id, region, value, int(cost)))
    return out


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
