"""Step: the request folder people (or the oracle) answer: CSV, Parquet, guides, heatmaps."""

from __future__ import annotations

from alseg_core import storage
from alseg_core.active.scoring import heat_of, read_scores
from alseg_core.annotation.requests import Request, write_request
from alseg_core.superpixels import SuperpixelStore


def request_step(selection: str, scores: str | None, store: SuperpixelStore, out: str) -> str:
    """Write the request folder ``out`` for ``selection``; returns the request id."""
    request = Request.from_json(storage.read_json(selection), source=selection)
    region_maps = {i.image_id: store.read(i.image_id) for i in request.items}
    heatmaps = None
    if scores is not None:
        wanted = {i.image_id for i in request.items}
        table = read_scores(scores)
        ids = table.column("image_id").to_pylist()
        rows = table.take([n for n, i in enumerate(ids) if i in wanted]).to_pylist()
        heatmaps = {r["image_id"]: heat_of(r) for r in rows}
    write_request(out, request, region_maps=region_maps, heatmaps=heatmaps)
    return request.request_id
