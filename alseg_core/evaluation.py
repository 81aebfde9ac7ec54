"""Evaluation of a checkpoint, or of a folder of Cityscapes-format predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import TRAIN_CLASS_NAMES, label_ids_to_train_ids
from alseg_core.inference import predict
from alseg_core.metrics import SegmentationScores, confusion_matrix, scores_from_confusion
from alseg_core.models import SegmentationModel
from alseg_core.types import NUM_CLASSES


def evaluate_model(
    model: SegmentationModel,
    samples: Sequence[cityscapes.Sample],
    *,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
) -> SegmentationScores:
    """mIoU of ``model`` (dropout off) over full images of ``samples``."""
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)
    for sample, pred in predict(
        model, samples, batch_size=batch_size, device=device, progress=progress
    ):
        target = cityscapes.read_label(sample, shape=pred.shape)
        conf += confusion_matrix(target, pred)
    return scores_from_confusion(conf)


def prediction_url(pred_dir: str, image_id: str) -> str:
    """Where ``alseg predict`` writes the label-id PNG of ``image_id``."""
    return storage.join(pred_dir, f"{image_id}.png")


def find_prediction(pred_dir: str, image_id: str, listing: list[str]) -> str:
    """The prediction file of ``image_id`` in ``listing`` (official rule: name contains it)."""
    matches = [p for p in listing if p.replace("\\", "/").split("/")[-1].startswith(image_id)]
    if not matches:
        raise ValueError(f"{pred_dir}: no prediction PNG for image {image_id!r}")
    if len(matches) > 1:
        raise ValueError(f"{pred_dir}: several predictions for image {image_id!r}: {matches[:3]}")
    return matches[0]


def evaluate_predictions(pred_dir: str, samples: Sequence[cityscapes.Sample]) -> SegmentationScores:
    """Score label-id PNGs (Cityscapes results format) in ``pred_dir`` against ``samples``."""
    listing = storage.glob(storage.join(pred_dir, "**", "*.png")) or storage.glob(
        storage.join(pred_dir, "*.png")
    )
    listing = sorted(set(listing))
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)
    for sample in samples:
        url = find_prediction(pred_dir, sample.image_id, listing)
        ids = storage.read_image(url)
        if ids.ndim != 2:
            raise ValueError(
                f"{url}: expected a single-channel label-id PNG, got shape {ids.shape}"
            )
        target = cityscapes.read_label(sample)
        if ids.shape != target.shape:
            raise ValueError(
                f"{url}: prediction size {ids.shape[1]}x{ids.shape[0]} differs from ground "
                f"truth size {target.shape[1]}x{target.shape[0]}"
            )
        conf += confusion_matrix(target, label_ids_to_train_ids(ids, source=url))
    return scores_from_confusion(conf)


def report_text(report: dict) -> str:
    """The per-class table of a ``scores_json`` report."""
    lines = [f"{'class':<16} IoU"]
    for name, value in report["per_class_IoU"].items():
        lines.append(f"{name:<16} {'  n/a' if value is None else f'{value:.4f}'}")
    miou = report["mIoU"]
    lines.append(f"{'mIoU':<16} {'n/a' if miou is None else f'{miou:.4f}'}")
    return "\n".join(lines)


def scores_json(scores: SegmentationScores) -> dict:
    return scores.as_dict(TRAIN_CLASS_NAMES)
