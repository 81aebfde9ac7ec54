"""Step: validate a delivery against its request and write the merged labelled set."""

from __future__ import annotations

from alseg_core import storage
from alseg_core.annotation.deliveries import read_delivery
from alseg_core.annotation.merge import merge_delivery
from alseg_core.annotation.requests import load_request
from alseg_core.labels import load_state
from alseg_core.pipeline.pool import Pool
from alseg_core.pipeline.steps.annotate import request_region_maps
from alseg_core.superpixels import SuperpixelStore


def merge_step(
    labelled_in: str | None,
    request_dir: str,
    delivery_dir: str,
    labelled_out: str,
    *,
    pool: Pool,
    store: SuperpixelStore,
    label_format: str = "train_ids",
) -> tuple[int, list[str]]:
    """Returns (cost charged by this merge, warnings).

    Nothing is written when validation fails; ``labelled_in`` is never modified; merging
    the same delivery again charges nothing.
    """
    request = load_request(request_dir)
    request.check_store(store.fingerprint(), source=storage.join(request_dir, "request.json"))
    state = load_state(labelled_in)
    delivery = read_delivery(
        delivery_dir, request, pool.samples, request_region_maps(request, store),
        label_format=label_format, labelled=labelled_in,
    )  # fmt: skip
    new_state = merge_delivery(labelled_in, delivery, labelled_out)
    return new_state.total_cost - state.total_cost, list(delivery.warnings)
