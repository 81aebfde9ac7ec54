"""``alseg run``: the whole active-learning loop on one machine, through the round engine.

The same steps, in the same order and with the same round layout as the DVC pipeline
(``alseg_core.pipeline.layout``), under ``al.out`` instead of ``data/rounds``: round 0
labels a random seed set of whole images, every round k then scores the pool with round
k-1's model, selects, requests, annotates, merges, trains round k's model, evaluates and
publishes. A step whose output exists is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from alseg_core import storage
from alseg_core.config import Config
from alseg_core.pipeline.engine import RoundEngine
from alseg_core.pipeline.layout import ROUND_STEPS, SEED_STEPS, RoundLayout
from alseg_core.pipeline.steps.publish import CURVE_FIELDS, csv_text, read_curve
from alseg_core.plots import learning_curve

METRIC_FIELDS = [*CURVE_FIELDS, "seconds"]


def run_layout(cfg: Config) -> RoundLayout:
    return RoundLayout(cfg.al.out, inbox_base=storage.join(cfg.al.out, "deliveries"))


# Settings that may change between the runs of one run folder: more rounds extend it,
# the device and the worker count do not change results.
_FREE = {"al.rounds", "train.device", "superpixels.workers", "rounds", "compute.executor",
         "compute.shard_size", "compute.threads"}  # fmt: skip


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _check_run_settings(cfg: Config) -> None:
    """A run folder resumes only the run it holds: same settings, same dataset.

    ``<al.out>/run.json`` records them at the first start; a later start with other
    settings (or a regenerated synthetic dataset) is refused, naming what differs.
    """
    import dataclasses
    import json

    settings = {k: v for k, v in _flat(dataclasses.asdict(cfg)).items() if k not in _FREE}
    settings = json.loads(json.dumps(settings, default=list))
    marker = storage.join(cfg.data.root, "synthetic.json")
    dataset = storage.read_json(marker) if storage.exists(marker) else None
    current = {"settings": settings, "dataset": dataset}
    url = storage.join(cfg.al.out, "run.json")
    if not storage.exists(url):
        storage.write_json(url, current)
        return
    held = storage.read_json(url)
    before = held.get("settings", {})
    # A key the folder's run predates (a setting added since) holds its default there.
    defaults = json.loads(json.dumps(_flat(dataclasses.asdict(Config())), default=list))
    before = {k: before.get(k, defaults.get(k)) for k in set(before) | set(settings)}
    diff = sorted(k for k in before if before[k] != settings.get(k))
    if held.get("dataset") != dataset:
        diff.append(f"the dataset at {cfg.data.root} (regenerated or replaced)")
    if diff:
        raise ValueError(
            f"{url}: this run folder holds a run with other settings ({', '.join(diff[:6])}); "
            "resuming it would mix two experiments. Use another al.out (--out) or delete it."
        )


def run_rounds(
    cfg: Config, *, log: Callable[[str], None] = print, progress: bool = False
) -> list[dict]:
    """Run (or resume) rounds 0..al.rounds; returns the learning-curve rows."""
    start = time.perf_counter()
    _check_run_settings(cfg)
    layout = run_layout(cfg)
    engine = RoundEngine(cfg, layout, progress=progress, log=log)
    if not engine.is_done("superpixels", 0):
        log(engine.superpixels())
    log(
        f"pool: {len(engine.pool.samples)} images, {len(engine.pool.val)} val; "
        f"unit={cfg.al.unit} strategy={cfg.al.strategy} rounds={cfg.al.rounds} "
        f"budget/round={cfg.al.budget_per_round} D={cfg.al.mc_passes} model={cfg.model.name} "
        f"finetune={cfg.al.finetune}"
    )
    seconds: dict[int, float] = {}
    for k in range(cfg.al.rounds + 1):
        t0 = time.perf_counter()
        prev = k - 1 if k else None
        for step in SEED_STEPS if k == 0 else ROUND_STEPS:
            if not engine.is_done(step, k):
                t_step = time.perf_counter()
                said = engine.run_step(step, k, prev)
                # A line per step: something to watch between the round lines.
                log(f"  {said} [{time.perf_counter() - t_step:.1f}s]")
        seconds[k] = round(time.perf_counter() - t0, 1)
        summary = storage.read_json(layout.summary(k))
        log(
            f"round {k}/{cfg.al.rounds}: labelled cost {summary['labelled_cost']} "
            f"({summary['pct_full_cost']:.1f}% of full), {summary['n_images']} images touched, "
            f"mIoU {summary['mIoU']:.4f} [{seconds[k]:.0f}s]"
        )
    rows, _ = read_curve(layout.publish(cfg.al.rounds))
    rows = [r | {"seconds": seconds.get(int(r["round"]), 0.0)} for r in rows]
    write_metrics(cfg, rows)
    log(f"done in {time.perf_counter() - start:.0f}s: {metrics_csv(cfg)}, {curve_png(cfg)}")
    return rows


def baseline_config(cfg: Config, strategy: str) -> Config:
    """The same experiment with another strategy, in ``<al.out>/baseline-<strategy>``: the
    same seed set (al.seed), budget, model and schedule, the same superpixel store."""
    from dataclasses import replace

    out = storage.join(cfg.al.out, f"baseline-{strategy}")
    return replace(cfg, al=replace(cfg.al, strategy=strategy, out=out))


def equal_cost_gaps(rows: list[dict], baseline: list[dict]) -> list[tuple[int, float, float]]:
    """(round, % of full cost, mIoU minus the baseline's at that cost) for each round of
    ``rows`` whose cost lies within the baseline's (its curve interpolated linearly)."""
    import numpy as np

    xs = [float(r["pct_full_cost"]) for r in baseline]
    ys = [float(r["mIoU"]) for r in baseline]
    return [
        (int(r["round"]), float(r["pct_full_cost"]),
         float(r["mIoU"]) - float(np.interp(float(r["pct_full_cost"]), xs, ys)))
        for r in rows
        if xs[0] <= float(r["pct_full_cost"]) <= xs[-1]
    ]  # fmt: skip


def run_with_baseline(
    cfg: Config, baseline: str, *, log: Callable[[str], None] = print, progress: bool = False
) -> tuple[list[dict], list[dict]]:
    """The loop with ``cfg``'s strategy, then with ``baseline`` (e.g. random) under the
    same budget; one plot with both curves and a line on what the strategy bought."""
    rows = run_rounds(cfg, log=log, progress=progress)
    base_cfg = baseline_config(cfg, baseline)
    log(f"baseline: the same rounds with strategy {baseline} -> {base_cfg.al.out}")
    base_rows = run_rounds(base_cfg, log=lambda m: log(f"[{baseline}] {m}"), progress=progress)
    gaps = equal_cost_gaps(rows, base_rows)
    label = f"{cfg.al.unit} / {cfg.al.strategy}"
    learning_curve(
        {label: [(r["pct_full_cost"], r["mIoU"]) for r in rows],
         f"{cfg.al.unit} / {baseline}": [(r["pct_full_cost"], r["mIoU"]) for r in base_rows]},
        curve_png(cfg),
        title=f"alseg: {cfg.model.name}, {cfg.al.rounds} rounds, {cfg.al.strategy} vs {baseline}",
    )  # fmt: skip
    cells = ", ".join(f"r{k} @{x:.1f}%: {d:+.4f}" for k, x, d in gaps if k > 0)
    log(
        f"{cfg.al.strategy} minus {baseline}, mIoU at equal cost (one seed: differences of "
        f"a few 0.01 are within run-to-run noise): {cells or 'no overlapping costs'}"
    )
    log(f"both curves: {curve_png(cfg)}")
    return rows, base_rows


def metrics_csv(cfg: Config) -> str:
    return storage.join(cfg.al.out, "metrics.csv")


def curve_png(cfg: Config) -> str:
    return storage.join(cfg.al.out, "learning_curve.png")


def write_metrics(cfg: Config, rows: list[dict]) -> None:
    storage.write_bytes(metrics_csv(cfg), csv_text(rows, METRIC_FIELDS).encode())
    learning_curve(
        {f"{cfg.al.unit} / {cfg.al.strategy}": [(r["pct_full_cost"], r["mIoU"]) for r in rows]},
        curve_png(cfg),
        title=f"alseg: {cfg.model.name}, {cfg.al.rounds} rounds",
    )
