"""The label-efficiency benchmark, two rounds on a tiny pool, end to end."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import pytest

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
    from alseg_core.active.strategies import get_strategy

    preset = bench.PRESETS["tiny"]
    pairs = [(u, s) for u in preset["units"] for s in preset["strategies"]
             if u in get_strategy(s).units]  # fmt: skip
    assert ("image", "mc_variance_instances") not in pairs  # a superpixel-only strategy
    expected_runs = len(pairs) * len(preset["seeds"])
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
            assert len(r["weights"]) == 12 and int(r["weights"], 16) >= 0
        # each round trains on: its weights differ from the round before
        weights = [r["weights"] for r in run_rows]
        assert all(a != b for a, b in zip(weights, weights[1:], strict=False)), key
    # the seed round is the same random images for every strategy and unit of a seed
    for seed in map(str, preset["seeds"]):
        seed_costs = {r["labelled_cost"] for r in rows if r["seed"] == seed and r["round"] == "0"}
        assert len(seed_costs) == 1
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert md == out.with_suffix(".md").read_text()
    for unit, strategy in pairs:
        assert f"| {unit} | {strategy} |" in md
    assert "Ceiling: full supervision trained to a plateau" in md
    assert "Above random by more than one std at every round" in md
    # a diagnosis row
    assert "| superpixel | mc_variance_instances | " in md.split("## Diagnosis")[1]
    assert "Per-class IoU at the last round" in md and "Target 95 % of the ceiling" in md
    import json

    saved = json.loads(out.with_suffix(".json").read_text())
    for ceiling in saved["ceilings"]:
        curve = ceiling["curve"]  # (epochs, mIoU): equal steps, then the plateau chunks
        assert len(curve) >= 2 and curve[1][0] > curve[0][0]
        assert ceiling["converged"] == max(m for _, m in curve)
    assert saved["diagnosis"]["superpixel/mc_variance"]["cost_per_unit"] > 0

    # What each acquisition round spent: the labelled cost it added, mean over the seeds.
    for unit, strategy in pairs:
        d = saved["diagnosis"][f"{unit}/{strategy}"]
        added = [
            [int(b["labelled_cost"]) - int(a["labelled_cost"])
             for a, b in zip(rs, rs[1:], strict=False)]
            for (s, u, _), rs in runs.items() if (u, s) == (unit, strategy)
        ]  # fmt: skip
        mean = [sum(c) / len(added) for c in zip(*added, strict=True)]
        assert d["spend_by_round"] == pytest.approx(mean), (unit, strategy)
        assert d["budget"] == 60 and 0.0 <= d["still_rising"] <= 1.0
    assert "true cost spent per round (budget 60)" in md
    log = (tmp_path / "work" / "runs" / "superpixel-mc_variance-s0" / "bench.log").read_text()
    assert "round 2: trained" in log and "val mIoU by chunk" in log

    # The report of a stopped benchmark from its work folder: the finished runs (those
    # with a bench.log) give the same rows and diagnosis as the run's own report.
    again = tmp_path / "results" / "again"
    bench.report_from_work("tiny", tmp_path / "work", again, ceilings_from=out)
    lines = lambda p: sorted(p.with_suffix(".csv").read_text().splitlines())  # noqa: E731
    assert lines(again) == lines(out)
    assert json.loads(again.with_suffix(".json").read_text())["diagnosis"] == saved["diagnosis"]
    footer = again.with_suffix(".md").read_text()
    assert "Reported from the " in footer and "Machine: " in footer and "Code: " in footer
    assert "Wall time" not in footer  # the runs were timed in their own report
    command = "Command: `.venv/bin/python bench/label_efficiency.py --preset tiny --from-work "
    assert command in footer
    (tmp_path / "work" / "runs" / "superpixel-mc_variance-s1" / "bench.log").unlink()
    bench.report_from_work("tiny", tmp_path / "work", again, ceilings_from=out)
    left = {
        (r["strategy"], r["unit"], r["seed"])
        for r in csv.DictReader(open(again.with_suffix(".csv")))
    }
    assert ("mc_variance", "superpixel", "1") not in left and len(left) == expected_runs - 1
    # Round 0 is trained once per seed (the 3 strategies x 2 units of a seed share it) and
    # copied into each run: the same files as a run that trains its own seed round.
    assert "round 0: trained" in log and "(shared seed round)" in log
    assert len(list((tmp_path / "work" / "seed-rounds").iterdir())) == len(preset["seeds"])
    from alseg_core.pipeline.run import run_rounds

    own = bench._config(
        {**preset, "al": {**preset["al"], "rounds": 0}}, tmp_path / "work", unit="superpixel",
        strategy="mc_variance", seed=0, extra={"out": str(tmp_path / "own")},
    )  # fmt: skip
    run_rounds(own, log=lambda _m: None)

    def files(root: Path) -> dict:
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and "publish" not in p.parts and p.name != "model.pt"}  # fmt: skip

    shared = files(tmp_path / "work" / "runs" / "superpixel-mc_variance-s0" / "r0")
    assert Path("metrics.json") in shared and Path("labelled/state.json") in shared
    assert files(tmp_path / "own" / "r0") == shared
    # bench/budget_adherence.py reads the same rounds back: the true cost of each round is
    # the labelled cost it added, the units bought the regions it added, the budget filled.
    adherence = importlib.import_module("budget_adherence")
    read = adherence.read_run(tmp_path / "work" / "runs" / "superpixel-mc_variance-s0")
    rs = runs[("mc_variance", "superpixel", "0")]
    assert [r["cost"] for r in read] == [
        int(b["labelled_cost"]) - int(a["labelled_cost"]) for a, b in zip(rs, rs[1:], strict=False)
    ]
    assert [r["units"] for r in read] == [
        int(b["n_regions"]) - int(a["n_regions"]) for a, b in zip(rs, rs[1:], strict=False)
    ]
    assert all(0 < r["filled"] <= r["budget"] == 60 and 0 <= r["free"] <= 1 for r in read)

    # bench/converged_sets.py trains a round's labelled set with the ceiling's schedule:
    # tiny's equal steps are 2 x 3 rounds = 6 steps, its chunks 1 epoch over the 24-image
    # pool = 3 steps; round 1 of image MC variance holds 9-16 images (2 batches of 8 an
    # epoch), so that is 3 and round(1.5) = 2 epochs.
    converged = importlib.import_module("converged_sets")
    row = converged.converge(("tiny", str(tmp_path / "work"), "image-mc_variance", 0, 1, 1, 1e-9))
    ir = runs[("mc_variance", "image", "0")]
    assert row["images"] == int(ir[1]["n_images"]) and 8 < row["images"] <= 16
    assert row["epochs"] == [3, 2]
    assert row["own_mIoU"] == pytest.approx(float(ir[1]["mIoU"]), abs=1e-4)
    assert 2 <= len(row["curve"]) <= preset["ceiling_max_chunks"] + 1
    assert row["converged_mIoU"] == max(row["curve"])
    folder = tmp_path / "work" / "converged" / "image-mc_variance-s0-r1"
    assert (folder / "equal-steps.pt").exists() and (folder / "chunk-1.pt").exists()
    # --self-training at any confidence: every unpaid pool pixel gets the converged model's
    # prediction; chunks of 1 epoch over the 24 pool images go on from the best checkpoint.
    assert row["pseudo_share"] == 1.0 and 0.0 < row["pseudo_accuracy"] < 1.0
    assert 1 <= len(row["st_curve"]) <= preset["ceiling_max_chunks"]
    assert row["self_trained_mIoU"] == max([row["converged_mIoU"], *row["st_curve"]])
    assert len(list((folder / "pseudo").glob("*.png"))) == 24
    assert (folder / "self-training-1.pt").exists()

    # bench/lr_sweep.py trains the shared seed round's set through every chunk the plateau
    # rule allows (tiny: 1 extra, so 3 chunks; no early stop) and the full pool for the
    # equal-steps epochs (6 steps over 24 images in batches of 8 = 2 epochs).
    sweep = importlib.import_module("lr_sweep")
    seed_part = sweep._one(("tiny", str(tmp_path / "work"), "seed round", 0.003, 0, 1))
    assert len(seed_part["curve"]) == 3 and seed_part["steps"] == "3 x 2"
    assert all(0.0 <= m <= 1.0 for m in seed_part["curve"])
    full_part = sweep._one(("tiny", str(tmp_path / "work"), "full pool", 0.003, 0, 1))
    assert len(full_part["curve"]) == 1 and full_part["steps"] == "2 epochs"

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
    # and the same weights, round by round (mIoU to 4 digits could hide a difference)
    assert f"Same weights (sha256 of the round's model): {n_rows}/{n_rows}." in report
    assert "\nMachine: " in report and "\nCommand: `" in report and "--check" in report
    # its own rows are written beside the report (a later check can compare with them)
    rerun_rows = lines(check)[:-1]  # the header sorts last ("strategy" > "mc_...")
    assert rerun_rows == [r for r in lines(out) if r.startswith("mc_variance,superpixel,1,")]


def _part(path: Path, seeds: list[int], mious: dict, pixels_per_cost: float, ceiling: float,
          preset: dict, spend: tuple[list[float], float] | None = None) -> None:  # fmt: skip
    """A results part as ``run`` writes it: ``seeds`` with the same curves, image units;
    ``spend``: (true cost spent per round, share still rising), else a part written
    before those were recorded."""
    import json

    rows = [
        {"strategy": s, "unit": "image", "seed": seed, "round": k, "labelled_cost": 10 * (k + 1),
         "pct_full_cost": 5.0 * (k + 1), "n_images": k + 1, "n_regions": 0, "mIoU": m}
        for seed in seeds for s, curve in mious.items() for k, m in enumerate(curve)
    ]  # fmt: skip
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    per_class = {"road": 0.5, "sidewalk": None}
    diag = {"cost_per_unit": 30.0, "pixels_per_cost": pixels_per_cost, "per_class": per_class}
    if spend:
        diag |= {"budget": 60, "spend_by_round": spend[0], "still_rising": spend[1]}
    path.with_suffix(".json").write_text(json.dumps({
        "ceilings": [{"seed": seed, "equal_steps": ceiling - 0.1, "converged": ceiling,
                      "curve": [[4, ceiling - 0.1], [6, ceiling]]} for seed in seeds],
        "diagnosis": {f"image/{s}": diag for s in mious},
        "preset": {**preset, "seeds": seeds}, "machine": "m", "code": f"git c{seeds[0]}",
    }))  # fmt: skip


def test_merge_reports_the_seeds_of_several_runs_as_one(tmp_path):
    """Seeds run in separate sessions merge into one report: the rows of both parts, the
    ceiling and the curves the mean over all seeds, the diagnoses (each part's mean over
    its seeds) weighted by seeds; the same seed twice, or parts run with other settings,
    are refused."""
    import json

    bench = _load_bench()
    preset = {k: v for k, v in bench.PRESETS["tiny"].items() if k != "seeds"}
    a, b = tmp_path / "s0", tmp_path / "s1"
    _part(a, [0], {"random": [0.2, 0.3, 0.4], "mc_variance": [0.2, 0.35, 0.45]}, 100, 0.5, preset,
          spend=([100, 200], 0.0))  # fmt: skip
    _part(b, [1, 2], {"random": [0.2, 0.3, 0.4], "mc_variance": [0.2, 0.38, 0.5]}, 400, 0.8,
          preset, spend=([400, 500], 0.5))  # fmt: skip
    out = tmp_path / "merged"
    md = bench.merge([a, b], out, "tiny")
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert sorted({r["seed"] for r in rows}) == ["0", "1", "2"] and len(rows) == 18
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["preset"]["seeds"] == [0, 1, 2]
    # (100 x 1 seed + 400 x 2 seeds) / 3, not the mean of the parts (250)
    assert meta["diagnosis"]["image/random"]["pixels_per_cost"] == pytest.approx(300.0)
    assert meta["diagnosis"]["image/random"]["per_class"] == {"road": 0.5, "sidewalk": None}
    # spent per round (100 + 2 x 400) / 3, (200 + 2 x 500) / 3; still rising (0 + 2 x 0.5) / 3
    assert "| image | random | 30.00 | 300 | 300 / 400 | 33% |" in md
    assert "true cost spent per round (budget 60)" in md
    assert "mIoU 0.7000" in md  # the ceiling: (0.5 + 0.8 + 0.8) / 3
    assert "3 seeds" in md and "One seed only" not in md
    # MC variance minus random after round 1: +0.05, +0.08, +0.08 -> mean +0.07
    assert "r1 @10.0%: +0.0700" in md
    assert out.with_suffix(".png").stat().st_size > 0
    # The command it names writes the same report again, not the default results.
    assert f"--merge {a} {b} --out {out}`" in md
    with pytest.raises(ValueError, match="already in an earlier part"):
        bench.merge([a, a], tmp_path / "twice", "tiny")
    _part(b, [1], {"random": [0.2, 0.3, 0.4]}, 400, 0.8, {**preset, "al": {"rounds": 9}})
    with pytest.raises(ValueError, match="other settings"):
        bench.merge([a, b], tmp_path / "other", "tiny")


def test_merge_joins_strategies_run_later_on_the_same_seeds_and_their_ceilings(tmp_path):
    """A strategy added later runs on the seeds already done, reusing their ceilings
    (``--ceilings-from``); the merge then holds both parts' runs, each seed's ceiling once,
    and refuses a seed whose ceilings differ."""

    bench = _load_bench()
    preset = {k: v for k, v in bench.PRESETS["tiny"].items() if k != "seeds"}
    old, new = tmp_path / "old", tmp_path / "new"
    _part(old, [0, 1], {"random": [0.2, 0.3, 0.4]}, 100, 0.5, {**preset, "strategies": ["random"]})
    reused = bench._reused_ceilings(old, {**preset, "seeds": [1]})
    assert [c["seed"] for c in reused] == [1] and reused[0]["converged"] == 0.5
    with pytest.raises(ValueError, match=r"no ceiling for seed\(s\) \[2\]"):
        bench._reused_ceilings(old, {**preset, "seeds": [1, 2]})
    with pytest.raises(ValueError, match="other settings"):
        bench._reused_ceilings(old, {**preset, "seeds": [1], "al": {"rounds": 9}})
    # How each AL round is trained does not change full supervision: ceilings are shared.
    plateau = {**preset["al"], "plateau_chunks": 2, "plateau_tol": 0.005}
    assert bench._reused_ceilings(old, {**preset, "seeds": [0], "al": plateau})[0]["seed"] == 0
    _part(new, [0, 1], {"mc_variance": [0.2, 0.4, 0.5]}, 300, 0.5,
          {**preset, "strategies": ["mc_variance"]})  # fmt: skip
    md = bench.merge([old, new], tmp_path / "merged", "tiny")
    rows = list(csv.DictReader(open(tmp_path / "merged.csv")))
    assert len(rows) == 12 and {r["strategy"] for r in rows} == {"random", "mc_variance"}
    assert "mIoU 0.5000" in md and "2 seeds" in md  # each seed's ceiling counted once
    assert "r1 @10.0%: +0.1000" in md  # mc_variance minus random on the same seeds
    # Parts from before the spend and the plateau cap were recorded: shown as unknown.
    assert "| image | random | 30.00 | 100 | - | - |" in md
    _part(new, [1], {"mc_variance": [0.2, 0.4, 0.5]}, 300, 0.9, preset)
    with pytest.raises(ValueError, match="another ceiling for seed 1"):
        bench.merge([old, new], tmp_path / "bad", "tiny")


def test_merge_takes_ceilings_trained_alone_with_more_patience(tmp_path, monkeypatch):
    """Runs' parts made with one chunk of patience merge with ceilings trained alone
    (``--ceilings-only``) under the preset's own ceiling schedule: the report's ceiling is
    theirs, not the parts'; parts whose runs had other settings are still refused."""
    import json

    bench = _load_bench()
    preset = {k: v for k, v in bench.PRESETS["tiny"].items() if k != "seeds"}
    part = tmp_path / "runs"
    _part(part, [0, 1], {"random": [0.2, 0.3, 0.4], "mc_variance": [0.2, 0.35, 0.45]}, 100,
          0.5, {**preset, "ceiling_patience": 1})  # fmt: skip
    patient = {**preset, "ceiling_patience": 2}
    ceilings = [{"seed": s, "equal_steps": 0.3, "converged": m, "curve": [[4, 0.3], [6, m]]}
                for s, m in ((0, 0.6), (1, 0.8))]  # fmt: skip
    alone = tmp_path / "ceilings"
    md = bench._ceilings_report(ceilings, patient, "tiny", alone, "footer\n")
    assert "mIoU 0.7000 (seeds: 0.6000, 0.8000)" in md and "2 chunks in a row" in md
    assert md.startswith("# Ceilings (preset tiny,") and md.endswith("footer\n")
    monkeypatch.setitem(bench.PRESETS, "tiny", {**bench.PRESETS["tiny"], "ceiling_patience": 2})
    # the parts' own ceiling (0.5) is not the preset's schedule: merged only with these
    merged = bench.merge([part], tmp_path / "merged", "tiny", ceilings_from=alone)
    assert "mIoU 0.7000 (seeds: 0.6000, 0.8000)" in merged
    assert f"--ceilings-from {alone} --out" in merged
    meta = json.loads((tmp_path / "merged.json").read_text())
    assert meta["preset"]["ceiling_patience"] == 2 and meta["ceilings_from"] == str(alone)
    # at 10 % of full cost MC variance has 0.35: 50 % of 0.7 (of the parts' 0.5: 70 %)
    assert "| image | mc_variance | 50.0% |" in merged
    _part(part, [0, 1], {"random": [0.2, 0.3, 0.4]}, 100, 0.5,
          {**preset, "al": {**preset["al"], "rounds": 9}})  # fmt: skip
    with pytest.raises(ValueError, match="other settings than preset tiny"):
        bench.merge([part], tmp_path / "other", "tiny", ceilings_from=alone)


def test_still_rising_counts_trainings_stopped_at_the_cap_while_val_miou_gains():
    """Of four trainings with up to 2 extra chunks (tol 0.005): one gains 0.1 in its last
    chunk, one 0.01 over an earlier best after a dip (both limited by steps), one gains
    0.001 (a plateau), one stopped after its first extra chunk: 2 of 4."""
    bench = _load_bench()
    tail = " (kept the best) -> runs/model.pt [3.0s]"
    log = [
        "  round 0: trained m from scratch, 4 epochs in 1.0s, loss 1.0, val mIoU by chunk "
        "0.1000 -> 0.2000 -> 0.3000" + tail,
        "  round 1: trained m from scratch, 4 epochs in 1.0s, loss 1.0, val mIoU by chunk "
        "0.3000 -> 0.2000 -> 0.3100" + tail,
        "  round 1: mIoU 0.3100 on 4 val images [1.0s]",
        "  round 2: trained m from scratch, 4 epochs in 1.0s, loss 1.0, val mIoU by chunk "
        "0.1000 -> 0.2000 -> 0.2010" + tail,
        "  round 3: trained m from scratch, 4 epochs in 1.0s, loss 1.0, val mIoU by chunk "
        "0.1000 -> 0.1020" + tail,
    ]
    assert bench.still_rising(log, 2, 0.005) == 0.5
    assert bench.still_rising(log, 3, 0.005) == 0.0  # none ran 3 extra chunks
    assert bench.still_rising(log, 0, 0.005) is None  # no plateau rule
    assert bench.still_rising(["  round 0: trained m from scratch, 4 epochs"], 2, 0.005) is None
    # Self-training chunks after the plateau rule's (", then self-training ...") are not its
    # own: round 2 is flat at its second chunk, rounds 1 and 3 rose at the cap.
    log = [
        # Both extra chunks ran and the last gained 0.02: stopped at the cap while rising.
        "round 1: trained m from round 0, 9 epochs in 1.0s, loss 0.5, val mIoU by chunk "
        "0.3000 -> 0.3100 -> 0.3300 (kept the best) -> r1/model.pt",
        # Flat at its second chunk; the self-training chunks after it do not count.
        "round 2: trained m from round 1, 9 epochs in 1.0s, loss 0.5, val mIoU by chunk "
        "0.3300 -> 0.3310, then self-training 0.3500 -> 0.3700 (kept the best) -> r2/model.pt",
        # Rising at the cap, then self-training.
        "round 3: trained m from round 2, 9 epochs in 1.0s, loss 0.5, val mIoU by chunk "
        "0.3700 -> 0.3800 -> 0.3900, then self-training 0.3850 (kept the best) -> r3/model.pt",
    ]
    assert bench.still_rising(log, 2, 0.005) == pytest.approx(2 / 3)
    assert bench.still_rising(log[1:2], 2, 0.005) == 0.0
    assert bench.still_rising(log, 0, 0.005) is None


def test_ablation_preset_is_the_standard_setting_with_other_runs():
    """Its parts reuse the standard's ceilings and merge with its results: the same
    settings, none of the same runs, every strategy registered for the superpixel unit."""
    from alseg_core.active.strategies import get_strategy

    bench = _load_bench()
    standard, ablation = bench.PRESETS["standard"], bench.PRESETS["ablation"]
    assert bench._settings(ablation) == bench._settings(standard)
    assert bench._ceiling_settings(ablation) == bench._ceiling_settings(standard)
    assert not set(ablation["strategies"]) & set(standard["strategies"])
    for strategy in ablation["strategies"]:
        assert "superpixel" in get_strategy(strategy).units, strategy


def test_every_round_verdict_counts_a_round_outside_the_other_curve_as_not_shown():
    """Superpixel MC variance at 10/20/40 % of cost, random covering only 0-30 %: round 1
    (+0.1 over a std of 0.01) is a win, round 2 is outside random's costs, so 'every
    round' is False (1/2) in both lines that state it."""
    import numpy as np

    _load_bench()  # puts bench/ on sys.path
    report = importlib.import_module("label_efficiency_report")
    sd = np.full(3, 0.01)
    stats = {
        ("superpixel", "mc_variance"): (np.array([2.0, 20, 40]), np.array([0.1, 0.4, 0.5]), sd),
        ("superpixel", "random"): (np.array([2.0, 10, 30]), np.array([0.1, 0.2, 0.3]), sd),
        ("image", "mc_variance"): (np.array([5.0, 25, 50]), np.array([0.1, 0.2, 0.3]), sd),
    }  # fmt: skip
    cells, wins = report.versus(stats, ("superpixel", "mc_variance"), ("superpixel", "random"))
    assert wins == [True]  # 0.4 - 0.3 at 20 % of cost
    assert cells[1] == "r2 @40.0%: outside random's costs"
    assert report.every_round(cells, wins) == "False (1/2)"
    assert report.every_round(["r1", "r2"], [True, True]) == "True (2/2)"
    assert report.every_round([], []) == "False (0/0)"
    profiles = {k: report._profile(xs, ys, 1.0) for k, (xs, ys, _) in stats.items()}
    lines = report._verdicts(stats, profiles)
    sp_lines = [ln for ln in lines if "superpixel random" in ln or "Minus superpixel" in ln]
    assert len(sp_lines) == 2 and all("False (1/2)" in ln for ln in sp_lines), sp_lines


def test_ceiling_patience_goes_on_past_a_single_flat_chunk(tmp_path):
    bench = _load_bench()
    # val mIoU after the equal-steps part, then after each chunk; tol 0.005
    curve = [0.30, 0.35, 0.352, 0.37, 0.371, 0.3712, 0.40]

    def plateau(patience: int) -> list[float]:
        values = iter(curve)
        preset = {"ceiling_tol": 0.005, "ceiling_max_chunks": 6, "ceiling_patience": patience}
        return bench.train_to_plateau(lambda url, epochs, init: next(values), tmp_path, 26, 16,
                                      preset)  # fmt: skip

    # One chunk of patience stops at the first flat chunk (+0.002 at 0.352) ...
    assert plateau(1) == [0.30, 0.35, 0.352]
    # ... two go on through it (+0.018 resets the count) and stop after two flat in a row
    # (+0.001, +0.0002): 0.40 is never trained.
    assert plateau(2) == [0.30, 0.35, 0.352, 0.37, 0.371, 0.3712]
