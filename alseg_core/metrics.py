"""Confusion-matrix mIoU with the official Cityscapes rules.

- Pixels whose ground truth is IGNORE_INDEX are dropped.
- A prediction outside 0..C-1 (ignore, or a class not evaluated) on a valid pixel is
  a miss for the true class: it counts in the "other" column of the confusion matrix.
- A class absent from both ground truth and prediction has IoU NaN and is left out
  of the mean; a class predicted but absent from the ground truth scores 0 and counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alseg_core.types import IGNORE_INDEX, NUM_CLASSES


def confusion_matrix(
    target: np.ndarray, prediction: np.ndarray, *, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """(C, C+1) int64 counts; rows = ground truth, columns = prediction, last = other.

    target, prediction : (...) integer arrays of the same shape (train ids).
    """
    target = np.asarray(target)
    prediction = np.asarray(prediction)
    if target.shape != prediction.shape:
        raise ValueError(f"target shape {target.shape} != prediction shape {prediction.shape}")
    valid = (target >= 0) & (target < num_classes)
    t = target[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    p = np.where((p >= 0) & (p < num_classes), p, num_classes)
    counts = np.bincount(t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """(C,) float64 IoU from a (C, C+1) confusion matrix; NaN where a class never occurs."""
    num_classes = conf.shape[0]
    tp = np.diag(conf[:, :num_classes]).astype(np.float64)
    fn = conf.sum(axis=1) - tp  # includes predictions of "other"
    fp = conf[:, :num_classes].sum(axis=0) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


@dataclass(frozen=True)
class SegmentationScores:
    miou: float
    iou: tuple[float, ...]  # per train id, NaN for classes that never occur
    pixel_accuracy: float
    n_pixels: int

    def as_dict(self, class_names: tuple[str, ...]) -> dict:
        return {
            "mIoU": _finite_or_none(self.miou),
            "pixel_accuracy": _finite_or_none(self.pixel_accuracy),
            "n_pixels": self.n_pixels,
            "per_class_IoU": {
                n: _finite_or_none(v) for n, v in zip(class_names, self.iou, strict=True)
            },
        }


def _finite_or_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def scores_from_confusion(conf: np.ndarray) -> SegmentationScores:
    iou = iou_per_class(conf)
    total = int(conf.sum())
    correct = int(np.trace(conf[:, : conf.shape[0]]))
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return SegmentationScores(
        miou=miou,
        iou=tuple(float(v) for v in iou),
        pixel_accuracy=correct / total if total else float("nan"),
        n_pixels=total,
    )


def mean_iou(
    target: np.ndarray, prediction: np.ndarray, *, num_classes: int = NUM_CLASSES
) -> float:
    """mIoU of one (target, prediction) pair of train-id arrays; see the module rules."""
    return scores_from_confusion(confusion_matrix(target, prediction, num_classes=num_classes)).miou


__all__ = [
    "IGNORE_INDEX",
    "SegmentationScores",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "scores_from_confusion",
]
