"""Scoring the unlabelled pool: per-pixel scores of every strategy, aggregated per image
and per superpixel, with the annotation cost estimated from the prediction.

One MC-dropout run gives all strategies at once (softmax entropy from the deterministic
pass; MC entropy, MC variance and BALD from D head passes over one trunk pass). The
result is one Parquet row per image; ground truth is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from alseg_core import storage
from alseg_core.annotation import component_map
from alseg_core.datasets import cityscapes
from alseg_core.selection import region_means
from alseg_core.types import IGNORE_INDEX, NUM_CLASSES, PIXEL_STRATEGIES

if TYPE_CHECKING:  # torch is imported where a model runs, so reading scores stays light
    from alseg_core.models import SegmentationModel

SCORES_FORMAT = "alseg-scores/1"


def estimate_costs(
    prediction: np.ndarray, region_map: np.ndarray | None, labelled: np.ndarray | None
) -> tuple[int, np.ndarray, int]:
    """Estimated cost of the image and of each region, from a predicted train-id map.

    Predicted instances are connected components of each predicted class; those that
    touch already-labelled pixels (``labelled`` True) are free. Returns (image cost,
    (n_regions,) int64 region costs; empty without a region map, and the number of
    predicted instances ignoring what is labelled, which calibrates the estimate).
    """
    comp, keys = component_map(prediction)
    n = len(keys)
    free = np.zeros(n + 1, bool)
    if labelled is not None and labelled.any():
        touched = np.unique(comp[labelled & (comp >= 0)])
        free[touched] = True
    image_cost = int(n - free[:n].sum())
    if region_map is None:
        return image_cost, np.zeros(0, np.int64), n
    n_regions = int(region_map.max()) + 1
    ok = comp >= 0
    pairs = np.unique(region_map[ok].astype(np.int64) * (n + 1) + comp[ok])
    regions, comps = pairs // (n + 1), pairs % (n + 1)
    keep = ~free[comps]
    return image_cost, np.bincount(regions[keep], minlength=n_regions).astype(np.int64), n


@dataclass(frozen=True)
class ScoreParams:
    mc_passes: int = 10
    batch_size: int = 8
    heat_strategy: str = "mc_variance"
    heat_stride: int = 4
    device: str = "auto"
    seed: int = 0


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


def score_pool(
    model: SegmentationModel,
    samples: Sequence[cityscapes.Sample],
    *,
    region_maps: Callable[[str], np.ndarray | None],
    labelled_masks: Callable[[str], np.ndarray | None],
    params: ScoreParams,
    progress: bool = False,
) -> pa.Table:
    """One row per sample with image- and region-level scores of every strategy."""
    import torch
    from tqdm import tqdm

    from alseg_core.datasets.transforms import to_tensor
    from alseg_core.inference import image_batches, resolve_device
    from alseg_core.uncertainty import mc_dropout_scores

    dev = resolve_device(params.device)
    model.to(dev).eval()
    rows = []
    bar = tqdm(total=len(samples), desc="score", unit="img", disable=not progress)
    for batch_index, (batch, images) in enumerate(image_batches(samples, params.batch_size)):
        x = torch.stack([to_tensor(img) for img in images]).to(dev)
        out = mc_dropout_scores(
            model, x, passes=params.mc_passes, generator_seed=params.seed * 1_000_003 + batch_index
        )
        out = {
            k: v.float().cpu().numpy() if k != "prediction" else v.cpu().numpy()
            for k, v in out.items()
        }
        ll = None
        if model.loss_module is not None:
            with torch.no_grad():
                ll = model.forward_with_loss_prediction(x)[1].float().cpu().numpy()
        for j, sample in enumerate(batch):
            pred = out["prediction"][j].astype(np.uint8)
            valid = pred != IGNORE_INDEX
            regions = region_maps(sample.image_id)
            labelled = labelled_masks(sample.image_id)
            labelled_px = labelled != IGNORE_INDEX if labelled is not None else None
            image_cost, region_costs, predicted = estimate_costs(pred, regions, labelled_px)
            row = {
                "image_id": sample.image_id,
                "height": pred.shape[0],
                "width": pred.shape[1],
                "image_est_cost": image_cost,
                "region_est_cost": region_costs.tolist(),
                "image_pred_instances": predicted,
            }
            for strategy in PIXEL_STRATEGIES:
                px = out[strategy][j]
                row[f"image_{strategy}"] = float(px[valid].mean()) if valid.any() else 0.0
                row[f"region_{strategy}"] = (
                    region_means(px, regions, valid=valid).tolist() if regions is not None else []
                )
            row["image_learning_loss"] = float(ll[j]) if ll is not None else float("nan")
            heat = _downsample(out[params.heat_strategy][j], params.heat_stride)
            row.update(heat=heat.tobytes(), heat_h=heat.shape[0], heat_w=heat.shape[1])
            rows.append(row)
        bar.update(len(batch))
    bar.close()
    table = pa.Table.from_pylist(rows)
    return table.replace_schema_metadata(
        {
            b"alseg_format": SCORES_FORMAT.encode(),
            b"heat_strategy": params.heat_strategy.encode(),
            b"num_classes": str(NUM_CLASSES).encode(),
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
