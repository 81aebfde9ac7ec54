"""The label-efficiency benchmark, two rounds on a tiny pool, end to end."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def _load_bench():
    # A plain import (bench/ on sys.path, which spawned workers inherit) so that the
    # benchmark's worker functions pickle by reference.
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module("label_efficiency")


def test_tiny_benchmark_writes_consistent_csv_plot_and_summary(tmp_path):
    bench = _load_bench()
    out = tmp_path / "results" / "le"
    md = bench.run("tiny", out, tmp_path / "work")
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    preset = bench.PRESETS["tiny"]
    expected_runs = len(preset["strategies"]) * len(preset["units"]) * len(preset["seeds"])
    runs: dict[tuple, list[dict]] = {}
    for r in rows:
        runs.setdefault((r["strategy"], r["unit"], r["seed"]), []).append(r)
    assert len(runs) == expected_runs
    for key, run_rows in runs.items():
        rounds = [int(r["round"]) for r in run_rows]
        assert rounds == list(range(preset["al"]["rounds"] + 1)), key
        costs = [int(r["labelled_cost"]) for r in run_rows]
        assert all(b > a for a, b in zip(costs, costs[1:], strict=False)), (key, costs)
        for r in run_rows:
            assert 0.0 < float(r["pct_full_cost"]) <= 100.0
            assert 0.0 <= float(r["mIoU"]) <= 1.0
    # the seed round is the same random images for every strategy and unit of a seed
    for seed in map(str, preset["seeds"]):
        seed_costs = {r["labelled_cost"] for r in rows if r["seed"] == seed and r["round"] == "0"}
        assert len(seed_costs) == 1
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert md == out.with_suffix(".md").read_text()
    for unit in preset["units"]:
        for strategy in preset["strategies"]:
            assert f"| {unit} | {strategy} |" in md
    assert "Ceiling: full supervision trained to a plateau" in md
    assert "Above random by more than one std at every round" in md
    assert "| superpixel | mc_variance_plus | " in md.split("## Diagnosis")[1]  # diagnosis rows
    assert "Per-class IoU at the last round" in md and "Target 95 % of the ceiling" in md
    import json

    saved = json.loads(out.with_suffix(".json").read_text())
    for ceiling in saved["ceilings"]:
        curve = ceiling["curve"]  # (epochs, mIoU): equal steps, then the plateau chunks
        assert len(curve) >= 2 and curve[1][0] > curve[0][0]
        assert ceiling["converged"] == max(m for _, m in curve)
    assert saved["diagnosis"]["superpixel/mc_variance"]["cost_per_unit"] > 0

    # A rerun of one configuration through `alseg bench --check` reproduces its rows
    # (CPU runs are deterministic: the difference is exactly zero, inside any seed noise).
    import subprocess

    check = tmp_path / "results" / "rerun"
    argv = [
        str(Path(sys.executable).parent / "alseg"), "bench", "--preset", "tiny",
        "--out", str(check), "--work", str(tmp_path / "work2"), "--seeds", "1",
        "--strategies", "mc_variance", "--units", "superpixel",
        "--check", str(out.with_suffix(".csv")),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = check.with_suffix(".md").read_text()
    n_rows = preset["al"]["rounds"] + 1
    assert f"Rows compared: {n_rows}; largest |difference| in mIoU: 0.0000" in report
    assert f"within the earlier run's std over seeds: {n_rows}/{n_rows}" in report
