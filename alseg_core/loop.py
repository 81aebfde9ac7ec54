"""``alseg run``: the whole active-learning loop on one machine.

Round 0 labels a random seed set of whole images; every round then trains, evaluates,
and (except after the last) scores the pool, selects units under the budget, writes the
request, lets the oracle answer it and merges the labels. Each round's files live in
``<al.out>/round_<k>/``; a step whose output exists is skipped, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable

from alseg_core import storage
from alseg_core.annotation import full_image_cost
from alseg_core.config import Config
from alseg_core.labels import LabelState, load_state, state_url
from alseg_core.plots import learning_curve
from alseg_core.steps import (
    pool_samples,
    step_annotate,
    step_evaluate,
    step_merge,
    step_request,
    step_score,
    step_select,
    step_superpixels,
    step_train,
)

METRIC_FIELDS = [
    "round",
    "labelled_cost",
    "pct_full_cost",
    "n_images",
    "n_regions",
    "mIoU",
    "seconds",
]


def round_dir(cfg: Config, k: int) -> str:
    return storage.join(cfg.al.out, f"round_{k:02d}")


def pool_full_cost(cfg: Config, *, cache: str | None = None) -> int:
    """Cost of labelling every pool image (reads ground truth: reporting only)."""
    if cache is not None and storage.exists(cache):
        return int(storage.read_json(cache)["full_cost"])
    total = sum(full_image_cost(s) for s in pool_samples(cfg).values())
    if cache is not None:
        storage.write_json(cache, {"full_cost": total})
    return total


# Settings that may change between the runs of one run folder: more rounds extend it,
# the device and the worker count do not change results.
_FREE = {"al.rounds", "train.device", "superpixels.workers", "rounds"}


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
    diff = sorted(
        k
        for k in set(held.get("settings", {})) | set(settings)
        if held.get("settings", {}).get(k) != settings.get(k)
    )
    if held.get("dataset") != dataset:
        diff.append(f"the dataset at {cfg.data.root} (regenerated or replaced)")
    if diff:
        raise ValueError(
            f"{url}: this run folder holds a run with other settings ({', '.join(diff[:6])}); "
            "resuming it would mix two experiments. Use another al.out (--out) or delete it."
        )


def run_loop(
    cfg: Config, *, log: Callable[[str], None] = print, progress: bool = False
) -> list[dict]:
    start = time.perf_counter()
    _check_run_settings(cfg)
    added, _ = step_superpixels(cfg, progress=progress)
    n_pool = len(pool_samples(cfg))
    full = pool_full_cost(cfg, cache=storage.join(cfg.al.out, "full_cost.json"))
    log(
        f"pool: {n_pool} images, full annotation cost {full} instances "
        f"({full / n_pool:.1f}/image); superpixels: {added} computed"
    )
    log(
        f"unit={cfg.al.unit} strategy={cfg.al.strategy} rounds={cfg.al.rounds} "
        f"budget/round={cfg.al.budget_per_round} D={cfg.al.mc_passes} model={cfg.model.name}"
    )
    rows: list[dict] = []
    labelled: str | None = None
    checkpoint: str | None = None
    for k in range(cfg.al.rounds + 1):
        t0 = time.perf_counter()
        rd = round_dir(cfg, k)
        scores = None
        if k > 0:
            scores = storage.join(rd, "scores.parquet")
            if not storage.exists(scores):
                step_score(cfg, checkpoint, labelled, scores, progress=progress)
        selection = storage.join(rd, "selection.json")
        if not storage.exists(selection):
            step_select(cfg, k, scores, labelled, selection)
        request = storage.join(rd, "request")
        if not storage.exists(storage.join(request, "request.json")):
            step_request(cfg, selection, scores, request)
        delivery = storage.join(rd, "delivery")
        if not storage.exists(storage.join(delivery, "delivery.json")):
            step_annotate(cfg, request, labelled, delivery)
        new_labelled = storage.join(rd, "labelled")
        if not storage.exists(state_url(new_labelled)):
            step_merge(cfg, labelled, request, delivery, new_labelled)
        labelled = new_labelled
        new_checkpoint = storage.join(rd, "model.pt")
        metrics_url = storage.join(rd, "metrics.json")
        if not storage.exists(metrics_url):
            step_train(
                cfg,
                labelled,
                new_checkpoint,
                init_from=checkpoint if cfg.al.finetune else None,
                progress=progress,
                log=None,
            )
            step_evaluate(cfg, new_checkpoint, metrics_url)
        checkpoint = new_checkpoint
        row = round_row(k, storage.read_json(metrics_url), load_state(labelled), full)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        log(
            f"round {k}/{cfg.al.rounds}: labelled cost {row['labelled_cost']} "
            f"({row['pct_full_cost']:.1f}% of full), {row['n_images']} images touched, "
            f"mIoU {row['mIoU']:.4f} [{row['seconds']:.0f}s]"
        )
    write_metrics(cfg, rows)
    log(f"done in {time.perf_counter() - start:.0f}s: {metrics_csv(cfg)}, {curve_png(cfg)}")
    return rows


def round_row(k: int, metrics: dict, state: LabelState, full_cost: int) -> dict:
    """One learning-curve point: the model of round ``k`` and the labels it was trained on."""
    return {
        "round": k,
        "labelled_cost": state.total_cost,
        "pct_full_cost": round(100.0 * state.total_cost / full_cost, 3),
        "n_images": len(state.images),
        "n_regions": sum(len(e.regions) for e in state.images.values()),
        "mIoU": round(metrics["mIoU"], 5),
    }


def _csv_text(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def publish_round(
    cfg: Config,
    k: int,
    metrics_url: str | None,
    labelled: str | None,
    previous: str | None,
    out: str,
) -> list[dict]:
    """``out``/curve.csv = previous round's curve + this round; plot and metrics.json too.

    Without ``metrics_url`` (the seed round, which trains no model) the curve starts empty.
    """
    fields = [f for f in METRIC_FIELDS if f != "seconds"]
    if metrics_url is None or labelled is None:
        full = pool_full_cost(cfg)
        storage.write_bytes(storage.join(out, "curve.csv"), _csv_text([], fields).encode())
        storage.write_json(storage.join(out, "metrics.json"), {"round": k, "full_cost": full})
        return []
    rows: list[dict] = []
    full = None
    if previous:
        prev_csv = storage.join(previous, "curve.csv")
        rows = list(csv.DictReader(io.StringIO(storage.read_text(prev_csv))))
        rows = [r for r in rows if int(r["round"]) != k]
        full = storage.read_json(storage.join(previous, "metrics.json")).get("full_cost")
    full = full or pool_full_cost(cfg)
    row = round_row(k, storage.read_json(metrics_url), load_state(labelled), full)
    rows.append(row)
    storage.write_bytes(storage.join(out, "curve.csv"), _csv_text(rows, fields).encode())
    storage.write_json(storage.join(out, "metrics.json"), {**row, "full_cost": full})
    learning_curve(
        {
            f"{cfg.al.unit} / {cfg.al.strategy}": [
                (float(r["pct_full_cost"]), float(r["mIoU"])) for r in rows
            ]
        },
        storage.join(out, "learning_curve.png"),
        title=f"alseg: {cfg.model.name}, rounds 1..{k}",
    )
    return rows


def metrics_csv(cfg: Config) -> str:
    return storage.join(cfg.al.out, "metrics.csv")


def curve_png(cfg: Config) -> str:
    return storage.join(cfg.al.out, "learning_curve.png")


def write_metrics(cfg: Config, rows: list[dict]) -> None:
    storage.write_bytes(metrics_csv(cfg), _csv_text(rows, METRIC_FIELDS).encode())
    label = f"{cfg.al.unit} / {cfg.al.strategy}"
    learning_curve(
        {label: [(r["pct_full_cost"], r["mIoU"]) for r in rows]},
        curve_png(cfg),
        title=f"alseg: {cfg.model.name}, {cfg.al.rounds} rounds",
    )
