"""The simulated oracle: answers a request from ground truth and charges the exact cost."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from alseg_core.active.costs import component_map, touched_components
from alseg_core.annotation.deliveries import DeliveredImage, Delivery
from alseg_core.annotation.requests import Request, requested_area
from alseg_core.datasets import cityscapes
from alseg_core.labels import ImageLabels, LabelState
from alseg_core.types import IGNORE_INDEX


def oracle_answer(
    request: Request,
    samples: Mapping[str, cityscapes.Sample],
    region_maps: Mapping[str, np.ndarray],
    state: LabelState,
) -> Delivery:
    """Answer ``request`` from ground truth, charging the exact cost.

    Reveals the full mask of every object instance that overlaps a requested region and,
    for stuff, each connected component of its class that does.
    """
    images = []
    for item in request.items:
        sample = samples.get(item.image_id)
        if sample is None:
            raise ValueError(f"request {request.request_id}: unknown image id {item.image_id!r}")
        label = cityscapes.read_label(sample)
        instances = (
            cityscapes.read_instances(sample, shape=label.shape) if sample.instance_url else None
        )
        comp, keys = component_map(label, instances)
        area = requested_area(item, region_maps.get(item.image_id), label.shape)
        touched = touched_components(comp, area)
        touched_keys = {keys[i] for i in touched}
        lut = np.zeros(len(keys) + 1, bool)
        lut[touched] = True
        reveal = lut[comp]  # comp == -1 indexes the last (False) entry
        mask = np.where(reveal, label, IGNORE_INDEX).astype(np.uint8)
        cost = len(touched_keys - state.instance_keys(item.image_id))
        labels = ImageLabels(
            item.image_id, frozenset(item.regions), item.full_image, frozenset(touched_keys)
        )
        images.append(DeliveredImage(labels, mask, cost))
    return Delivery(
        f"oracle-{request.request_id}",
        request.request_id,
        request.round,
        "oracle",
        tuple(images),
        estimated_cost=request.estimated_cost,
    )
