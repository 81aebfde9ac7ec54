"""Step: choose a round's units under the cost budget (round 0: the random seed set)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from alseg_core import storage
from alseg_core.active.costs import cost_calibration
from alseg_core.active.scoring import read_scores
from alseg_core.active.selection import IMAGE_UNIT, SUPERPIXEL_UNIT, Candidate, calibrated_cost
from alseg_core.active.strategies import get_strategy
from alseg_core.annotation.requests import RequestItem, make_request
from alseg_core.labels import LabelState, load_state


def seed_candidates(pool_ids: Sequence[str], n: int, rng: np.random.Generator) -> list[Candidate]:
    """``n`` random whole images of the pool: the seed set, the same for every strategy."""
    ids = sorted(pool_ids)
    pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
    return [Candidate(ids[i], -1, 0.0, 0) for i in sorted(pick)]


def seed_region_candidates(
    region_counts: dict[str, int], budget: int, rng: np.random.Generator
) -> list[Candidate]:
    """Random superpixels drawn uniformly over every region of the pool, ``budget`` of
    them: each spends 1 of the budget (a region holds at least one instance; the oracle
    charges the true cost). They carry no model estimate (0), so the cost calibration
    of later rounds, which compares charged with estimated costs, leaves them out."""
    ids = sorted(region_counts)
    offsets = np.cumsum([0] + [region_counts[i] for i in ids])
    total = int(offsets[-1])
    pick = np.sort(rng.choice(total, size=min(budget, total), replace=False))
    image_index = np.searchsorted(offsets, pick, side="right") - 1
    return [
        Candidate(ids[i], int(p - offsets[i]), 0.0, 0)
        for i, p in zip(image_index.tolist(), pick.tolist(), strict=True)
    ]


def _choose(
    table_url: str, state: LabelState, *, unit: str, strategy: str, budget: int,
    rng: np.random.Generator,
) -> tuple[list[Candidate], int, tuple[float, str], str | None, str | None]:  # fmt: skip
    """(chosen units with raw estimates, estimated spend, calibration, warning, the
    superpixel store fingerprint the scores were computed with)."""
    table = read_scores(table_url)
    meta = table.schema.metadata or {}
    store = meta.get(b"alseg_store", b"").decode() or None
    scored_with = meta.get(b"alseg_labelled")
    if scored_with is not None and scored_with.decode() != state.fingerprint:
        raise ValueError(
            f"{table_url}: these scores were computed against another labelled set than the "
            f"one given (--labelled holds {len(state.history)} deliveries, fingerprint "
            f"{state.fingerprint or 'empty'}; the scores say {scored_with.decode() or 'empty'}): "
            "selecting would buy labels already held or miss free ones; score again with "
            "this labelled set, or give the one it was scored with"
        )
    chooser = get_strategy(strategy)
    cands = chooser.candidates(table.to_pylist(), state, unit=unit)
    predicted = json.loads(meta.get(b"alseg_predicted_instances", b"{}"))
    factor, basis = cost_calibration(state, unit=unit, predicted_on_labelled=predicted)
    result = chooser.select(cands, budget, rng=rng, cost_factor=factor)
    warning = None
    if cands and not result.candidates:
        cheapest = min(calibrated_cost(c.est_cost, factor) for c in cands)
        warning = (
            f"no {unit} fits al.budget_per_round={budget}: the cheapest costs {cheapest} "
            f"(estimate x calibration {factor:.2f}); nothing is selected this round"
        )
    # The request keeps the model's raw estimates as the selection spent them (marginal
    # where the strategy charges an instance once): later rounds calibrate against them.
    chosen = [
        replace(c, est_cost=raw)
        for c, raw in zip(result.candidates, result.bought_at(), strict=True)
    ]
    return chosen, result.spent, (factor, basis), warning, store


def describe_selection(summary: dict, out: str) -> str:
    """One line for people: what ``select_step`` chose and what it is estimated to cost."""
    n_regions = sum(len(i["regions"]) for i in summary["items"])
    return (
        f"round {summary['round']}: selected {len(summary['items'])} images / {n_regions} "
        f"regions ({summary['unit']}, {summary['strategy']}), estimated cost "
        f"{summary['estimated_spent']} of budget {summary['budget']} "
        f"(calibration x{summary['cost_calibration']['factor']:.2f}) -> {out}"
    )


def select_step(
    round_: int,
    *,
    pool_ids: Sequence[str],
    scores: str | None,
    labelled: str | None,
    out: str,
    unit: str,
    strategy: str,
    budget: int,
    initial_images: int,
    seed: int,
    seed_regions: tuple[dict[str, int], str, int] | None = None,
) -> dict:
    """Write the selection (``out``, JSON: the request plus budget and calibration).

    seed_regions : for a superpixel seed round (al.seed_unit), the regions per pool
    image, the store's fingerprint and the seed budget; None: random whole images.
    """
    state = load_state(labelled)
    rng = np.random.default_rng([seed, round_])
    warning: str | None = None
    store: str | None = None
    if round_ == 0 and seed_regions is not None:
        counts, store, budget = seed_regions
        chosen = seed_region_candidates(counts, budget, rng)
        unit, strategy, spent = SUPERPIXEL_UNIT, "random", len(chosen)
        factor, basis = 1.0, "seed round (random superpixels, 1 budget unit each)"
    elif round_ == 0:
        chosen = seed_candidates(pool_ids, initial_images, rng)
        unit, strategy, budget, spent = IMAGE_UNIT, "random", 0, 0
        factor, basis = 1.0, "seed round"
    else:
        if scores is None:
            raise ValueError("select: rounds after the seed round need a scores file")
        chosen, spent, (factor, basis), warning, store = _choose(
            scores, state, unit=unit, strategy=strategy, budget=budget, rng=rng
        )
    by_image: dict[str, list[Candidate]] = {}
    for c in chosen:
        by_image.setdefault(c.image_id, []).append(c)
    items = [
        RequestItem(
            image_id,
            tuple(sorted(c.region for c in cs if c.region >= 0)),
            any(c.region < 0 for c in cs),
            float(np.mean([c.score for c in cs])) if cs else 0.0,
            int(sum(c.est_cost for c in cs)),
        )
        for image_id, cs in sorted(by_image.items())
    ]
    request = make_request(round_, unit, strategy, items, store)
    summary = request.to_json() | {
        "budget": budget,
        "estimated_spent": spent,
        "cost_calibration": {"factor": factor, "basis": basis},
    }
    if warning:
        summary["warning"] = warning
    storage.write_json(out, summary)
    return summary
