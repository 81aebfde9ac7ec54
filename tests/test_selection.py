"""Aggregation per region, selection under budget, never re-selecting labelled units."""

from __future__ import annotations

import numpy as np
import pytest

from alseg_core.active.costs import cost_calibration, estimate_costs
from alseg_core.active.regions import region_means
from alseg_core.active.selection import Candidate, calibrated, select_under_budget
from alseg_core.active.strategies import get_strategy
from alseg_core.labels import ImageLabels, LabelState


def candidates(rows, state, *, unit, strategy):
    return get_strategy(strategy).candidates(rows, state, unit=unit)


def test_region_means_equal_a_direct_loop():
    rng = np.random.default_rng(0)
    regions = rng.integers(0, 7, (9, 11))
    scores = rng.random((9, 11))
    valid = rng.random((9, 11)) > 0.2
    got = region_means(scores, regions, n_regions=8, valid=valid)
    for r in range(8):
        sel = (regions == r) & valid
        if sel.any():
            assert got[r] == pytest.approx(scores[sel].mean())
        else:
            assert np.isnan(got[r])  # region 7 does not occur


def test_budget_is_respected_and_cheaper_units_fill_it():
    cands = [Candidate("a", 0, 0.9, 5), Candidate("a", 1, 0.8, 4), Candidate("b", 0, 0.7, 2),
             Candidate("b", 1, 0.1, 1)]  # fmt: skip
    chosen = select_under_budget(cands, 8)
    # 0.9 (5) fits, 0.8 (4) would make 9 > 8 and is skipped, 0.7 (2) fits, 0.1 (1) fits
    assert [(c.image_id, c.region) for c in chosen.candidates] == [("a", 0), ("b", 0), ("b", 1)]
    assert chosen.spent == 8 <= chosen.budget


def test_zero_cost_estimates_still_use_budget():
    cands = [Candidate("a", r, 1.0, 0) for r in range(10)]
    assert len(select_under_budget(cands, 3).candidates) == 3


def test_random_selection_is_seeded():
    cands = [Candidate(f"img{i}", r, 0.0, 1) for i in range(5) for r in range(4)]
    a = select_under_budget(cands, 6, rng=np.random.default_rng([0, 1]))
    b = select_under_budget(list(reversed(cands)), 6, rng=np.random.default_rng([0, 1]))
    c = select_under_budget(cands, 6, rng=np.random.default_rng([1, 1]))
    assert a.candidates == b.candidates and a.candidates != c.candidates


def test_labelled_units_are_never_candidates():
    row = {
        "image_id": "x", "image_est_cost": 3, "region_est_cost": [1, 1, 1],
        "image_mc_variance": 0.5, "region_mc_variance": [0.9, 0.8, 0.1],
    }  # fmt: skip
    state = LabelState({"x": ImageLabels("x", frozenset({0}))})
    cands = candidates([row], state, unit="superpixel", strategy="mc_variance")
    assert [c.region for c in cands] == [1, 2]
    chosen = select_under_budget(cands, 10)
    assert 0 not in [c.region for c in chosen.candidates]
    full = LabelState({"x": ImageLabels("x", full_image=True)})
    assert candidates([row], full, unit="image", strategy="mc_variance") == []
    assert candidates([row], full, unit="superpixel", strategy="mc_variance") == []


def test_estimated_costs_from_prediction():
    pred = np.array([[0, 0, 13, 13], [0, 0, 13, 13], [10, 10, 0, 0]], np.uint8)
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    # components: road top-left, car, sky, road bottom-right -> 4
    image_cost, region_costs, predicted = estimate_costs(pred, regions, None)
    assert image_cost == 4 and predicted == 4 and region_costs.tolist() == [1, 1, 2]
    labelled = np.zeros(pred.shape, bool)
    labelled[0, 2] = True  # the car is already labelled
    image_cost, region_costs, predicted = estimate_costs(pred, regions, labelled)
    assert predicted == 4 and image_cost == 3 and region_costs.tolist() == [1, 0, 2]


def test_cost_calibration_image_unit_uses_labelled_images():
    predicted = {"a": 4, "b": 6, "c": 5}  # c is not labelled: ignored
    keys = frozenset(f"i{k}" for k in range(12))  # 12 true instances in a
    state = LabelState(
        {
            "a": ImageLabels("a", full_image=True, instance_keys=keys),
            "b": ImageLabels("b", full_image=True, instance_keys=frozenset({"x", "y", "z"})),
        }
    )
    factor, basis = cost_calibration(state, unit="image", predicted_on_labelled=predicted)
    assert factor == pytest.approx(15 / 10) and basis == "2 labelled images"
    assert cost_calibration(LabelState(), unit="image", predicted_on_labelled=predicted) == (
        1.0,
        "no labelled data yet",
    )
    scaled = calibrated([Candidate("c", -1, 0.5, 5), Candidate("d", -1, 0.1, 0)], factor)
    assert [c.est_cost for c in scaled] == [8, 1]  # round(7.5) = 8; never below 1


def test_cost_calibration_image_unit_prefers_the_deliveries_once_there_are_some():
    """The labelled images say 15/10 (the model was trained on them); the first
    delivery with an estimate says 45/30 charged/estimated, and from then on it decides."""
    predicted = {"a": 4, "b": 6}
    keys = frozenset(f"i{k}" for k in range(15))
    seed = [ImageLabels("a", full_image=True, instance_keys=keys),
            ImageLabels("b", full_image=True)]  # fmt: skip
    state = LabelState().merged("seed", 0, 15, seed, est_cost=0)  # a seed: no estimate
    assert cost_calibration(state, unit="image", predicted_on_labelled={"a": 10}) == (
        1.5,
        "1 labelled images",
    )
    state = state.merged("r1", 1, 45, [ImageLabels("c", full_image=True)], est_cost=30)
    factor, basis = cost_calibration(state, unit="image", predicted_on_labelled=predicted)
    assert factor == pytest.approx(45 / 30) and basis == "1 earlier deliveries"
    state = state.merged("r2", 2, 10, [ImageLabels("d", full_image=True)], est_cost=20)
    assert cost_calibration(state, unit="image", predicted_on_labelled=predicted) == (
        pytest.approx(55 / 50),
        "2 earlier deliveries",
    )


def test_cost_calibration_superpixel_unit_uses_delivery_history():
    state = LabelState().merged("seed", 0, 30, [ImageLabels("a", full_image=True)])
    assert cost_calibration(state, unit="superpixel") == (1.0, "no labelled data yet")
    state = state.merged("r1", 1, 90, [ImageLabels("b", frozenset({1}))], est_cost=60)
    state = state.merged("r2", 2, 30, [ImageLabels("c", frozenset({2}))], est_cost=20)
    factor, basis = cost_calibration(state, unit="superpixel")
    assert factor == pytest.approx(120 / 80) and basis == "2 earlier deliveries"
    # a wild ratio is clipped
    wild = LabelState().merged("r1", 1, 100, [ImageLabels("b", frozenset({1}))], est_cost=1)
    assert cost_calibration(wild, unit="superpixel")[0] == 5.0
    # the estimate survives a round trip through state.json
    again = LabelState.from_json(state.to_json())
    assert cost_calibration(again, unit="superpixel") == (1.5, "2 earlier deliveries")


def test_select_warns_when_no_unit_fits_the_budget(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alseg_core.pipeline.steps.select import select_step

    rows = [{"image_id": f"img{i}", "image_est_cost": 50, "region_est_cost": [],
             "image_mc_variance": 0.1 * i} for i in range(3)]  # fmt: skip
    table = pa.Table.from_pylist(rows).replace_schema_metadata({b"alseg_format": b"alseg-scores/1"})
    pq.write_table(table, tmp_path / "scores.parquet")
    summary = select_step(
        1, pool_ids=[r["image_id"] for r in rows], scores=str(tmp_path / "scores.parquet"),
        labelled=None, out=str(tmp_path / "s.json"), unit="image", strategy="mc_variance",
        budget=30, initial_images=2, seed=0,
    )  # fmt: skip
    assert summary["items"] == [] and summary["estimated_spent"] == 0
    assert summary["warning"].startswith(
        "no image fits al.budget_per_round=30: the cheapest costs 50"
    )


def test_a_marginal_cost_request_carries_the_estimate_the_selection_spent(tmp_path):
    """Regions 0 and 1 of one image share predicted instance 1: with marginal cost
    (mc_variance_plus) region 1 is bought at 1, not its own 2. The request must say
    2 + 1 + 1 = 4, what the selection spent, not 5: the next round's calibration is
    true cost over this figure, and it scales marginal costs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alseg_core.pipeline.steps.select import select_step

    row = {"image_id": "a", "image_est_cost": 4, "region_est_cost": [2, 2, 1],
           "region_mc_variance_balanced": [0.9, 0.8, 0.1], "region_pixels": [10, 10, 10],
           "region_components": [[0, 1], [1, 2], [3]],
           "image_mc_variance_balanced": 0.5}  # fmt: skip
    table = pa.Table.from_pylist([row]).replace_schema_metadata(
        {b"alseg_format": b"alseg-scores/1"}
    )
    pq.write_table(table, tmp_path / "scores.parquet")
    summary = select_step(
        1, pool_ids=["a"], scores=str(tmp_path / "scores.parquet"), labelled=None,
        out=str(tmp_path / "s.json"), unit="superpixel", strategy="mc_variance_plus",
        budget=10, initial_images=1, seed=0,
    )  # fmt: skip
    assert summary["items"][0]["regions"] == [0, 1, 2]
    assert summary["estimated_spent"] == 4
    assert summary["items"][0]["est_cost"] == 4  # was 5: region 1 at its own 2
