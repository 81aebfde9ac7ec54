"""Deliveries: labels coming back for a request, from the oracle or from people.

A delivery folder holds ``<image_id>.png`` masks and, when alseg wrote it (the oracle),
delivery.json with the exact cost. ``read_delivery`` validates any delivery against its
request before anything is merged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from alseg_core import storage
from alseg_core.active.costs import component_map, touched_components
from alseg_core.annotation.requests import Request, requested_area
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import MAX_LABEL_ID, label_ids_to_train_ids
from alseg_core.labels import ImageLabels
from alseg_core.types import IGNORE_INDEX, NUM_CLASSES

DELIVERY_FORMAT = "alseg-delivery/1"
LABEL_FORMATS = ("train_ids", "label_ids")


@dataclass(frozen=True)
class DeliveredImage:
    labels: ImageLabels
    mask: np.ndarray  # (H, W) uint8 train ids, IGNORE_INDEX where not labelled
    cost: int
    outside_pixels: int = 0


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    request_id: str
    round: int
    source: str  # "oracle" or "human"
    images: tuple[DeliveredImage, ...]
    warnings: tuple[str, ...] = field(default=())
    estimated_cost: int = 0  # the request's cost estimate, kept to calibrate later rounds

    @property
    def cost(self) -> int:
        return sum(i.cost for i in self.images)


def write_delivery(directory: str, delivery: Delivery) -> None:
    """Masks and delivery.json (last); the folder appears whole or not at all."""
    with storage.output_dir(directory) as target:
        _write_delivery(target, delivery)


def _write_delivery(directory: str, delivery: Delivery) -> None:
    for img in delivery.images:
        storage.write_png(storage.join(directory, f"{img.labels.image_id}.png"), img.mask)
    storage.write_json(
        storage.join(directory, "delivery.json"),
        {
            "format": DELIVERY_FORMAT,
            "delivery_id": delivery.delivery_id,
            "request_id": delivery.request_id,
            "round": delivery.round,
            "source": delivery.source,
            "cost": delivery.cost,
            "estimated_cost": delivery.estimated_cost,
            "warnings": list(delivery.warnings),
            "images": {
                img.labels.image_id: {
                    "cost": img.cost,
                    "instance_keys": sorted(img.labels.instance_keys),
                    "regions": sorted(img.labels.regions),
                }
                for img in delivery.images
            },
        },
    )


def check_delivery_path(directory: str) -> None:
    """A delivery is read from its own folder only: no '..', no links leading out of it."""
    parts = str(directory).replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError(
            f"{directory}: a delivery path must not contain '..' (give the folder itself)"
        )
    if storage.is_remote(directory) or not os.path.isdir(directory):
        return
    real = os.path.realpath(directory)
    for name in sorted(os.listdir(directory)):
        target = os.path.realpath(os.path.join(directory, name))
        if os.path.commonpath([real, target]) != real:
            raise ValueError(
                f"{os.path.join(directory, name)}: links outside the delivery folder "
                f"(to {target}); copy the file into the folder instead"
            )


def _delivery_meta(directory: str, request: Request) -> dict | None:
    """delivery.json of an alseg-written delivery (None for people's masks)."""
    meta_url = storage.join(directory, "delivery.json")
    meta = storage.read_json(meta_url) if storage.exists(meta_url) else None
    if meta is not None and meta.get("request_id") != request.request_id:
        raise ValueError(
            f"{meta_url}: delivery answers request {meta.get('request_id')!r}, "
            f"expected {request.request_id!r}"
        )
    return meta


def _delivered_files(directory: str, request: Request) -> dict[str, str]:
    """image id -> mask URL; every requested image, and nothing else."""
    files = {
        url.replace("\\", "/").rsplit("/", 1)[-1][: -len(".png")]: url
        for url in storage.glob(storage.join(directory, "*.png"))
    }
    requested = {i.image_id for i in request.items}
    unknown = sorted(set(files) - requested)
    if unknown:
        raise ValueError(
            f"{files[unknown[0]]}: image id {unknown[0]!r} is not in request {request.request_id}"
        )
    missing = sorted(requested - set(files))
    if missing:
        raise ValueError(
            f"{directory}: delivery is missing {len(missing)} requested image(s): {missing[:5]}"
        )
    return files


def _train_id_mask(raw: bytes, url: str, image_id: str, shape: tuple, label_ids: bool):
    """(H, W) uint8 train ids of a delivered PNG, or ValueError naming ``url``."""
    mask = storage.decode_png(raw, source=url)
    if mask.ndim != 2:
        raise ValueError(f"{url}: expected a single-channel label PNG, got shape {mask.shape}")
    if mask.dtype != np.uint8:
        raise ValueError(f"{url}: expected an 8-bit label PNG, got {mask.dtype} values")
    if mask.shape != shape:
        raise ValueError(
            f"{url}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
            f"{image_id} size {shape[1]}x{shape[0]}"
        )
    if label_ids:
        if mask.max() > MAX_LABEL_ID:
            bad = sorted(int(v) for v in np.unique(mask) if v > MAX_LABEL_ID)
            raise ValueError(f"{url}: label ids {bad[:10]} are outside the Cityscapes label table")
        mask = label_ids_to_train_ids(mask, source=url)
    bad = np.unique(mask[(mask >= NUM_CLASSES) & (mask != IGNORE_INDEX)])
    if bad.size:
        raise ValueError(
            f"{url}: class ids {bad[:10].tolist()} are not train ids 0..{NUM_CLASSES - 1} "
            f"or {IGNORE_INDEX} (unlabelled)"
        )
    return mask.astype(np.uint8)


def image_shape(
    image_id: str, region_maps: Mapping[str, np.ndarray], samples: Mapping[str, cityscapes.Sample]
) -> tuple[int, int]:
    """(H, W) of a requested image: its region map's (computed from the image), else the
    image's own (decoded only for whole-image items, which need no region map)."""
    regions = region_maps.get(image_id)
    if regions is not None:
        return (int(regions.shape[0]), int(regions.shape[1]))
    return tuple(cityscapes.read_image(samples[image_id]).shape[:2])


def _human_units(
    mask: np.ndarray, instances: np.ndarray | None, old: np.ndarray | None, area: np.ndarray
) -> tuple[int, int, int, frozenset[str]]:
    """(units charged, units not touching ``area``, their pixels, the units' keys) for a
    human delivery.

    One unit per delivered object instance (when the format carries instances) and per
    connected piece of each class otherwise; a unit whose pixels the labelled set already
    holds with the same class is not charged again. A unit's key ``h<train id>@<pixel>``
    names its class and its first pixel in raster order, so the same object delivered
    again gets the same key and the labelled set counts it once. Recorded like the
    oracle's keys, they let the image-unit cost calibration use people's deliveries.
    """
    comp, keys = component_map(mask, instances)
    new = np.unique(comp[(comp >= 0) & (old != mask)]) if old is not None else np.arange(len(keys))
    stray = np.setdiff1d(np.arange(len(keys)), touched_components(comp, area))
    values, first = np.unique(comp.ravel(), return_index=True)
    named = frozenset(f"h{int(mask.flat[i])}@{int(i)}" for i in first[values >= 0])
    return int(new.size), int(stray.size), int(np.isin(comp, stray).sum()), named


def _labelled_regions(
    item, area: np.ndarray, labelled: np.ndarray, region_map: np.ndarray | None
) -> tuple[frozenset[int], list[int]]:
    """Requested regions holding a label after the merge, and those left without any."""
    if item.full_image or region_map is None:
        return frozenset(item.regions), []
    got = set(np.unique(region_map[area & labelled]).tolist())
    kept = frozenset(r for r in item.regions if r in got)
    return kept, sorted(set(item.regions) - kept)


def read_delivery(
    directory: str,
    request: Request,
    samples: Mapping[str, cityscapes.Sample],
    region_maps: Mapping[str, np.ndarray],
    *,
    label_format: str = "train_ids",
    labelled: str | None = None,
) -> Delivery:
    """Read and validate a delivery folder against ``request``.

    A folder written by the oracle carries delivery.json with the exact cost. A human
    delivery is a folder of ``<image_id>.png`` masks in train ids (255 = unlabelled) or
    Cityscapes label ids (``label_format="label_ids"``, 0 = unlabelled); one written by
    ``alseg import`` also holds ``instances/<image_id>.png``. It is charged one unit per
    delivered instance (connected piece of a class where there are no instances), less
    the units the labelled set ``labelled`` already holds.
    Raises ValueError naming the file for unknown or missing images, wrong sizes,
    non-single-channel masks, unknown classes and images whose requested regions come
    back without any label. Requested regions that come back unlabelled (in an image
    that has labels elsewhere) are not recorded as labelled, with a warning.
    """
    from alseg_core.annotation.formats.common import read_inbox_instances
    from alseg_core.labels import mask_url, read_mask

    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be 'train_ids' or 'label_ids', got {label_format!r}")
    check_delivery_path(directory)
    meta = _delivery_meta(directory, request)
    imported = storage.exists(storage.join(directory, "import.json"))  # by ``alseg import``
    files = _delivered_files(directory, request)
    images: list[DeliveredImage] = []
    warnings: list[str] = list(meta.get("warnings", [])) if meta else []
    digest = hashlib.sha1(request.request_id.encode())
    for item in request.items:
        url = files[item.image_id]
        raw = storage.read_bytes(url)
        digest.update(item.image_id.encode() + hashlib.sha1(raw).digest())
        shape = image_shape(item.image_id, region_maps, samples)
        label_ids = label_format == "label_ids" and meta is None and not imported
        mask = _train_id_mask(raw, url, item.image_id, shape, label_ids)
        region_map = region_maps.get(item.image_id)
        area = requested_area(item, region_map, shape)
        outside = 0
        if meta is not None:
            info = meta["images"][item.image_id]
            keys, cost = frozenset(info["instance_keys"]), int(info["cost"])
            regions = frozenset(info.get("regions", item.regions))
        else:
            old = None
            if labelled and storage.exists(mask_url(labelled, item.image_id)):
                old = read_mask(labelled, item.image_id)
            have = mask != IGNORE_INDEX
            if not (have & area).any():
                raise ValueError(
                    f"{url}: no label inside the requested "
                    + ("image" if item.full_image else f"regions {list(item.regions)[:10]}")
                    + f" of image {item.image_id} (every pixel there is {IGNORE_INDEX}, "
                    "unlabelled); label them, or leave the image out of the request"
                )
            instances = read_inbox_instances(directory, item.image_id) if imported else None
            if instances is not None:
                digest.update(instances.tobytes())
            cost, stray, outside, keys = _human_units(mask, instances, old, area)
            merged = have if old is None else have | (old != IGNORE_INDEX)
            regions, empty = _labelled_regions(item, area, merged, region_map)
            if empty:
                warnings.append(
                    f"{url}: requested regions {empty[:10]} came back unlabelled; they are "
                    "not recorded as labelled and may be requested again"
                )
            if stray:
                warnings.append(
                    f"{url}: {stray} labelled objects ({outside} pixels) do not touch the "
                    "requested regions; they are merged and charged all the same"
                )
        labels = ImageLabels(item.image_id, regions, item.full_image, keys)
        images.append(DeliveredImage(labels, mask, cost, outside))
    delivery_id = meta["delivery_id"] if meta else f"human-{digest.hexdigest()[:16]}"
    return Delivery(
        delivery_id,
        request.request_id,
        request.round,
        meta["source"] if meta else "human",
        tuple(images),
        tuple(warnings),
        estimated_cost=request.estimated_cost,
    )
