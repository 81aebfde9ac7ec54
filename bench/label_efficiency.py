"""Label efficiency: strategies x units x seeds at equal annotation cost.

For each strategy and unit, the active-learning loop (``alseg run``) runs R rounds with
the same per-round budget for each seed, on the embedded synthetic dataset; a
full-supervision model (every pool image labelled, as many optimiser steps as an AL
run takes in total) gives the ceiling. Runs are independent processes, two at a time.

Writes ``<out>.csv`` (one row per strategy, unit, seed, round), ``<out>.png`` (mean mIoU
vs % of full cost, ±1 std band over seeds, one line per strategy x unit, the ceiling)
and ``<out>.md`` (mIoU at 10/25/50 % of full cost as % of the ceiling, the cost needed
to reach 95 % of it, and whether superpixel MC variance beats random at every round by
more than one std).

    .venv/bin/python bench/label_efficiency.py --preset quick   # < 60 min on 2 CPU cores
    .venv/bin/python bench/label_efficiency.py --preset full    # GPU: DRN-D-22, 10 rounds
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe  # noqa: E402

PRESETS: dict[str, dict] = {
    # Sized from measured throughput on 2 CPU cores: LR-ASPP trains ~55 images/s at
    # 64x128, so a 100-step round trains in ~15 s; 6 trainings + 5 scorings per run,
    # 18 runs two at a time + 3 ceilings: about 45 minutes.
    "quick": {
        "synthetic": {"n_train": 300, "n_val": 50, "height": 64, "width": 128, "seed": 0},
        "superpixels": {"compactness": 0.02},
        "model": {"name": "lraspp_mobilenet_v3_large"},
        "al": {"rounds": 5, "initial_images": 20, "budget_per_round": 1200, "mc_passes": 10,
               "train_steps": 200},
        "strategies": ["random", "softmax_entropy", "mc_variance"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1, 2],
        "jobs": 2,
    },
    "full": {
        "synthetic": {"n_train": 1000, "n_val": 100, "height": 256, "width": 512, "seed": 0},
        "superpixels": {"compactness": 0.005},
        "model": {"name": "drn_d_22"},
        "al": {"rounds": 10, "initial_images": 50, "budget_per_round": 2000, "mc_passes": 10,
               "train_steps": 500},
        "strategies": ["random", "softmax_entropy", "mc_entropy", "mc_variance", "bald",
                       "learning_loss"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1, 2],
        "jobs": 1,
    },
    # For the test suite: two rounds on a handful of images.
    "tiny": {
        "synthetic": {"n_train": 12, "n_val": 4, "height": 48, "width": 96, "seed": 0},
        "superpixels": {"compactness": 0.02, "n_regions": 30},
        "model": {"name": "drn_d_22"},
        "al": {"rounds": 2, "initial_images": 2, "budget_per_round": 80, "mc_passes": 2,
               "train_steps": 2},
        "strategies": ["random", "mc_variance"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1],
        "jobs": 1,
    },
}  # fmt: skip


def _config(preset: dict, work: Path, *, unit: str, strategy: str, seed: int, extra: dict):
    from alseg_core.config import config_from_dict

    raw = {
        "data": {"root": str(work / "data")},
        "synthetic": preset["synthetic"],
        "superpixels": {**preset["superpixels"], "store": str(work / "superpixels"), "workers": 1},
        "model": preset["model"],
        "train": {"seed": seed, "device": "auto"},
        "al": {
            **preset["al"],
            "unit": unit,
            "strategy": strategy,
            "seed": seed,
            "out": str(work / "runs" / f"{unit}-{strategy}-s{seed}"),
            **extra,
        },
    }
    return config_from_dict(raw, source=f"preset ({unit}, {strategy}, seed {seed})")


def _one_run(job: tuple) -> list[dict]:
    preset, work, unit, strategy, seed = job
    import torch

    from alseg_core.pipeline.run import run_rounds

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // preset["jobs"]))
    cfg = _config(preset, Path(work), unit=unit, strategy=strategy, seed=seed, extra={})
    start = time.perf_counter()
    rows = run_rounds(cfg, log=lambda m: None)  # the round engine, as the pipeline
    last, seconds = rows[-1], time.perf_counter() - start
    print(
        f"  {unit:>10} {strategy:<16} seed {seed}: final mIoU {last['mIoU']:.4f} "
        f"at {last['pct_full_cost']:.1f}% [{seconds:.0f}s]",
        flush=True,
    )
    return [{"strategy": strategy, "unit": unit, "seed": seed, **r} for r in rows]


def _ceiling(job: tuple) -> dict:
    """Every pool image labelled, as many optimiser steps as one AL run in total."""
    preset, work, seed = job
    from dataclasses import replace

    import torch

    from alseg_core.pipeline.pool import Pool
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import train_on_split

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // preset["jobs"]))
    cfg = _config(preset, Path(work), unit="image", strategy="random", seed=seed, extra={})
    pool = Pool.list(cfg.data.root, cfg.data.pool_split, cfg.data.val_split)
    samples = list(pool.samples.values())
    steps = cfg.al.train_steps * (cfg.al.rounds + 1)
    epochs = max(1, round(steps / -(-len(samples) // cfg.train.batch_size)))
    ckpt = str(Path(work) / "runs" / f"full-s{seed}" / "model.pt")
    train_on_split(samples, ckpt, model=cfg.model, train=replace(cfg.train, epochs=epochs))
    miou = evaluate_step(
        ckpt, pool.val, model_name=cfg.model.name, batch_size=cfg.eval.batch_size,
        device=cfg.train.device,
    )["mIoU"]  # fmt: skip
    print(f"  full supervision seed {seed}: mIoU {miou:.4f} ({epochs} epochs)", flush=True)
    return {"seed": seed, "mIoU": miou}


def _interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float | None:
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else None


def _cost_to_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    for i in range(len(xs)):
        if ys[i] >= target:
            if i == 0:
                return float(xs[0])
            frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
            return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
    return None


def summarise(rows: list[dict], ceilings: list[dict], out: Path, title: str) -> str:
    """Write <out>.png and <out>.md from the per-round rows; returns the markdown."""
    from alseg_core.plots import learning_curve

    full = float(np.mean([c["mIoU"] for c in ceilings]))
    groups: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["unit"], r["strategy"]), {}).setdefault(int(r["round"]), []).append(r)
    curves, bands, stats = {}, {}, {}
    for (unit, strategy), by_round in sorted(groups.items()):
        rounds = sorted(by_round)
        xs = np.array([np.mean([float(r["pct_full_cost"]) for r in by_round[k]]) for k in rounds])
        ys = np.array([np.mean([float(r["mIoU"]) for r in by_round[k]]) for k in rounds])
        sd = np.array([np.std([float(r["mIoU"]) for r in by_round[k]]) for k in rounds])
        name = f"{unit} / {strategy}"
        curves[name] = list(zip(xs.tolist(), ys.tolist(), strict=True))
        bands[name] = sd.tolist()
        stats[(unit, strategy)] = (xs, ys, sd)
    learning_curve(curves, str(out.with_suffix(".png")), bands=bands, reference=full, title=title)

    per_seed = ", ".join(f"{c['mIoU']:.4f}" for c in ceilings)
    header = "| unit | strategy | @10% cost | @25% cost | @50% cost | cost for 95% of full |"
    lines = [
        f"# Label efficiency ({title})",
        "",
        f"Full supervision (all pool images, same total optimiser steps): mIoU {full:.4f} "
        f"(seeds: {per_seed}).",
        "Values: mean over seeds, linearly interpolated between rounds; '-' = outside the "
        "costs the run covered.",
        "",
        header + " final mIoU ± std |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for (unit, strategy), (xs, ys, sd) in sorted(stats.items()):
        cells = []
        for pct in (10, 25, 50):
            v = _interp(xs, ys, pct)
            cells.append("-" if v is None else f"{100 * v / full:.1f}%")
        reach = _cost_to_reach(xs, ys, 0.95 * full)
        cells.append("not reached" if reach is None else f"{reach:.1f}%")
        lines.append(
            f"| {unit} | {strategy} | " + " | ".join(cells) + f" | {ys[-1]:.4f} ± {sd[-1]:.4f} |"
        )
    if ("superpixel", "mc_variance") in stats and ("superpixel", "random") in stats:
        # At equal cost: random's mean curve (and its std) interpolated at the cost that
        # MC variance had reached after each round. Rounds do not spend exactly the
        # budget, so comparing round k with round k would compare different costs.
        mx, mv, mv_sd = stats[("superpixel", "mc_variance")]
        rx, rd, rd_sd = stats[("superpixel", "random")]
        cells, wins = [], []
        for k in range(1, len(mx)):
            if not rx[0] <= mx[k] <= rx[-1]:
                cells.append(f"r{k} @{mx[k]:.1f}%: outside random's costs")
                continue
            diff = mv[k] - float(np.interp(mx[k], rx, rd))
            margin = max(mv_sd[k], float(np.interp(mx[k], rx, rd_sd)))
            wins.append(bool(diff > margin))
            cells.append(f"r{k} @{mx[k]:.1f}%: {diff:+.4f} (std {margin:.4f})")
        lines += [
            "",
            "Superpixel MC variance minus superpixel random at equal cost (random "
            "interpolated at MC variance's cost after each round): " + "; ".join(cells),
            f"Above random by more than one std at every round after the seed: "
            f"{bool(wins) and all(wins) and len(wins) == len(mx) - 1} "
            f"({sum(wins)}/{len(mx) - 1} rounds).",
        ]  # fmt: skip
    md = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(md)
    return md


def run(
    preset_name: str,
    out: Path,
    work: Path,
    *,
    jobs: int | None = None,
    only: dict | None = None,
    check: Path | None = None,
) -> str:
    """Run the preset (or the subset ``only`` names) from scratch in ``work``.

    ``only`` may set ``seeds``, ``strategies`` and ``units``. ``check``: a CSV of an
    earlier run; the rows both runs have are compared and the differences reported
    against the earlier run's spread over seeds (written to ``<out>.md``).
    """
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
    from alseg_core.pipeline.engine import RoundEngine
    from alseg_core.pipeline.layout import RoundLayout

    preset = dict(PRESETS[preset_name])
    preset["jobs"] = jobs or preset["jobs"]
    preset.update({k: v for k, v in (only or {}).items() if v})
    # A rerun starts from nothing: the loop would otherwise resume the old runs.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make_synthetic(
        str(work / "data"), SyntheticSpec(**preset["synthetic"]), workers=os.cpu_count() or 1
    )
    base = _config(preset, work, unit="image", strategy="random", seed=0, extra={})
    # The shared store, computed once with every core (each run then finds it complete).
    RoundEngine(replace_workers(base), RoundLayout(str(work / "prepare"))).superpixels()
    print(f"label efficiency, preset {preset_name}: data and superpixels ready "
          f"[{time.perf_counter() - start:.0f}s]", flush=True)  # fmt: skip
    jobs_list = [(preset, str(work), unit, strategy, seed)
                 for seed in preset["seeds"] for unit in preset["units"]
                 for strategy in preset["strategies"]
                 if not (strategy == "learning_loss" and unit != "image")]  # fmt: skip
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=preset["jobs"], mp_context=ctx) as pool:
        ceilings = (
            []
            if check
            else list(pool.map(_ceiling, [(preset, str(work), s) for s in preset["seeds"]]))
        )
        rows = [r for result in pool.map(_one_run, jobs_list) for r in result]
    if check is not None:
        md = compare(rows, check, preset_name, time.perf_counter() - start)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(md)
        print(md)
        return md
    fields = ["strategy", "unit", "seed", "round", "labelled_cost", "pct_full_cost", "n_images",
              "n_regions", "mIoU"]  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".csv").write_text(buf.getvalue())
    title = f"preset {preset_name}, {preset['model']['name']}, {len(preset['seeds'])} seeds"
    md = summarise(rows, ceilings, out, title)
    minutes = (time.perf_counter() - start) / 60
    md += f"\nMachine: {describe()}. Wall time: {minutes:.1f} min. Code: {_commit()}.\n"
    md += f"Command: `.venv/bin/python bench/label_efficiency.py --preset {preset_name}`\n"
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(json.dumps({"ceilings": ceilings}, indent=1) + "\n")
    print(md)
    return md


def compare(rows: list[dict], reference: Path, preset_name: str, seconds: float) -> str:
    """Markdown: this run's rows against the same (strategy, unit, seed, round) in ``reference``."""
    with open(reference, newline="") as f:
        ref = list(csv.DictReader(f))
    key = lambda r: (r["strategy"], r["unit"], int(r["seed"]), int(r["round"]))  # noqa: E731
    old = {key(r): r for r in ref}
    spread: dict[tuple, list[float]] = {}
    for r in ref:
        spread.setdefault((r["strategy"], r["unit"], int(r["round"])), []).append(float(r["mIoU"]))
    lines = [
        f"# Label efficiency rerun check (preset {preset_name})",
        "",
        f"This run against `{reference.name}`: same strategy, unit, seed and round.",
        "",
        "| strategy | unit | seed | round | cost then | cost now | mIoU then | mIoU now "
        "| difference | std over seeds then |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    diffs, within = [], []
    for r in rows:
        k = key(r)
        if k not in old:
            continue
        then, now = float(old[k]["mIoU"]), float(r["mIoU"])
        sd = float(np.std(spread[(k[0], k[1], k[3])]))
        diffs.append(abs(now - then))
        within.append(abs(now - then) <= sd + 1e-9)
        lines.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {old[k]['labelled_cost']} | "
            f"{r['labelled_cost']} | {then:.4f} | {now:.4f} | {now - then:+.4f} | {sd:.4f} |"
        )
    if not diffs:
        raise SystemExit(f"{reference}: no rows in common with this run")
    lines += [
        "",
        f"Rows compared: {len(diffs)}; largest |difference| in mIoU: {max(diffs):.4f}; "
        f"within the earlier run's std over seeds: {sum(within)}/{len(within)}.",
        f"Machine: {describe()}. Wall time: {seconds / 60:.1f} min. Code: {_commit()}.",
    ]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                         capture_output=True, text=True)  # fmt: skip
    return f"git {out.stdout.strip()}" if out.returncode == 0 else "unknown commit"


def replace_workers(cfg):
    from dataclasses import replace

    return replace(cfg, superpixels=replace(cfg.superpixels, workers=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", default=str(HERE / "results" / "label_efficiency"))
    parser.add_argument("--work", default="data/bench/label_efficiency")
    parser.add_argument("--jobs", type=int, default=None, help="runs in parallel")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--strategies", nargs="+", help="only these strategies")
    parser.add_argument("--units", nargs="+", choices=["image", "superpixel"])
    parser.add_argument(
        "--check",
        type=Path,
        help="compare with the rows of this earlier CSV instead of writing new results "
        "(no ceiling runs); the report goes to <out>.md",
    )
    args = parser.parse_args()
    only = {"seeds": args.seeds, "strategies": args.strategies, "units": args.units}
    run(args.preset, Path(args.out), Path(args.work), jobs=args.jobs, only=only, check=args.check)


if __name__ == "__main__":
    main()
