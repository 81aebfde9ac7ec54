"""Step: the request folder people (or the oracle) answer: CSV, Parquet, guides, heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from alseg_core import storage
from alseg_core.active.scoring import heat_of, read_scores
from alseg_core.annotation.formats.dispatch import export_items, export_request
from alseg_core.annotation.requests import Request, check_store, write_request
from alseg_core.datasets import cityscapes
from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelStore


def request_step(
    selection: str,
    scores: str | None,
    store: SuperpixelStore,
    out: str,
    *,
    pool: Pool | None = None,
    export_formats: Sequence[str] = (),
    url_prefix: str | None = None,
) -> str:
    """Write the request folder ``out`` for ``selection``; returns the request id.

    With ``export_formats`` (human rounds), the annotation tools' files are written in
    the folder too (``label-studio/``, ``cvat/``, ``coco/``), beside request.csv.
    """
    request = Request.from_json(storage.read_json(selection), source=selection)
    fingerprint = store.fingerprint()
    request.check_store(fingerprint, source=selection)
    request = replace(request, store=fingerprint)
    region_maps = {i.image_id: store.read(i.image_id) for i in request.items}
    heatmaps = None
    if scores is not None:
        wanted = {i.image_id for i in request.items}
        table = read_scores(scores)
        recorded = (table.schema.metadata or {}).get(b"alseg_store", b"").decode() or None
        check_store(recorded, fingerprint, source=scores, regions=request.has_regions)
        # An exhausted pool scores no image: the table has no rows (and no columns).
        ids = table.column("image_id").to_pylist() if table.num_rows else []
        rows = table.take([n for n, i in enumerate(ids) if i in wanted]).to_pylist()
        heatmaps = {r["image_id"]: heat_of(r) for r in rows}
    exports = None
    if export_formats:
        if pool is None:
            raise ValueError("request: exporting for annotation tools needs the pool")
        items = export_items(
            request, pool.samples, region_maps, root=pool.root, url_prefix=url_prefix
        )

        def exports(target: str) -> None:
            export_request(target, list(export_formats), items)

    photos = None
    if pool is not None:

        def photos(image_id: str):
            sample = pool.samples.get(image_id)
            return cityscapes.read_image(sample) if sample is not None else None

    write_request(
        out, request, region_maps=region_maps, heatmaps=heatmaps, extra=exports, photos=photos
    )
    return request.request_id
