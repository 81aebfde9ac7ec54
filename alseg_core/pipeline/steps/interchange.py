"""Requests out to annotation tools, their exports back into an alseg inbox.

Not a round stage of its own: ``alseg export`` / ``alseg import`` call these for any
request (for human rounds the request step writes the same tool files into the request
folder, beside request.csv, through ``annotation.formats``), and the flow's
fetch-delivery runs ``alseg import``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alseg_core import storage
from alseg_core.annotation.deliveries import image_shape, read_delivery
from alseg_core.annotation.formats import export_request, import_delivery, write_inbox
from alseg_core.annotation.formats.dispatch import export_items
from alseg_core.annotation.requests import Request, load_request
from alseg_core.pipeline.pool import Pool
from alseg_core.pipeline.steps.annotate import request_region_maps
from alseg_core.superpixels import SuperpixelStore


def _predictions(
    request: Request, pool: Pool, checkpoint: str, *, model_name: str | None,
    num_classes: int | None, batch_size: int, device: str,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The model's train-id prediction of every requested image (the correctable guide)."""
    from alseg_core.inference import predict
    from alseg_core.training import load_model

    model = load_model(checkpoint, model_name=model_name, num_classes=num_classes)
    samples = [pool.samples[i.image_id] for i in request.items]
    return {s.image_id: p for s, p in predict(model, samples, batch_size=batch_size, device=device)}


def export_step(
    request_dir: str,
    out: str,
    formats: Sequence[str],
    *,
    pool: Pool,
    store: SuperpixelStore,
    url_prefix: str | None = None,
    checkpoint: str | None = None,
    model_name: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    request: Request | None = None,
) -> list[str]:
    """Write the tool files of ``formats`` for the request at ``request_dir`` under ``out``.

    With ``checkpoint``, the model's classes inside the requested regions are added as
    pre-annotations to correct. Returns the URLs written.
    """
    request = request or load_request(request_dir)
    request.check_store(store.fingerprint(), source=storage.join(request_dir, "request.json"))
    preds = None
    if checkpoint is not None:
        preds = _predictions(
            request, pool, checkpoint, model_name=model_name, num_classes=num_classes,
            batch_size=batch_size, device=device,
        )  # fmt: skip
    items = export_items(
        request, pool.samples, request_region_maps(request, store), root=pool.root,
        url_prefix=url_prefix, predictions=preds,
    )  # fmt: skip
    return export_request(out, list(formats), items)


def import_step(
    fmt: str,
    source: str,
    request_dir: str,
    out: str,
    *,
    pool: Pool,
    store: SuperpixelStore,
    labelled: str | None = None,
) -> tuple[int, int, list[str]]:
    """Convert a tool's export at ``source`` into the inbox ``out`` for the request.

    The inbox is validated against the request (as the annotate step will) before it
    is written; nothing is written when anything is wrong. Returns (images, the cost
    the delivery will be charged given ``labelled``, warnings).
    """
    request = load_request(request_dir)
    request.check_store(store.fingerprint(), source=storage.join(request_dir, "request.json"))
    region_maps = request_region_maps(request, store)
    shapes = {i.image_id: image_shape(i.image_id, region_maps, pool.samples) for i in request.items}
    labels = import_delivery(fmt, source, request, shapes)
    meta = {"tool_format": fmt, "source": source, "request_id": request.request_id}
    with tempfile.TemporaryDirectory(prefix="alseg-import-") as tmp:
        staged = str(Path(tmp) / "inbox")
        write_inbox(staged, labels, meta=meta)
        delivery = read_delivery(
            staged, request, pool.samples, region_maps, labelled=labelled
        )  # refuses what the annotate step would refuse, before anything is written
        with storage.output_dir(out) as target:
            for path in sorted(Path(staged).rglob("*")):
                if path.is_file() and path.name != "import.json":
                    rel = path.relative_to(staged).parts
                    storage.write_bytes(storage.join(target, *rel), path.read_bytes())
            storage.write_bytes(
                storage.join(target, "import.json"), (Path(staged) / "import.json").read_bytes()
            )  # last: marks the inbox complete
    return len(labels), delivery.cost, [w.replace(staged, out) for w in delivery.warnings]
