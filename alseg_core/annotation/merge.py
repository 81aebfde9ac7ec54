"""Merging a validated delivery into a new labelled set (the input set is never changed)."""

from __future__ import annotations

import numpy as np

from alseg_core import storage
from alseg_core.annotation.deliveries import Delivery
from alseg_core.labels import (
    LabelState,
    load_state,
    mask_url,
    merge_masks,
    read_mask,
    write_labelled_set,
)


def _check_distinct(labelled_in: str | None, labelled_out: str) -> None:
    """The new set is written beside the old one, never over it or inside it."""
    if labelled_in is None:
        return
    a, b = (storage.normalize(u).rstrip("/") for u in (labelled_in, labelled_out))
    if not storage.is_remote(a):
        import os

        a, b = os.path.realpath(a), os.path.realpath(b)
    if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
        raise ValueError(
            f"the merged set {labelled_out} would overwrite or nest in the labelled set "
            f"{labelled_in} it is made from; write it to a new folder (each round keeps "
            "its own labelled set)"
        )


def merge_delivery(labelled_in: str | None, delivery: Delivery, labelled_out: str) -> LabelState:
    """Write ``labelled_out`` = ``labelled_in`` + ``delivery``; returns the new state.

    Idempotent: a delivery already in the history changes nothing (the set is copied).
    The input set is never modified; the output appears whole or not at all.
    """
    _check_distinct(labelled_in, labelled_out)
    state = load_state(labelled_in)
    new_state = state.merged(
        delivery.delivery_id,
        delivery.round,
        delivery.cost,
        [i.labels for i in delivery.images],
        est_cost=delivery.estimated_cost,
    )
    masks: dict[str, np.ndarray] = {}
    if new_state is not state:
        for img in delivery.images:
            image_id = img.labels.image_id
            old = None
            if labelled_in and storage.exists(mask_url(labelled_in, image_id)):
                old = read_mask(labelled_in, image_id)
            masks[image_id] = merge_masks(old, img.mask)
    write_labelled_set(labelled_out, new_state, masks, copy_from=labelled_in)
    return new_state
