"""Scoring the unlabelled pool: per-pixel scores of every registered pixel strategy,
aggregated per image and per superpixel, with the annotation cost estimated from the
prediction.

One MC-dropout run gives all strategies at once (one trunk pass, the deterministic head
and D dropout head passes -> ``PixelStats``; each strategy's scorer reads those). The
result is one Parquet row per image (the score step's storage format; selection reads
it back); ground truth is never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from alseg_core import storage
from alseg_core.active.costs import component_map, cost_estimate
from alseg_core.active.regions import region_embeddings, region_means
from alseg_core.active.strategies import pixel_strategies
from alseg_core.datasets import cityscapes
from alseg_core.types import IGNORE_INDEX, NUM_CLASSES

if TYPE_CHECKING:  # torch is imported where a model runs, so reading scores stays light
    from alseg_core.models import SegmentationModel

SCORES_FORMAT = "alseg-scores/1"


@dataclass(frozen=True)
class ScoreParams:
    mc_passes: int = 10
    batch_size: int = 8
    heat_strategy: str = "mc_variance"
    heat_stride: int = 4
    device: str = "auto"
    seed: int = 0
    class_weights: tuple[float, ...] | None = None  # (C,) for class-balanced scorers
    resolution: str = "feature"  # MC statistics at the head's resolution, or "full"
    pass_memory_mb: float = 128.0  # working memory of the batched head passes
    max_batch_pixels: int = 2048 * 1024  # images per trunk pass: at most this many pixels
    embed_dim: int = 16  # region feature vectors for diversity (0: none stored)


def _downsample(scores: np.ndarray, stride: int) -> np.ndarray:
    h, w = scores.shape
    hh, ww = h // stride, w // stride
    if hh == 0 or ww == 0:
        return scores.astype(np.float16)
    return (
        scores[: hh * stride, : ww * stride]
        .reshape(hh, stride, ww, stride)
        .mean((1, 3))
        .astype(np.float16)
    )


def _row(
    image_id: str,
    pred: np.ndarray,
    pixel: dict[str, np.ndarray],
    regions: np.ndarray | None,
    labelled: np.ndarray | None,
    embedding: np.ndarray | None = None,
) -> dict:
    """One image's row: estimated costs and, per strategy, image, region and predicted-
    instance scores.

    pred : (H, W) uint8 prediction; pixel : strategy -> (H, W) scores; regions : (H, W)
    region map; labelled : (H, W) labelled mask (IGNORE_INDEX = not labelled) or None;
    embedding : (k, h, w) projected trunk features -> unit-length float16 vectors per
    image (``image_embedding``) and per region (``region_embedding``, n_regions x k).
    """
    valid = pred != IGNORE_INDEX
    labelled_px = labelled != IGNORE_INDEX if labelled is not None else None
    est = cost_estimate(pred, regions, labelled_px)
    row: dict = {
        "image_id": image_id,
        "height": pred.shape[0],
        "width": pred.shape[1],
        "image_est_cost": est.image_cost,
        "region_est_cost": est.region_costs.tolist(),
        "region_components": est.region_components,
        "region_pixels": (
            np.bincount(regions[valid], minlength=len(est.region_costs)).tolist()
            if regions is not None
            else []
        ),
    }
    if embedding is not None:
        one_region = np.zeros(embedding.shape[1:], np.int64)  # the image: every cell alike
        whole = region_embeddings(embedding, one_region)[0]
        row.update(
            embedding_dim=embedding.shape[0], image_embedding=whole.astype(np.float16).tobytes()
        )
        if regions is not None:
            per_region = region_embeddings(embedding, regions, n_regions=len(est.region_costs))
            row["region_embedding"] = per_region.astype(np.float16).tobytes()
    # What buying a region reveals: each predicted instance it touches, whole. Per
    # instance, its pixels not labelled yet and their summed score (``component_<name>``).
    unseen = est.components >= 0
    if labelled_px is not None:
        unseen &= ~labelled_px
    unseen_comp = est.components[unseen]  # indexed once, not once per strategy
    row["component_pixels"] = (
        np.bincount(unseen_comp, minlength=est.predicted).tolist() if regions is not None else []
    )
    for name, px in pixel.items():
        row[f"image_{name}"] = float(px[valid].mean()) if valid.any() else 0.0
        row[f"region_{name}"] = (
            region_means(px, regions, valid=valid).tolist() if regions is not None else []
        )
        row[f"component_{name}"] = (
            np.bincount(
                unseen_comp, weights=px[unseen].astype(np.float64), minlength=est.predicted
            ).tolist()
            if regions is not None
            else []
        )  # fmt: skip
    return row


def score_pool(
    model: SegmentationModel,
    samples: Sequence[cityscapes.Sample],
    *,
    region_maps: Callable[[str], np.ndarray | None],
    labelled_masks: Callable[[str], np.ndarray | None],
    params: ScoreParams,
    progress: bool = False,
    offset: int = 0,
) -> pa.Table:
    """One row per sample with image- and region-level scores of every strategy.

    offset : the position of ``samples[0]`` in the whole pool being scored. The dropout
    masks of a trunk pass are drawn from a generator seeded with ``al.seed`` and the
    pool position of the pass's first image, so a pool scored in shards (whose sizes are
    multiples of the batch size) gives the same bytes as one scored whole.
    """
    import torch

    from alseg_core.active.scorers import mc_statistics, upsample_logits, upsample_scores
    from alseg_core.datasets.transforms import to_tensor
    from alseg_core.inference import background, image_batches, resolve_device
    from alseg_core.models.base import class_map
    from alseg_core.progress import progress_bar

    strategies = pixel_strategies()
    if params.heat_strategy not in {s.name for s in strategies}:
        raise ValueError(f"heat strategy {params.heat_strategy!r} does not score pixels")
    dev = resolve_device(params.device)
    model.to(dev).eval()
    rows = []
    bar = progress_bar(len(samples), "score", enabled=progress)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    position = offset
    workspace: dict = {}  # the head's MC buffers, kept across batches
    for batch, images in background(image_batches(samples, params.batch_size)):
        per_pass = max(
            1, params.max_batch_pixels // max(1, images[0].shape[0] * images[0].shape[1])
        )
        for start in range(0, len(batch), per_pass):
            sub, imgs = batch[start : start + per_pass], images[start : start + per_pass]
            x = torch.stack([to_tensor(img) for img in imgs]).to(dev)
            size = tuple(x.shape[-2:])
            generator = torch.Generator(device=dev).manual_seed(params.seed * 1_000_003 + position)
            position += len(sub)
            with autocast:
                stats = mc_statistics(
                    model, x, passes=params.mc_passes, generator=generator,
                    resolution=params.resolution, pass_memory_mb=params.pass_memory_mb,
                    embed_dim=params.embed_dim, workspace=workspace,
                )  # fmt: skip
            if params.class_weights is not None:
                stats = replace(stats, class_weights=torch.tensor(params.class_weights))
            prediction = class_map(upsample_logits(stats.logits, size)).cpu().numpy()
            pixel = {
                s.name: upsample_scores(s.pixel_scores(stats).float(), size).cpu().numpy()
                for s in strategies
            }
            emb = stats.embedding.cpu().numpy() if stats.embedding is not None else None
            ll = None
            if model.loss_module is not None:
                with torch.inference_mode():
                    ll = model.forward_with_loss_prediction(x)[1].float().cpu().numpy()
            for j, sample in enumerate(sub):
                row = _row(
                    sample.image_id, prediction[j].astype(np.uint8),
                    {n: v[j] for n, v in pixel.items()},
                    region_maps(sample.image_id), labelled_masks(sample.image_id),
                    emb[j] if emb is not None else None,
                )  # fmt: skip
                row["image_learning_loss"] = float(ll[j]) if ll is not None else float("nan")
                heat = _downsample(pixel[params.heat_strategy][j], params.heat_stride)
                row.update(heat=heat.tobytes(), heat_h=heat.shape[0], heat_w=heat.shape[1])
                rows.append(row)
            bar.update(len(sub))
    bar.close()
    table = pa.Table.from_pylist(rows)
    return table.replace_schema_metadata(
        {
            b"alseg_format": SCORES_FORMAT.encode(),
            b"heat_strategy": params.heat_strategy.encode(),
            b"num_classes": str(NUM_CLASSES).encode(),
            b"alseg_class_weights": json.dumps(params.class_weights).encode(),
        }
    )


CALIBRATION_IMAGES = 64


def predicted_instances(
    model: SegmentationModel,
    samples: Sequence[cityscapes.Sample],
    batch_size: int,
    *,
    device: str = "auto",
) -> dict[str, int]:
    """image id -> instances in the model's prediction (connected components per class)."""
    from alseg_core.inference import predict

    return {
        sample.image_id: len(component_map(pred)[1])
        for sample, pred in predict(model, samples, batch_size=batch_size, device=device)
    }


def read_scores(url: str) -> pa.Table:
    table = storage.read_parquet(url)
    fmt = (table.schema.metadata or {}).get(b"alseg_format", b"").decode()
    if fmt != SCORES_FORMAT:
        raise ValueError(f"{url}: not an alseg scores file (format {fmt or 'unknown'!r})")
    return table


def heat_of(row: dict) -> np.ndarray:
    return (
        np.frombuffer(row["heat"], np.float16)
        .reshape(row["heat_h"], row["heat_w"])
        .astype(np.float32)
    )
