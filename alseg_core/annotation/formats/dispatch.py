"""One entry point per direction: export a request, import a tool's delivery."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from alseg_core import storage
from alseg_core.annotation.deliveries import image_shape
from alseg_core.annotation.formats import coco, cvat, label_studio
from alseg_core.annotation.formats.common import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    ExportItem,
    ToolLabels,
    write_zip,
)
from alseg_core.annotation.requests import Request, requested_area
from alseg_core.datasets import cityscapes

#: Where each export format's files go inside the export folder.
EXPORT_FILES = {
    "label-studio": ("label-studio/tasks.json", "label-studio/labeling_config.xml"),
    "cvat": ("cvat/segmentation-mask-1.1.zip",),
    "coco": ("coco/annotations.json",),
}


def image_url_for(sample: cityscapes.Sample, root: str, prefix: str | None) -> str:
    """What the tool loads: ``prefix`` + the image's path under the data root, or its URL."""
    if not prefix:
        return sample.image_url
    url = storage.normalize(sample.image_url)
    base = storage.normalize(root).rstrip("/") + "/"
    rel = url[len(base) :] if url.startswith(base) else url.rsplit("/", 1)[-1]
    return prefix.rstrip("/") + "/" + rel


def export_items(
    request: Request,
    samples: Mapping[str, cityscapes.Sample],
    region_maps: Mapping[str, np.ndarray],
    *,
    root: str,
    url_prefix: str | None = None,
    predictions: Mapping[str, np.ndarray] | None = None,
) -> list[ExportItem]:
    items = []
    for item in request.items:
        sample = samples.get(item.image_id)
        if sample is None:
            raise ValueError(f"request {request.request_id}: unknown image id {item.image_id!r}")
        regions = region_maps.get(item.image_id)
        shape = image_shape(item.image_id, region_maps, samples)
        pred = None if predictions is None else predictions.get(item.image_id)
        if pred is not None and pred.shape != shape:
            raise ValueError(f"prediction for {item.image_id!r} is {pred.shape}, image is {shape}")
        items.append(ExportItem(
            item.image_id, image_url_for(sample, root, url_prefix), tuple(shape),
            requested_area(item, regions, shape), item.regions, item.score, item.est_cost,
            request.round, request.request_id, pred,
        ))  # fmt: skip
    return items


def export_request(directory: str, formats: list[str], items: list[ExportItem]) -> list[str]:
    """Write the export files of ``formats`` under ``directory``; returns their URLs."""
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; expected one of {EXPORT_FORMATS}")
    written = []
    for fmt in formats:
        files = [storage.join(directory, *f.split("/")) for f in EXPORT_FILES[fmt]]
        if fmt == "label-studio":
            tasks = label_studio.export_tasks(items)
            storage.write_bytes(files[0], json.dumps(tasks, indent=1).encode())
            storage.write_bytes(files[1], label_studio.labeling_config().encode())
        elif fmt == "cvat":
            write_zip(files[0], cvat.export_archive(items))
        else:
            storage.write_bytes(files[0], json.dumps(coco.export_coco(items)).encode())
        written += files
    return written


def import_delivery(
    fmt: str, source: str, request: Request, shapes: Mapping[str, tuple[int, int]]
) -> dict[str, ToolLabels]:
    """Read a tool's export at ``source`` (path or URL) for the images of ``request``."""
    if fmt not in IMPORT_FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; expected one of {IMPORT_FORMATS}")
    wanted = {i.image_id: tuple(shapes[i.image_id]) for i in request.items}
    reader = {
        "label-studio": label_studio.import_labels,
        "cvat-mask": cvat.import_mask_archive,
        "cityscapes": cvat.import_cityscapes_archive,
        "coco": coco.import_coco,
    }[fmt]
    if fmt in ("label-studio", "coco"):  # their exports keep our request id
        labels = reader(source, wanted, request_id=request.request_id)
    else:
        labels = reader(source, wanted)
    missing = sorted(set(wanted) - set(labels))
    if missing:
        raise ValueError(
            f"{source}: no labels for {len(missing)} requested image(s) of request "
            f"{request.request_id}: {missing[:5]} (not annotated, or cancelled, in the tool?)"
        )
    return labels
