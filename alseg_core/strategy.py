"""Strategies compose a scorer's aggregated scores with the unit and the labelled set."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from alseg_core.labels import LabelState
from alseg_core.selection import IMAGE_UNIT, SUPERPIXEL_UNIT, Candidate
from alseg_core.types import PIXEL_STRATEGIES

STRATEGIES = ("random", *PIXEL_STRATEGIES, "learning_loss")


def check_strategy(strategy: str, unit: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"al.strategy must be one of {STRATEGIES}, got {strategy!r}")
    if unit not in (IMAGE_UNIT, SUPERPIXEL_UNIT):
        raise ValueError(f"al.unit must be 'image' or 'superpixel', got {unit!r}")
    if strategy == "learning_loss" and unit != IMAGE_UNIT:
        raise ValueError("al.strategy 'learning_loss' scores whole images: use al.unit 'image'")


def candidates(rows: list[dict], state: LabelState, *, unit: str, strategy: str) -> list[Candidate]:
    """Every unit not yet labelled, with its score under ``strategy`` and estimated cost."""
    check_strategy(strategy, unit)
    out: list[Candidate] = []
    key = "learning_loss" if strategy == "random" else strategy
    for row in rows:
        image_id = row["image_id"]
        if state.is_fully_labelled(image_id):
            continue
        if unit == IMAGE_UNIT:
            score = 0.0 if strategy == "random" else row[f"image_{key}"]
            out.append(Candidate(image_id, -1, float(score), int(row["image_est_cost"])))
            continue
        done = state.labelled_regions(image_id)
        scores = row[f"region_{strategy}"] if strategy != "random" else None
        for region, cost in enumerate(row["region_est_cost"]):
            if region in done:
                continue
            score = 0.0 if scores is None else scores[region]
            if score is None or (isinstance(score, float) and math.isnan(score)):
                score = -np.inf
            out.append(Candidate(image_id, region, float(score), int(cost)))
    return out


CALIBRATION_RANGE = (0.2, 5.0)


def cost_calibration(
    state: LabelState, *, unit: str, predicted_on_labelled: Mapping[str, int] | None = None
) -> tuple[float, str]:
    """Factor true cost / estimated cost, and what it was measured on.

    Image unit: over fully labelled images, the instances the annotator labelled against
    the instances the current model predicts there (``predicted_on_labelled``: image id
    -> predicted instances), so the seed set already calibrates round 1. Superpixel
    unit: charged / estimated cost of the earlier deliveries that had an estimate.
    1.0 without data; clipped to ``CALIBRATION_RANGE``.
    """
    factor, basis = 1.0, "no labelled data yet"
    if unit == IMAGE_UNIT:
        true = pred = n = 0
        for image_id, predicted in sorted((predicted_on_labelled or {}).items()):
            keys = state.instance_keys(image_id)
            if state.is_fully_labelled(image_id) and keys and predicted > 0:
                true, pred, n = true + len(keys), pred + int(predicted), n + 1
        if n:
            factor, basis = true / pred, f"{n} labelled images"
    else:
        ratio, n = state.cost_calibration()
        if n:
            factor, basis = ratio, f"{n} earlier deliveries"
    lo, hi = CALIBRATION_RANGE
    return float(min(max(factor, lo), hi)), basis


def calibrated(cands: list[Candidate], factor: float) -> list[Candidate]:
    """Candidates with their estimated cost scaled by ``factor`` (at least 1 each)."""
    if factor == 1.0:
        return cands
    return [replace(c, est_cost=max(1, round(c.est_cost * factor))) for c in cands]
