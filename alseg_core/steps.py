"""The pipeline steps, each reading its inputs from and writing its outputs to files.

The ``alseg`` subcommands, the ``alseg run`` loop, DVC stages and Prefect tasks all
call these, so every step exists once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from alseg_core import storage
from alseg_core.annotation import (
    RequestItem,
    load_request,
    make_request,
    merge_delivery,
    oracle_answer,
    read_delivery,
    write_delivery,
    write_request,
)
from alseg_core.config import Config
from alseg_core.datasets import cityscapes
from alseg_core.labels import load_state, mask_url, read_mask, state_url
from alseg_core.scoring import (
    CALIBRATION_IMAGES,
    ScoreParams,
    heat_of,
    predicted_instances,
    read_scores,
    score_pool,
)
from alseg_core.selection import IMAGE_UNIT, Candidate, select_under_budget
from alseg_core.strategy import calibrated, candidates, cost_calibration
from alseg_core.superpixels import SuperpixelStore
from alseg_core.training_items import TrainItem

if TYPE_CHECKING:
    from alseg_core.training import TrainResult

Log = Callable[[str], None]


def pool_samples(cfg: Config) -> dict[str, cityscapes.Sample]:
    return {s.image_id: s for s in cityscapes.list_samples(cfg.data.root, cfg.data.pool_split)}


def superpixel_store(cfg: Config, *, ensure: bool = True) -> SuperpixelStore:
    """The superpixel store; with ``ensure``, images missing from it are computed first.

    The store is a cache keyed by image id and parameters: a fresh clone or machine
    recomputes what it lacks instead of failing.
    """
    store = SuperpixelStore(cfg.superpixels.store, cfg.superpixels.params())
    if ensure:
        _complete_store(cfg, store, cfg.data.pool_split)
    return store


def _complete_store(
    cfg: Config, store: SuperpixelStore, split: str, *, progress: bool = False
) -> tuple[int, int]:
    samples = cityscapes.list_samples(cfg.data.root, split, require_labels=False)
    added = store.update(
        [(s.image_id, s.image_url) for s in samples],
        workers=cfg.superpixels.workers,
        progress=progress,
    )
    return added, len(samples)


def step_superpixels(
    cfg: Config, *, split: str | None = None, progress: bool = False
) -> tuple[int, int]:
    """Superpixels for every image of a split (default: the pool); (computed now, images)."""
    store = superpixel_store(cfg, ensure=False)
    return _complete_store(cfg, store, split or cfg.data.pool_split, progress=progress)


def labelled_items(cfg: Config, labelled: str) -> list[TrainItem]:
    samples = pool_samples(cfg)
    state = load_state(labelled)
    return [
        TrainItem(image_id, samples[image_id].image_url, mask_url(labelled, image_id), "train_ids")
        for image_id in sorted(state.images)
    ]


def step_train(
    cfg: Config,
    labelled: str,
    checkpoint: str,
    *,
    init_from: str | None = None,
    progress: bool = False,
    log: Log | None = None,
) -> TrainResult:
    """Train on the labelled set; ``al.train_steps`` optimiser steps (whole epochs)."""
    from alseg_core.training import train

    items = labelled_items(cfg, labelled)
    if not items:
        raise ValueError(f"{labelled}: the labelled set is empty")
    steps_per_epoch = -(-len(items) // cfg.train.batch_size)
    epochs = max(1, round(cfg.al.train_steps / steps_per_epoch))
    return train(
        items,
        model_name=cfg.model.name,
        checkpoint_url=checkpoint,
        cfg=replace(cfg.train, epochs=epochs),
        num_classes=cfg.model.num_classes,
        dropout=cfg.model.dropout,
        init_from=init_from,
        learning_loss=cfg.al.strategy == "learning_loss",
        progress=progress,
        log=log,
        data_fingerprint=hashlib.sha256(storage.read_bytes(state_url(labelled))).hexdigest(),
    )


def step_evaluate(cfg: Config, checkpoint: str, out_json: str | None = None) -> dict:
    from alseg_core.evaluation import evaluate_model, scores_json
    from alseg_core.training import load_model

    val = cityscapes.list_samples(cfg.data.root, cfg.data.val_split)
    model = load_model(checkpoint, model_name=cfg.model.name, num_classes=cfg.model.num_classes)
    report = scores_json(
        evaluate_model(model, val, batch_size=cfg.eval.batch_size, device=cfg.train.device)
    )
    report["n_images"] = len(val)
    if out_json:
        storage.write_json(out_json, report)
    return report


def step_score(
    cfg: Config, checkpoint: str, labelled: str | None, out: str, *, progress: bool = False
) -> int:
    """Score every pool image that is not fully labelled; writes one Parquet file."""
    from alseg_core.training import load_model

    state = load_state(labelled)
    pool = pool_samples(cfg)
    samples = [s for s in pool.values() if not state.is_fully_labelled(s.image_id)]
    store = superpixel_store(cfg)

    def labelled_mask(image_id: str) -> np.ndarray | None:
        if labelled and image_id in state.images:
            return read_mask(labelled, image_id)
        return None

    model = load_model(checkpoint, model_name=cfg.model.name, num_classes=cfg.model.num_classes)
    table = score_pool(
        model,
        samples,
        region_maps=store.read,
        labelled_masks=labelled_mask,
        params=ScoreParams(
            mc_passes=cfg.al.mc_passes,
            batch_size=cfg.eval.batch_size,
            heat_strategy=cfg.al.strategy
            if cfg.al.strategy not in ("random", "learning_loss")
            else "mc_variance",
            heat_stride=cfg.al.heat_stride,
            device=cfg.train.device,
            seed=cfg.al.seed,
        ),
        progress=progress,
    )
    # Calibration data for the cost estimate: what the model predicts on images whose
    # true instance count is known (fully labelled ones; at most CALIBRATION_IMAGES).
    known = sorted(i for i, e in state.images.items() if e.full_image and e.instance_keys)
    predicted = predicted_instances(
        model, [pool[i] for i in known[:CALIBRATION_IMAGES] if i in pool], cfg.eval.batch_size,
        device=cfg.train.device,
    )  # fmt: skip
    meta = dict(table.schema.metadata or {})
    meta[b"alseg_predicted_instances"] = json.dumps(predicted, sort_keys=True).encode()
    storage.write_parquet(out, table.replace_schema_metadata(meta))
    return table.num_rows


def step_select(
    cfg: Config, round_: int, scores: str | None, labelled: str | None, out: str
) -> dict:
    """Choose the round's units; round 0 is the random seed set of whole images."""
    state = load_state(labelled)
    rng = np.random.default_rng([cfg.al.seed, round_])
    warning: str | None = None
    if round_ == 0:
        ids = sorted(pool_samples(cfg))
        pick = rng.choice(len(ids), size=min(cfg.al.initial_images, len(ids)), replace=False)
        chosen = [Candidate(ids[i], -1, 0.0, 0) for i in sorted(pick)]
        unit, strategy, budget, spent = IMAGE_UNIT, "random", 0, 0
        factor, basis = 1.0, "seed round"
    else:
        if scores is None:
            raise ValueError("select: rounds after the seed round need a scores file")
        table = read_scores(scores)
        rows = table.to_pylist()
        cands = candidates(rows, state, unit=cfg.al.unit, strategy=cfg.al.strategy)
        meta = (table.schema.metadata or {}).get(b"alseg_predicted_instances", b"{}")
        factor, basis = cost_calibration(
            state, unit=cfg.al.unit, predicted_on_labelled=json.loads(meta)
        )
        raw = {(c.image_id, c.region): c for c in cands}
        scaled = calibrated(cands, factor)
        result = select_under_budget(
            scaled,
            cfg.al.budget_per_round,
            rng=rng if cfg.al.strategy == "random" else None,
        )
        # The request keeps the model's raw estimates: later rounds calibrate against them.
        chosen = [raw[(c.image_id, c.region)] for c in result.candidates]
        budget, spent = result.budget, result.spent
        unit, strategy = cfg.al.unit, cfg.al.strategy
        if cands and not chosen:
            cheapest = min(max(1, c.est_cost) for c in scaled)
            warning = (
                f"no {unit} fits al.budget_per_round={budget}: the cheapest costs {cheapest} "
                f"(estimate x calibration {factor:.2f}); nothing is selected this round"
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
    request = make_request(round_, unit, strategy, items)
    summary = request.to_json() | {
        "budget": budget,
        "estimated_spent": spent,
        "cost_calibration": {"factor": factor, "basis": basis},
    }
    if warning:
        summary["warning"] = warning
    storage.write_json(out, summary)
    return summary


def step_request(cfg: Config, selection: str, scores: str | None, out_dir: str) -> str:
    """Write the request folder (CSV, Parquet, pre-annotations, heatmaps)."""
    from alseg_core.annotation import Request

    request = Request.from_json(storage.read_json(selection), source=selection)
    store = superpixel_store(cfg)
    region_maps = {i.image_id: store.read(i.image_id) for i in request.items}
    heatmaps = None
    if scores is not None:
        wanted = {i.image_id for i in request.items}
        heatmaps = {
            r["image_id"]: heat_of(r)
            for r in read_scores(scores).to_pylist()
            if r["image_id"] in wanted
        }
    write_request(out_dir, request, region_maps=region_maps, heatmaps=heatmaps)
    return request.request_id


def step_annotate(
    cfg: Config, request_dir: str, labelled: str | None, out_dir: str, *, inbox: str | None = None
) -> int:
    """Labels for the request, written as a delivery folder; returns the cost charged.

    al.annotator 'oracle': the simulated oracle answers from ground truth.
    al.annotator 'human': the masks delivered into ``inbox`` are validated and taken.
    """
    request = load_request(request_dir)
    store = superpixel_store(cfg)
    region_maps = {i.image_id: store.read(i.image_id) for i in request.items if not i.full_image}
    if cfg.al.annotator == "oracle":
        delivery = oracle_answer(request, pool_samples(cfg), region_maps, load_state(labelled))
    else:
        if inbox is None or not storage.glob(storage.join(inbox, "*.png")):
            raise ValueError(
                f"al.annotator is 'human' but no delivered masks are in {inbox!r} yet "
                f"(request {request.request_id})"
            )
        delivery = read_delivery(
            inbox, request, pool_samples(cfg), region_maps, label_format=cfg.al.label_format
        )
    write_delivery(out_dir, delivery)
    return delivery.cost


def step_merge(
    cfg: Config,
    labelled_in: str | None,
    request_dir: str,
    delivery_dir: str,
    labelled_out: str,
    *,
    label_format: str = "train_ids",
) -> tuple[int, list[str]]:
    """Validate the delivery against the request and write the merged labelled set.

    Returns (cost charged by this merge, warnings). Nothing is written when validation
    fails; merging the same delivery again charges nothing.
    """
    request = load_request(request_dir)
    store = superpixel_store(cfg)
    region_maps = {i.image_id: store.read(i.image_id) for i in request.items if not i.full_image}
    state = load_state(labelled_in)
    delivery = read_delivery(
        delivery_dir, request, pool_samples(cfg), region_maps, label_format=label_format
    )
    before = state.total_cost
    new_state = merge_delivery(labelled_in, delivery, labelled_out)
    return new_state.total_cost - before, list(delivery.warnings)
