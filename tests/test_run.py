"""``alseg run`` end to end on a tiny synthetic pool, and its resumption."""

from __future__ import annotations

import csv
import re

import pytest

from alseg_core import storage
from alseg_core.cli import main
from alseg_core.labels import load_state


def test_run_writes_table_and_plot_and_resumes(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "--no-progress", "run", "--root", str(synthetic_root), "--store", str(tmp_path / "sp"),
        "--out", str(out), "--rounds", "2", "--initial-images", "3", "--budget", "40",
        "--train-steps", "4", "--mc-passes", "2", "--model", "drn_d_22",
    ]  # fmt: skip
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "round 0/2" in log and "round 2/2" in log and "mIoU" in log
    # a line per step with its time, between the round lines
    assert re.search(r"^  round 1: scored \d+ pool images \(D=2\) -> .* \[\d+\.\ds\]$", log, re.M)
    assert re.search(r"^  round 2: merged, charged \d+ -> .* \[\d+\.\ds\]$", log, re.M)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["round"]) for r in rows] == [0, 1, 2]
    costs = [int(r["labelled_cost"]) for r in rows]
    assert costs[0] < costs[1] < costs[2]
    assert all(0 < float(r["pct_full_cost"]) <= 100 for r in rows)
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    # each round's labelled set is a superset of the previous one's
    states = [load_state(str(out / f"r{k}" / "labelled")) for k in range(3)]
    for before, after in zip(states, states[1:], strict=False):
        for image_id, labels in before.images.items():
            assert labels.regions <= after.images[image_id].regions
        assert set(before.images) <= set(after.images)
    # request files for annotators
    request = out / "r1" / "request"
    assert (request / "request.csv").exists() and any((request / "preannotations").iterdir())
    assert any((request / "heatmaps").iterdir())
    # a second run finds every round done and recomputes nothing
    mtime = (out / "r2" / "model.pt").stat().st_mtime
    assert main(args) == 0
    assert (out / "r2" / "model.pt").stat().st_mtime == mtime
    again = list(csv.DictReader(open(out / "metrics.csv")))

    def without_time(table):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in table]

    assert without_time(again) == without_time(rows)
    # The same folder with other settings is refused, not silently mixed.
    other = [*args[:-1], "drn_d_22", "--budget", "41"]
    capsys.readouterr()
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings (al.budget_per_round)" in err
    assert (out / "r2" / "model.pt").stat().st_mtime == mtime
    # The seed round's publish computed the full cost once; later rounds carried it on.
    full = [storage.read_json(str(out / f"r{k}" / "publish" / "metrics.json"))["full_cost"]
            for k in range(3)]  # fmt: skip
    assert full[0] > 0 and full == [full[0]] * 3
    # Superpixel rounds calibrate on the earlier rounds' charged / estimated cost.
    history = states[2].history
    assert history[1].est_cost > 0 and history[0].est_cost == 0  # round 0: no estimate
    calibration = storage.read_json(str(out / "r2" / "selection.json"))["cost_calibration"]
    assert calibration["basis"] == "1 earlier deliveries"
    assert calibration["factor"] == pytest.approx(
        min(max(history[1].cost / history[1].est_cost, 0.2), 5.0)
    )


def test_run_image_unit_with_learning_loss(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run_ll"
    args = [
        "--no-progress", "run", "--root", str(synthetic_root), "--store", str(tmp_path / "sp"),
        "--out", str(out), "--rounds", "1", "--initial-images", "4", "--budget", "60",
        "--train-steps", "3", "--mc-passes", "2", "--model", "drn_d_22",
        "--unit", "image", "--strategy", "learning_loss",
    ]  # fmt: skip
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert int(rows[1]["labelled_cost"]) > int(rows[0]["labelled_cost"])
    assert int(rows[1]["n_images"]) > int(rows[0]["n_images"])  # whole new images
    import pyarrow.parquet as pq

    scores = pq.read_table(out / "r1" / "scores.parquet").column("image_learning_loss")
    assert all(v == v for v in scores.to_pylist())  # predicted, not NaN
    state = load_state(str(out / "r1" / "labelled"))
    assert all(e.full_image for e in state.images.values())
    # The cost estimate is calibrated on the 4 seed images, whose true cost is known.
    selection = storage.read_json(str(out / "r1" / "selection.json"))
    calibration = selection["cost_calibration"]
    assert calibration["basis"] == "4 labelled images" and calibration["factor"] > 0
    raw = sum(i["est_cost"] for i in selection["items"])
    assert selection["estimated_spent"] == sum(
        max(1, round(i["est_cost"] * calibration["factor"])) for i in selection["items"]
    )
    assert raw > 0


def test_run_with_a_random_baseline_plots_both_and_says_what_the_strategy_bought(
    synthetic_root, tmp_path, capsys
):
    out = tmp_path / "run_b"
    args = [
        "--no-progress", "run", "--root", str(synthetic_root), "--store", str(tmp_path / "sp"),
        "--out", str(out), "--rounds", "1", "--initial-images", "3", "--budget", "40",
        "--train-steps", "2", "--mc-passes", "2", "--baseline", "random",
    ]  # fmt: skip
    assert main(args) == 0
    log = capsys.readouterr().out
    base = out / "baseline-random"
    # The same seed set: round 0 is the same labelled set in both runs.
    assert (out / "r0/labelled/state.json").read_bytes() == (
        base / "r0/labelled/state.json"
    ).read_bytes()
    ours = list(csv.DictReader(open(out / "metrics.csv")))
    theirs = list(csv.DictReader(open(base / "metrics.csv")))
    assert len(ours) == len(theirs) == 2
    assert "[random] round 1/1: labelled cost" in log
    line = next(s for s in log.splitlines() if s.startswith("mc_variance minus random"))
    from alseg_core.pipeline.run import equal_cost_gaps

    expected = equal_cost_gaps(ours, theirs)
    for k, x, d in expected:
        if k > 0:
            assert f"r{k} @{x:.1f}%: {d:+.4f}" in line
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_equal_cost_gaps_interpolate_the_baseline():
    from alseg_core.pipeline.run import equal_cost_gaps

    base = [{"round": 0, "pct_full_cost": 5.0, "mIoU": 0.2},
            {"round": 1, "pct_full_cost": 15.0, "mIoU": 0.4}]  # fmt: skip
    ours = [{"round": 0, "pct_full_cost": 5.0, "mIoU": 0.2},
            {"round": 1, "pct_full_cost": 10.0, "mIoU": 0.35},
            {"round": 2, "pct_full_cost": 20.0, "mIoU": 0.5}]  # fmt: skip
    gaps = equal_cost_gaps(ours, base)
    assert [(k, x) for k, x, _ in gaps] == [(0, 5.0), (1, 10.0)]  # 20 % is past the baseline
    assert gaps[1][2] == pytest.approx(0.35 - 0.3)


def test_a_run_folder_from_before_a_new_setting_still_resumes(tmp_path):
    import json

    from alseg_core.config import config_from_dict
    from alseg_core.pipeline.run import _check_run_settings

    cfg = config_from_dict({"al": {"out": str(tmp_path / "run")}, "data": {"root": str(tmp_path)}})
    _check_run_settings(cfg)
    marker = tmp_path / "run" / "run.json"
    held = json.loads(marker.read_text())
    del held["settings"]["al.plateau_chunks"]  # as written before the setting existed
    marker.write_text(json.dumps(held))
    _check_run_settings(cfg)  # its default then: the same run
    other = config_from_dict({"al": {"out": str(tmp_path / "run"), "plateau_chunks": 2},
                              "data": {"root": str(tmp_path)}})  # fmt: skip
    with pytest.raises(ValueError, match=r"other settings \(al.plateau_chunks\)"):
        _check_run_settings(other)


def test_run_with_the_diverse_strategy_selects_what_select_diverse_picks(
    synthetic_root, tmp_path, capsys
):
    """Through the whole round engine: the score step stores region embeddings and the
    select step buys exactly the k-centre choice over them (not the plain ranking)."""
    import pyarrow.parquet as pq

    from alseg_core.active.selection import select_diverse
    from alseg_core.active.strategies import get_strategy

    out = tmp_path / "run_diverse"
    args = [
        "--no-progress", "run", "--root", str(synthetic_root), "--store", str(tmp_path / "sp"),
        "--out", str(out), "--rounds", "1", "--initial-images", "3", "--budget", "40",
        "--train-steps", "3", "--mc-passes", "2", "--model", "lraspp_mobilenet_v3_large",
        "--unit", "superpixel", "--strategy", "mc_variance_diverse",
    ]  # fmt: skip
    assert main(args) == 0
    selection = storage.read_json(str(out / "r1" / "selection.json"))
    bought = {(i["image_id"], r) for i in selection["items"] for r in i["regions"]}
    assert bought and selection["estimated_spent"] <= 40
    rows = pq.read_table(out / "r1" / "scores.parquet").to_pylist()
    assert all(len(r["region_embedding"]) == 2 * 16 * len(r["region_est_cost"]) for r in rows)
    state = load_state(str(out / "r0" / "labelled"))
    cands = get_strategy("mc_variance_diverse").candidates(rows, state, unit="superpixel")
    factor = selection["cost_calibration"]["factor"]
    expected = select_diverse(cands, 40, cost_factor=factor).candidates
    assert bought == {(c.image_id, c.region) for c in expected}
