"""The cost model: one labelled object instance = one unit of annotation cost.

Things are the instances of ``*_instanceIds.png`` (id >= 1000); stuff, and thing pixels
without an instance id (crowds), count one instance per connected component of their
class. An image costs all its instances; a superpixel costs the instances that overlap
it, minus those already labelled. Void pixels are never labelled nor charged.

- ``component_map`` splits a label map into countable instances (the oracle charges
  with it; ``full_image_cost`` is the cost of a whole image, for reporting);
- ``estimate_costs`` estimates image and region costs from a *predicted* map (selection
  never reads ground truth);
- ``cost_calibration`` corrects the estimate by what labelling really cost so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from alseg_core.active.selection import IMAGE_UNIT
from alseg_core.datasets import cityscapes
from alseg_core.labels import LabelState
from alseg_core.types import NUM_CLASSES


def component_map(
    label: np.ndarray, instances: np.ndarray | None = None
) -> tuple[np.ndarray, list[str]]:
    """Split a train-id map into countable instances.

    label     : (H, W) uint8 train ids; instances : (H, W) int32 Cityscapes instance ids
    (None: every class is split into connected components, as for a prediction).
    Returns (H, W) int32 component index (-1 on void) and the key of each index
    (``i<instance id>`` for things, ``s<train id>_<k>`` for connected components).
    """
    comp = np.full(label.shape, -1, np.int32)
    keys: list[str] = []
    valid = label < NUM_CLASSES
    thing = np.zeros(label.shape, bool)
    if instances is not None:
        thing = valid & (instances >= 1000)
        ids, inverse = np.unique(instances[thing], return_inverse=True)
        comp[thing] = inverse.astype(np.int32)
        keys = [f"i{int(i)}" for i in ids]
    for cls in np.unique(label[valid & ~thing]):
        cc, n = ndimage.label((label == cls) & ~thing)
        sel = cc > 0
        comp[sel] = cc[sel] - 1 + len(keys)
        keys += [f"s{int(cls)}_{k}" for k in range(n)]
    return comp, keys


def touched_components(comp: np.ndarray, area: np.ndarray | None) -> np.ndarray:
    """Indices of components with a pixel in ``area`` (bool mask, None = whole image)."""
    values = comp if area is None else comp[area]
    values = values[values >= 0]
    return np.unique(values)


def full_image_cost(sample: cityscapes.Sample) -> int:
    """Instances in the whole image: the cost of labelling it from scratch."""
    label = cityscapes.read_label(sample)
    instances = (
        cityscapes.read_instances(sample, shape=label.shape) if sample.instance_url else None
    )
    return len(component_map(label, instances)[1])


@dataclass(frozen=True)
class CostEstimate:
    """What labelling an image or its regions would cost, read off a predicted map.

    image_cost        : predicted instances not touching labelled pixels
    region_costs      : (n_regions,) int64, the same per region (empty without regions)
    predicted         : every predicted instance (calibrates the estimate)
    region_components : per region, the indices of the unpaid predicted instances it
                        overlaps; a greedy pass that buys one region makes these free
                        for the others (marginal cost)
    components        : (H, W) int32 index of the predicted instance of each pixel (-1 on
                        void), the indices ``region_components`` names
    """

    image_cost: int
    region_costs: np.ndarray
    predicted: int
    region_components: list[list[int]]
    components: np.ndarray


def cost_estimate(
    prediction: np.ndarray, region_map: np.ndarray | None, labelled: np.ndarray | None
) -> CostEstimate:
    """Estimated costs from a predicted (H, W) train-id map; ``labelled`` (H, W) bool.

    Predicted instances are connected components of each predicted class; those that
    touch already-labelled pixels are free.
    """
    comp, keys = component_map(prediction)
    n = len(keys)
    free = np.zeros(n + 1, bool)
    if labelled is not None and labelled.any():
        touched = np.unique(comp[labelled & (comp >= 0)])
        free[touched] = True
    image_cost = int(n - free[:n].sum())
    if region_map is None:
        return CostEstimate(image_cost, np.zeros(0, np.int64), n, [], comp)
    n_regions = int(region_map.max()) + 1
    ok = comp >= 0
    pairs = np.unique(region_map[ok].astype(np.int64) * (n + 1) + comp[ok])
    regions, comps = pairs // (n + 1), pairs % (n + 1)
    keep = ~free[comps]
    regions, comps = regions[keep], comps[keep]
    costs = np.bincount(regions, minlength=n_regions).astype(np.int64)
    split = np.split(comps, np.cumsum(costs)[:-1])  # pairs are sorted by region
    return CostEstimate(image_cost, costs, n, [c.astype(int).tolist() for c in split], comp)


def estimate_costs(
    prediction: np.ndarray, region_map: np.ndarray | None, labelled: np.ndarray | None
) -> tuple[int, np.ndarray, int]:
    """(image cost, (n_regions,) region costs, predicted instances): see ``cost_estimate``."""
    est = cost_estimate(prediction, region_map, labelled)
    return est.image_cost, est.region_costs, est.predicted


CALIBRATION_RANGE = (0.2, 5.0)


def cost_calibration(
    state: LabelState, *, unit: str, predicted_on_labelled: Mapping[str, int] | None = None
) -> tuple[float, str]:
    """Factor true cost / estimated cost, and what it was measured on.

    Both units: charged / estimated cost of the earlier deliveries that had an estimate
    (what labelling the model's picks really cost, on images it had not been trained
    on); the estimate is the one the selection spent (a marginal-cost strategy's
    request carries each region at its instances not paid yet, ``Chosen.bought_at``).
    Before any such delivery, the image unit falls back to the fully labelled
    images: the instances the annotator labelled against the instances the current model
    predicts there (``predicted_on_labelled``: image id -> predicted instances), so the
    seed set already calibrates round 1. That fallback is biased: the model was trained
    on those images, and it came out at 1.9-2.5x where the deliveries' ratio was lower
    (image runs spent 0.78-0.97 of their budget with it, bench/results at 40fcb87). The
    superpixel unit has no such fallback: a region's estimate already counts the
    instances it touches, and seed images measure whole images.
    1.0 without data; clipped to ``CALIBRATION_RANGE``.
    """
    factor, basis = 1.0, "no labelled data yet"
    done = [h for h in state.history if h.est_cost > 0]
    if done:
        factor = sum(h.cost for h in done) / sum(h.est_cost for h in done)
        basis = f"{len(done)} earlier deliveries"
    elif unit == IMAGE_UNIT:
        true = pred = n = 0
        for image_id, predicted in sorted((predicted_on_labelled or {}).items()):
            keys = state.instance_keys(image_id)
            if state.is_fully_labelled(image_id) and keys and predicted > 0:
                true, pred, n = true + len(keys), pred + int(predicted), n + 1
        if n:
            factor, basis = true / pred, f"{n} labelled images"
    lo, hi = CALIBRATION_RANGE
    return float(min(max(factor, lo), hi)), basis
