"""Class balance: how rare each class is in what is labelled so far."""

from __future__ import annotations

import numpy as np

from alseg_core.types import IGNORE_INDEX, NUM_CLASSES

WEIGHT_RANGE = (0.1, 10.0)


def class_counts(masks: list[np.ndarray], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(C,) labelled pixels per train id over (H, W) masks (IGNORE_INDEX = unlabelled)."""
    counts = np.zeros(num_classes, np.int64)
    for mask in masks:
        values = mask[mask != IGNORE_INDEX].astype(np.int64)
        counts += np.bincount(values[values < num_classes], minlength=num_classes)
    return counts


def class_weights(counts: np.ndarray) -> np.ndarray:
    """(C,) median-frequency weights (Eigen & Fergus 2015): median(freq) / freq_c.

    A class never labelled gets the top weight; weights are clipped to WEIGHT_RANGE.
    All ones when nothing is labelled.
    """
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        return np.ones(len(counts))
    freq = counts / counts.sum()
    median = float(np.median(freq[freq > 0]))
    lo, hi = WEIGHT_RANGE
    with np.errstate(divide="ignore"):
        weights = np.where(freq > 0, median / np.maximum(freq, 1e-300), hi)
    return np.clip(weights, lo, hi)
