"""Label requests, the simulated oracle, and import of delivered labels.

Cost model (the reference's): one labelled object instance = one unit. Things are the
instances of ``*_instanceIds.png`` (id >= 1000); stuff, and thing pixels without an
instance id (crowds), count one instance per connected component of their class.
An image costs all its instances; a superpixel costs the instances that overlap it,
minus those already labelled. Void pixels are never labelled nor charged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import MAX_LABEL_ID, label_ids_to_train_ids
from alseg_core.labels import (
    ImageLabels,
    LabelState,
    load_state,
    mask_url,
    merge_masks,
    read_mask,
    write_labelled_set,
)
from alseg_core.types import IGNORE_INDEX, NUM_CLASSES

REQUEST_FORMAT = "alseg-request/1"
DELIVERY_FORMAT = "alseg-delivery/1"


# ----------------------------------------------------------------------------- components


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


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestItem:
    image_id: str
    regions: tuple[int, ...]  # empty with full_image
    full_image: bool
    score: float
    est_cost: int


@dataclass(frozen=True)
class Request:
    request_id: str
    round: int
    unit: str
    strategy: str
    items: tuple[RequestItem, ...]

    @property
    def estimated_cost(self) -> int:
        return sum(i.est_cost for i in self.items)

    def item(self, image_id: str) -> RequestItem | None:
        return next((i for i in self.items if i.image_id == image_id), None)

    def to_json(self) -> dict:
        return {
            "format": REQUEST_FORMAT,
            "request_id": self.request_id,
            "round": self.round,
            "unit": self.unit,
            "strategy": self.strategy,
            "items": [i.__dict__ | {"regions": list(i.regions)} for i in self.items],
        }

    @classmethod
    def from_json(cls, data: Mapping, *, source: str) -> Request:
        if data.get("format") != REQUEST_FORMAT:
            raise ValueError(f"{source}: not an alseg request (format {data.get('format')!r})")
        items = tuple(
            RequestItem(
                i["image_id"],
                tuple(i["regions"]),
                bool(i["full_image"]),
                float(i["score"]),
                int(i["est_cost"]),
            )
            for i in data["items"]
        )
        return cls(data["request_id"], int(data["round"]), data["unit"], data["strategy"], items)


def make_request(round_: int, unit: str, strategy: str, items: Sequence[RequestItem]) -> Request:
    digest = hashlib.sha1(
        repr((round_, unit, strategy, sorted(items, key=lambda i: i.image_id))).encode()
    )
    return Request(f"r{round_}-{digest.hexdigest()[:12]}", round_, unit, strategy, tuple(items))


def load_request(directory: str) -> Request:
    url = storage.join(directory, "request.json")
    if not storage.exists(url):
        raise FileNotFoundError(f"{directory}: no request.json (not a request folder)")
    return Request.from_json(storage.read_json(url), source=url)


def requested_area(
    item: RequestItem, region_map: np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray:
    if item.full_image:
        return np.ones(shape, bool)
    if region_map is None:
        raise ValueError(
            f"request for image {item.image_id!r} names regions but no region map was given"
        )
    lut = np.zeros(int(region_map.max()) + 1, bool)
    lut[[r for r in item.regions if r < lut.size]] = True
    return lut[region_map]


def preannotation_mask(area: np.ndarray, region_map: np.ndarray | None) -> np.ndarray:
    """(H, W) uint8 guide without class labels: 0 outside, 128 inside, 255 region outlines."""
    out = np.where(area, 128, 0).astype(np.uint8)
    if region_map is not None:
        edge = np.zeros(area.shape, bool)
        edge[:, 1:] |= region_map[:, 1:] != region_map[:, :-1]
        edge[1:, :] |= region_map[1:, :] != region_map[:-1, :]
        edge[:, :-1] |= edge[:, 1:].copy()
        out[edge & area] = 255
    return out


def heatmap_png(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) pixel scores -> (H, W, 3) uint8 'inferno' heatmap resized to ``shape``."""
    from matplotlib import colormaps
    from PIL import Image

    top = float(scores.max()) if scores.size else 0.0
    norm = scores / top if top > 0 else np.zeros_like(scores)
    rgb = (colormaps["inferno"](norm.astype(np.float64))[..., :3] * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), Image.BILINEAR))


def write_request(
    directory: str,
    request: Request,
    *,
    region_maps: Mapping[str, np.ndarray],
    heatmaps: Mapping[str, np.ndarray] | None = None,
) -> None:
    """request.json, request.csv (+ Parquet), pre-annotation masks and heatmaps.

    The folder appears whole or not at all (request.json, written last, marks it done).
    """
    with storage.output_dir(directory) as target:
        _write_request(target, request, region_maps=region_maps, heatmaps=heatmaps)


def _write_request(
    directory: str,
    request: Request,
    *,
    region_maps: Mapping[str, np.ndarray],
    heatmaps: Mapping[str, np.ndarray] | None,
) -> None:
    import pyarrow as pa

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image_id", "region_ids", "score", "estimated_cost"])
    for item in request.items:
        regions = "all" if item.full_image else " ".join(map(str, item.regions))
        writer.writerow([item.image_id, regions, f"{item.score:.6g}", item.est_cost])
    for item in request.items:
        regions = region_maps.get(item.image_id)
        if regions is None and not item.full_image:
            raise ValueError(f"no region map for requested image {item.image_id!r}")
        shape = regions.shape if regions is not None else None
        if shape is None and heatmaps and item.image_id in heatmaps:
            shape = heatmaps[item.image_id].shape
        if shape is not None:
            area = requested_area(item, regions, shape)
            storage.write_png(
                storage.join(directory, "preannotations", f"{item.image_id}.png"),
                preannotation_mask(area, regions),
            )
        if heatmaps and item.image_id in heatmaps:
            heat = heatmaps[item.image_id]
            storage.write_png(
                storage.join(directory, "heatmaps", f"{item.image_id}.png"),
                heatmap_png(heat, shape or heat.shape),
            )
    table = pa.Table.from_pylist(
        [i.__dict__ | {"regions": list(i.regions)} for i in request.items],
        schema=pa.schema(
            [
                ("image_id", pa.string()),
                ("regions", pa.list_(pa.int32())),
                ("full_image", pa.bool_()),
                ("score", pa.float64()),
                ("est_cost", pa.int64()),
            ]
        ),
    )
    storage.write_parquet(storage.join(directory, "request.parquet"), table)
    storage.write_bytes(storage.join(directory, "request.csv"), buf.getvalue().encode())
    storage.write_json(storage.join(directory, "request.json"), request.to_json())  # last


# ----------------------------------------------------------------------------- deliveries


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
            "images": {
                img.labels.image_id: {
                    "cost": img.cost,
                    "instance_keys": sorted(img.labels.instance_keys),
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


def read_delivery(
    directory: str,
    request: Request,
    samples: Mapping[str, cityscapes.Sample],
    region_maps: Mapping[str, np.ndarray],
    *,
    label_format: str = "train_ids",
) -> Delivery:
    """Read and validate a delivery folder against ``request``.

    A folder written by the oracle carries delivery.json with the exact cost; a human
    delivery is a folder of ``<image_id>.png`` masks in train ids (255 = unlabelled) or
    Cityscapes label ids (``label_format="label_ids"``, 0 = unlabelled) and is charged one
    unit per connected component of each class in the delivered mask.
    Raises ValueError naming the file for unknown or missing images, wrong sizes,
    non-single-channel masks and unknown classes.
    """
    if label_format not in ("train_ids", "label_ids"):
        raise ValueError(f"label_format must be 'train_ids' or 'label_ids', got {label_format!r}")
    check_delivery_path(directory)
    meta_url = storage.join(directory, "delivery.json")
    meta = storage.read_json(meta_url) if storage.exists(meta_url) else None
    if meta is not None and meta.get("request_id") != request.request_id:
        raise ValueError(
            f"{meta_url}: delivery answers request {meta.get('request_id')!r}, "
            f"expected {request.request_id!r}"
        )
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
    images, warnings = [], []
    digest = hashlib.sha1(request.request_id.encode())
    for item in request.items:
        url = files[item.image_id]
        raw = storage.read_bytes(url)
        digest.update(item.image_id.encode() + hashlib.sha1(raw).digest())
        mask = storage.decode_png(raw, source=url)
        if mask.ndim != 2:
            raise ValueError(f"{url}: expected a single-channel label PNG, got shape {mask.shape}")
        if mask.dtype != np.uint8:
            raise ValueError(f"{url}: expected an 8-bit label PNG, got {mask.dtype} values")
        sample = samples[item.image_id]
        shape = cityscapes.read_image(sample).shape[:2]
        if mask.shape != shape:
            raise ValueError(
                f"{url}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{item.image_id} size {shape[1]}x{shape[0]}"
            )
        if label_format == "label_ids" and meta is None:
            if mask.max() > MAX_LABEL_ID:
                bad = sorted(int(v) for v in np.unique(mask) if v > MAX_LABEL_ID)
                raise ValueError(
                    f"{url}: label ids {bad[:10]} are outside the Cityscapes label table"
                )
            mask = label_ids_to_train_ids(mask, source=url)
        bad = np.unique(mask[(mask >= NUM_CLASSES) & (mask != IGNORE_INDEX)])
        if bad.size:
            raise ValueError(
                f"{url}: class ids {bad[:10].tolist()} are not train ids 0..{NUM_CLASSES - 1} "
                f"or {IGNORE_INDEX} (unlabelled)"
            )
        mask = mask.astype(np.uint8)
        area = requested_area(item, region_maps.get(item.image_id), shape)
        outside = int(((mask != IGNORE_INDEX) & ~area).sum())
        if meta is not None:
            info = meta["images"][item.image_id]
            keys = frozenset(info["instance_keys"])
            cost = int(info["cost"])
        else:
            keys = frozenset()
            cost = len(component_map(mask)[1])
            if outside:
                warnings.append(
                    f"{url}: {outside} labelled pixels lie outside the requested regions"
                )
        labels = ImageLabels(item.image_id, frozenset(item.regions), item.full_image, keys)
        images.append(DeliveredImage(labels, mask, cost, outside))
    delivery_id = meta["delivery_id"] if meta else f"human-{digest.hexdigest()[:16]}"
    source = meta["source"] if meta else "human"
    return Delivery(
        delivery_id,
        request.request_id,
        request.round,
        source,
        tuple(images),
        tuple(warnings),
        estimated_cost=request.estimated_cost,
    )


# ----------------------------------------------------------------------------- merge


def merge_delivery(labelled_in: str | None, delivery: Delivery, labelled_out: str) -> LabelState:
    """Write ``labelled_out`` = ``labelled_in`` + ``delivery``; returns the new state.

    Idempotent: a delivery already in the history changes nothing (the set is copied).
    The input set is never modified; the output appears whole or not at all.
    """
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


def full_image_cost(sample: cityscapes.Sample) -> int:
    """Instances in the whole image: the cost of labelling it from scratch."""
    label = cityscapes.read_label(sample)
    instances = (
        cityscapes.read_instances(sample, shape=label.shape) if sample.instance_url else None
    )
    return len(component_map(label, instances)[1])
