"""Step: labels for a request, as a delivery folder (simulated oracle, or people's masks)."""

from __future__ import annotations

from alseg_core import storage
from alseg_core.annotation.deliveries import read_delivery, write_delivery
from alseg_core.annotation.oracle import oracle_answer
from alseg_core.annotation.requests import Request, load_request
from alseg_core.labels import load_state
from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelStore

ANNOTATORS = ("oracle", "human")


def request_region_maps(request: Request, store: SuperpixelStore) -> dict:
    """Region maps of the request's superpixel items (whole images need none)."""
    return {i.image_id: store.read(i.image_id) for i in request.items if not i.full_image}


def annotate_step(
    request_dir: str,
    labelled: str | None,
    out: str,
    *,
    pool: Pool,
    store: SuperpixelStore,
    annotator: str,
    inbox: str | None = None,
    label_format: str = "train_ids",
) -> int:
    """Write the delivery folder ``out``; returns the cost charged.

    annotator 'oracle': answered from ground truth, charging the exact cost.
    annotator 'human': the masks delivered into ``inbox`` are validated and taken.
    """
    if annotator not in ANNOTATORS:
        raise ValueError(f"al.annotator must be one of {ANNOTATORS}, got {annotator!r}")
    request = load_request(request_dir)
    request.check_store(store.fingerprint(), source=storage.join(request_dir, "request.json"))
    region_maps = request_region_maps(request, store)
    if annotator == "oracle":
        delivery = oracle_answer(request, pool.samples, region_maps, load_state(labelled))
    else:
        if inbox is None or not storage.glob(storage.join(inbox, "*.png")):
            raise ValueError(
                f"al.annotator is 'human' but no delivered masks are in {inbox!r} yet "
                f"(request {request.request_id})"
            )
        delivery = read_delivery(
            inbox,
            request,
            pool.samples,
            region_maps,
            label_format=label_format,
            labelled=labelled,
        )
    write_delivery(out, delivery)
    return delivery.cost
