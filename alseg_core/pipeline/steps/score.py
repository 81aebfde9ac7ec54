"""Step: MC-dropout scores of every pool image not fully labelled (one Parquet file)."""

from __future__ import annotations

import json

import numpy as np

from alseg_core import storage
from alseg_core.active.balance import class_counts, class_weights
from alseg_core.active.scoring import (
    CALIBRATION_IMAGES,
    ScoreParams,
    predicted_instances,
    score_pool,
)
from alseg_core.active.strategies import get_strategy
from alseg_core.labels import load_state, read_mask
from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelStore

DEFAULT_HEAT = "mc_variance"


def score_step(
    checkpoint: str,
    pool: Pool,
    store: SuperpixelStore,
    labelled: str | None,
    out: str,
    *,
    strategy: str,
    mc_passes: int,
    heat_stride: int,
    seed: int,
    batch_size: int = 8,
    device: str = "auto",
    model_name: str | None = None,
    num_classes: int | None = None,
    progress: bool = False,
    resolution: str = "feature",
    max_batch_pixels: int = 2048 * 1024,
) -> int:
    """Score the pool with ``checkpoint``; returns the number of images scored.

    The heatmap shows ``strategy``'s pixel scores (MC variance for strategies without).
    The Parquet metadata also records the instances the model predicts on fully
    labelled images, which calibrates the image-unit cost estimate.
    """
    from alseg_core.training import load_model

    state = load_state(labelled)
    samples = [pool.samples[i] for i in pool.ids if not state.is_fully_labelled(i)]

    def labelled_mask(image_id: str) -> np.ndarray | None:
        if labelled and image_id in state.images:
            return read_mask(labelled, image_id)
        return None

    chosen = get_strategy(strategy)
    heat = chosen.scores_column if chosen.has_pixel_scores else DEFAULT_HEAT
    counts = class_counts(
        [read_mask(labelled, i) for i in sorted(state.images)] if labelled else []
    )
    model = load_model(checkpoint, model_name=model_name, num_classes=num_classes)
    table = score_pool(
        model,
        samples,
        region_maps=store.read,
        labelled_masks=labelled_mask,
        params=ScoreParams(
            mc_passes=mc_passes,
            batch_size=batch_size,
            heat_strategy=heat,
            heat_stride=heat_stride,
            device=device,
            seed=seed,
            class_weights=tuple(float(w) for w in class_weights(counts)),
            resolution=resolution,
            max_batch_pixels=max_batch_pixels,
        ),
        progress=progress,
    )
    known = sorted(i for i, e in state.images.items() if e.full_image and e.instance_keys)
    predicted = predicted_instances(
        model,
        [pool.samples[i] for i in known[:CALIBRATION_IMAGES] if i in pool.samples],
        batch_size,
        device=device,
    )
    meta = dict(table.schema.metadata or {})
    meta[b"alseg_predicted_instances"] = json.dumps(predicted, sort_keys=True).encode()
    meta[b"alseg_store"] = store.fingerprint().encode()
    meta[b"alseg_labelled"] = state.fingerprint.encode()
    storage.write_parquet(out, table.replace_schema_metadata(meta))
    return table.num_rows
