"""Selection under an annotation-cost budget.

Units: an image (``region = -1``) or one superpixel of an image. Selection is greedy on
score (or a seeded random order) until the budget is spent. Units already labelled are
never candidates (``candidates_for_image``). Ground truth is never read here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

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
    pixels: int = 0  # valid pixels in the unit (for informative pixels per cost)
    components: tuple[int, ...] | None = None  # unpaid predicted instances it overlaps
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)  # (k,)
    # What revealing each of ``components`` is worth (its score mass over its unlabelled
    # pixels, or its mean score: the strategy's choice), for ``select_greedy(reveal=True)``.
    gains: tuple[float, ...] | None = None


def candidates_for_image(
    image_id: str,
    region_scores: Sequence[float] | np.ndarray,
    region_costs: Sequence[int] | np.ndarray,
    *,
    labelled_regions: Iterable[int] = (),
    region_pixels: Sequence[int] | None = None,
    region_components: Sequence[Sequence[int]] | None = None,
    region_embeddings: np.ndarray | None = None,
    component_gains: Sequence[float] | None = None,
) -> list[Candidate]:
    """The superpixels of one image not yet labelled; NaN scores (no valid pixel) rank last.

    region_scores : (n_regions,) float; region_costs : (n_regions,) int estimated costs;
    region_pixels : (n_regions,) valid pixels; region_components : the predicted
    instances each region overlaps (for ``select_greedy``'s marginal cost);
    region_embeddings : (n_regions, k) feature vectors (for ``select_diverse``);
    component_gains : per predicted instance of the image, what revealing it is worth
    (indexed as ``region_components``; for ``select_greedy``'s ``reveal``).
    """
    if component_gains is not None and region_components is None:
        raise ValueError(f"{image_id}: instance gains need the regions' instances")
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
        pixels = int(region_pixels[region]) if region_pixels is not None else 0
        comps = tuple(region_components[region]) if region_components is not None else None
        emb = region_embeddings[region] if region_embeddings is not None else None
        gains = None
        if component_gains is not None and comps is not None:
            if comps and max(comps) >= len(component_gains):
                raise ValueError(
                    f"{image_id}: region {region} overlaps predicted instance {max(comps)} "
                    f"but the scores give gains for {len(component_gains)} instances"
                )
            gains = tuple(float(component_gains[c]) for c in comps)
        out.append(Candidate(image_id, region, value, int(cost), pixels, comps, emb, gains))
    return out


@dataclass(frozen=True)
class Chosen:
    """The units chosen, the budget and the calibrated spend.

    est_costs : the raw (uncalibrated) estimate each unit was bought at, in order; None:
                each candidate's own ``est_cost``. With marginal cost a region is bought
                at its instances not paid yet, less than its ``est_cost``: the request
                must carry that figure, or later rounds calibrate against an estimate
                the selection never spent (true / raw ratio applied to marginal costs).
    """

    candidates: tuple[Candidate, ...]
    budget: int
    spent: int
    est_costs: tuple[int, ...] | None = None

    def bought_at(self) -> tuple[int, ...]:
        """The raw estimate of each chosen unit, as the selection spent it."""
        if self.est_costs is not None:
            return self.est_costs
        return tuple(c.est_cost for c in self.candidates)


def in_unit_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Sorted by (image id, region): the order ties break in, whatever the input's."""
    return sorted(candidates, key=lambda c: (c.image_id, c.region))


def by_score(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best score first, NaN last; ties in (image id, region) order, whatever the input's."""
    ordered = in_unit_order(candidates)
    scores = np.array([-np.inf if np.isnan(c.score) else c.score for c in ordered])
    return [ordered[i] for i in np.argsort(-scores, kind="stable")]


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
    if rng is not None:
        ordered = in_unit_order(candidates)
        ordered = [ordered[i] for i in rng.permutation(len(ordered))]
    else:
        ordered = by_score(candidates)
    chosen, spent = [], 0
    for cand in ordered:
        if spent >= budget:
            break
        cost = max(1, cand.est_cost)
        if spent + cost <= budget:
            chosen.append(cand)
            spent += cost
    return Chosen(tuple(chosen), budget, spent)


def calibrated_cost(est_cost: int, factor: float) -> int:
    """An estimated cost scaled by the calibration ``factor``; every unit costs at least 1."""
    return max(1, round(est_cost * factor))


def calibrated(cands: list[Candidate], factor: float) -> list[Candidate]:
    """Candidates with their estimated cost scaled by ``factor`` (at least 1 each)."""
    if factor == 1.0:
        return cands
    return [replace(c, est_cost=calibrated_cost(c.est_cost, factor)) for c in cands]


def _key(cand: Candidate, cost: int, per_cost: bool, gain: float | None = None) -> float:
    if np.isnan(cand.score):
        return -np.inf
    if gain is not None:
        return gain / max(1, cost)
    if not per_cost:
        return cand.score
    return cand.score * max(1, cand.pixels) / max(1, cost)


def select_greedy(
    candidates: Sequence[Candidate],
    budget: int,
    *,
    per_cost: bool = False,
    marginal_cost: bool = False,
    max_per_image: int | None = None,
    cost_factor: float = 1.0,
    reveal: bool = False,
) -> Chosen:
    """Greedy selection with the refinements beyond the reference.

    per_cost      : rank by expected informative pixels per cost unit (mean score x
                    valid pixels / estimated cost) instead of by mean score;
    marginal_cost : a predicted instance is paid once: after a region is bought, the
                    other regions of its image that overlap the same instances cost
                    less (and, with ``per_cost``, rank higher);
    max_per_image : at most this many units of one image per round (diversity);
    cost_factor   : calibration (true / estimated cost) applied to every estimate;
    reveal        : rank by what buying the unit reveals per cost unit: the annotator
                    labels every instance a region touches, whole (the cost model), so
                    the gain is the worth of its predicted instances not bought yet
                    (``Candidate.gains``), over their marginal cost. An instance
                    bought through one region adds nothing to the others (CEREALS,
                    Mackowiak et al. 2018: information and cost per region; here per
                    instance revealed). Needs ``marginal_cost``.

    The order is exact greedy on the current keys (stale heap entries are skipped);
    ties break on (image id, region). Without any option this is
    ``select_under_budget`` on calibrated costs.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if reveal and not marginal_cost:
        raise ValueError("reveal counts each instance once: it needs marginal_cost")
    ordered = in_unit_order(candidates)
    if reveal:
        lacking = next((c for c in ordered if c.gains is None), None)
        if lacking is not None:
            raise ValueError(
                f"{lacking.image_id} region {lacking.region}: no instance gains (scores "
                "without component_<strategy> columns, from an older version: score again)"
            )
    bought: dict[str, set[int]] = {}
    taken: dict[str, int] = {}

    def raw_cost(c: Candidate) -> int:
        if marginal_cost and c.components is not None:
            return len(set(c.components) - bought.get(c.image_id, set()))
        return c.est_cost

    def cost(c: Candidate) -> int:
        return calibrated_cost(raw_cost(c), cost_factor)

    def key(c: Candidate) -> float:
        if not reveal:
            return _key(c, cost(c), per_cost)
        paid = bought.get(c.image_id, set())
        gain = sum(g for k, g in zip(c.components or (), c.gains or (), strict=True)
                   if k not in paid)  # fmt: skip
        return _key(c, cost(c), per_cost, gain)

    version = [0] * len(ordered)
    heap = [(-key(c), i, 0) for i, c in enumerate(ordered)]
    heapq.heapify(heap)
    by_image: dict[str, list[int]] = {}
    for i, c in enumerate(ordered):
        by_image.setdefault(c.image_id, []).append(i)
    chosen, spent, done, raws = [], 0, set(), []
    while heap and spent < budget:
        _, i, ver = heapq.heappop(heap)
        cand = ordered[i]
        if ver != version[i] or i in done:
            continue
        if max_per_image is not None and taken.get(cand.image_id, 0) >= max_per_image:
            continue
        c = cost(cand)
        if spent + c > budget:
            continue
        chosen.append(cand)
        raws.append(raw_cost(cand))
        done.add(i)
        spent += c
        taken[cand.image_id] = taken.get(cand.image_id, 0) + 1
        if marginal_cost and cand.components:
            bought.setdefault(cand.image_id, set()).update(cand.components)
            shared = set(cand.components)
            for j in by_image[cand.image_id]:
                other = ordered[j]
                if j not in done and other.components and shared & set(other.components):
                    version[j] += 1
                    heapq.heappush(heap, (-key(other), j, version[j]))
    return Chosen(tuple(chosen), budget, spent, tuple(raws) if marginal_cost else None)


def select_diverse(
    candidates: Sequence[Candidate],
    budget: int,
    *,
    shortlist: float = 3.0,
    cost_factor: float = 1.0,
) -> Chosen:
    """Uncertain and diverse: k-centre greedy over a shortlist of the most uncertain units.

    The shortlist is the highest-scoring units whose (calibrated) estimated costs add up
    to ``shortlist`` x budget, as in suggestive annotation (Yang et al., MICCAI 2017:
    the most uncertain, then a representative subset of them). Among those, k-centre
    greedy (the core-set selection of Sener & Savarese, ICLR 2018): the first unit is the
    most uncertain; each next one is the unit farthest (Euclidean distance of the
    ``embedding`` vectors) from every unit chosen so far, ties to the higher score, among
    those that still fit the budget. Near-duplicates (the same sky in ten regions of one
    image, or ten frames of one street) are then not bought together.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if shortlist < 1.0:
        raise ValueError(f"shortlist must be >= 1 (a multiple of the budget), got {shortlist}")
    missing = [c for c in candidates if c.embedding is None]
    if missing:
        raise ValueError(
            f"diverse selection needs a feature vector per unit; {missing[0].image_id} "
            f"region {missing[0].region} has none (scores written without embeddings, "
            "ScoreParams.embed_dim 0, or by an older version: score again)"
        )
    ordered = by_score(candidates)
    costs = np.array([calibrated_cost(c.est_cost, cost_factor) for c in ordered], np.int64)
    within = np.cumsum(costs) - costs < shortlist * max(budget, 1)
    pool = [c for c, keep in zip(ordered, within, strict=True) if keep]
    if not pool:
        return Chosen((), budget, 0)
    emb = np.stack([np.asarray(c.embedding, np.float32) for c in pool])
    cost = costs[: len(pool)]
    nearest = np.full(len(pool), np.inf)
    open_ = np.ones(len(pool), bool)
    chosen, spent = [], 0
    while True:
        fits = open_ & (cost <= budget - spent)
        if not fits.any():
            break
        i = int(np.argmax(np.where(fits, nearest, -1.0)))  # first of equals: higher score
        chosen.append(pool[i])
        spent += int(cost[i])
        open_[i] = False
        nearest = np.minimum(nearest, np.linalg.norm(emb - emb[i], axis=1))
    return Chosen(tuple(chosen), budget, spent)
