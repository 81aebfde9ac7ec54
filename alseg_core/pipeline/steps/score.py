"""Step: MC-dropout scores of every pool image not fully labelled (one Parquet file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from alseg_core import storage
from alseg_core.active.balance import class_counts, class_weights
from alseg_core.active.scoring import (
    CALIBRATION_IMAGES,
    ScoreParams,
    predicted_instances,
    score_pool,
)
from alseg_core.active.strategies import get_strategy
from alseg_core.datasets.cityscapes import Sample
from alseg_core.labels import load_state, read_mask
from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelParams, SuperpixelStore

DEFAULT_HEAT = "mc_variance"


@dataclass(frozen=True)
class ScoreShard:
    """One shard of the pool to score, self-contained: it travels to a worker."""

    checkpoint: str
    model_name: str | None
    num_classes: int | None
    samples: tuple[Sample, ...]
    offset: int  # position of samples[0] in the pool's scoring order
    store_url: str
    store_params: SuperpixelParams
    labelled: str | None
    masked: frozenset[str]  # images with a labelled mask in ``labelled``
    params: ScoreParams
    threads: int = 0  # torch CPU threads (the driver's: the same sums on every worker)
    checkpoint_key: str = ""  # the checkpoint's content key, hashed once by the driver


_MODELS: dict[tuple, Any] = {}


def load_model_cached(
    checkpoint: str, model_name: str | None, num_classes: int | None, key: str = ""
) -> Any:
    """The checkpoint's model, loaded once per process per checkpoint content (a worker
    scores many shards of one round with one model). ``key``: the checkpoint's content
    key when the caller has it (else it is computed: a hash of the whole file locally)."""
    from alseg_core.content import content_key
    from alseg_core.training import load_model

    key = (key or content_key(checkpoint), model_name, num_classes)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_model(checkpoint, model_name=model_name, num_classes=num_classes)
    return _MODELS[key]


def score_shard(shard: ScoreShard) -> pa.Table:
    """Score one shard (run on any worker): reads everything it needs from storage."""
    store = SuperpixelStore(shard.store_url, shard.store_params)

    def labelled_mask(image_id: str) -> np.ndarray | None:
        if shard.labelled and image_id in shard.masked:
            return read_mask(shard.labelled, image_id)
        return None

    from alseg_core.executors import torch_threads

    with torch_threads(shard.threads):
        return score_pool(
            load_model_cached(
                shard.checkpoint, shard.model_name, shard.num_classes, shard.checkpoint_key
            ),
            list(shard.samples), region_maps=store.read,
            labelled_masks=labelled_mask, params=shard.params, offset=shard.offset,
        )  # fmt: skip


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
    executor: str = "local",
    shard_size: int = 64,
    threads: int = 0,
) -> int:
    """Score the pool with ``checkpoint``; returns the number of images scored.

    The heatmap shows ``strategy``'s pixel scores (MC variance for strategies without).
    The Parquet metadata also records the instances the model predicts on fully
    labelled images, which calibrates the image-unit cost estimate.

    executor, shard_size : where the shards of the pool are scored (``compute``;
    ``ALSEG_EXECUTOR`` wins); threads: torch CPU threads per shard (0 = this process's).
    Each shard loads the checkpoint and reads its images,
    region maps and labelled masks from storage; the driver concatenates the shards'
    rows in pool order, so the file is the same wherever they ran.
    """
    import torch

    from alseg_core.content import content_key
    from alseg_core.executors import map_shards, resolve_executor, shards

    state = load_state(labelled)
    samples = [pool.samples[i] for i in pool.ids if not state.is_fully_labelled(i)]
    chosen = get_strategy(strategy)
    heat = chosen.scores_column if chosen.has_pixel_scores else DEFAULT_HEAT
    counts = class_counts(
        [read_mask(labelled, i) for i in sorted(state.images)] if labelled else []
    )
    params = ScoreParams(
        mc_passes=mc_passes, batch_size=batch_size, heat_strategy=heat,
        heat_stride=heat_stride, device=device, seed=seed,
        class_weights=tuple(float(w) for w in class_weights(counts)),
        resolution=resolution, max_batch_pixels=max_batch_pixels,
    )  # fmt: skip
    # Shards of whole batches: the same trunk passes whatever the shard size.
    size = -(-shard_size // batch_size) * batch_size
    masked = frozenset(state.images) if labelled else frozenset()
    threads = threads or torch.get_num_threads()
    key = content_key(checkpoint)
    jobs = [
        ScoreShard(checkpoint, model_name, num_classes, tuple(part), n * size, store.url,
                   store.params, labelled, masked, params, threads, key)
        for n, part in enumerate(shards(samples, size))
    ]  # fmt: skip
    tables = map_shards(
        score_shard, jobs, resolve_executor(executor), workers=1,
        progress="score" if progress else None, sizes=[len(j.samples) for j in jobs],
    )  # fmt: skip
    # The shards' model when they ran in this process (local), else loaded now.
    model = load_model_cached(checkpoint, model_name, num_classes, key)
    if tables:
        table = pa.concat_tables(tables)
    else:  # nothing left to score: an empty table with the scores file's metadata
        table = score_pool(model, [], region_maps=store.read, labelled_masks=lambda _i: None,
                           params=params)  # fmt: skip
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
