"""Label requests: what a round asks annotators to label, and the files they get.

A request folder holds request.json (the value), request.csv and request.parquet (the
list an annotation platform ingests), pre-annotation masks (the chosen regions without
class labels, for tools), guides (the chosen regions outlined over the photo) and
uncertainty heatmaps over the photo (``annotation.overlays``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alseg_core import storage

REQUEST_FORMAT = "alseg-request/1"


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
    store: str | None = None  # fingerprint of the superpixel store the region ids index

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
        } | ({"superpixel_store": self.store} if self.store else {})

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
        return cls(
            data["request_id"], int(data["round"]), data["unit"], data["strategy"], items,
            data.get("superpixel_store"),
        )  # fmt: skip

    def check_store(self, fingerprint: str, *, source: str) -> None:
        """Refuse a superpixel store other than the one the region ids were chosen in."""
        check_store(self.store, fingerprint, source=source, regions=self.has_regions)

    @property
    def has_regions(self) -> bool:
        return any(not i.full_image for i in self.items)


def check_store(
    recorded: str | None, fingerprint: str, *, source: str, regions: bool = True
) -> None:
    """``recorded`` (a file's superpixel store fingerprint) must be ``fingerprint``."""
    if regions and recorded is not None and recorded != fingerprint:
        raise ValueError(
            f"{source}: its region ids index superpixel store {recorded}, but the store given "
            f"now is {fingerprint} (other superpixels.* settings): the requested pixels would "
            "not be the scored regions; use the store the round was scored with"
        )


def make_request(
    round_: int,
    unit: str,
    strategy: str,
    items: Sequence[RequestItem],
    store: str | None = None,
) -> Request:
    digest = hashlib.sha1(
        repr((round_, unit, strategy, sorted(items, key=lambda i: i.image_id))).encode()
    )
    return Request(
        f"r{round_}-{digest.hexdigest()[:12]}", round_, unit, strategy, tuple(items), store
    )


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


def write_request(
    directory: str,
    request: Request,
    *,
    region_maps: Mapping[str, np.ndarray],
    heatmaps: Mapping[str, np.ndarray] | None = None,
    extra: Callable[[str], None] | None = None,
    photos: Callable[[str], np.ndarray | None] | None = None,
) -> None:
    """request.json, request.csv (+ Parquet), pre-annotation masks and heatmaps, and what
    ``extra(folder)`` writes (the annotation tools' files).

    The folder appears whole or not at all (request.json, written last, marks it done).
    """
    with storage.output_dir(directory) as target:
        if extra is not None:
            extra(target)
        _write_request(target, request, region_maps=region_maps, heatmaps=heatmaps, photos=photos)


def _write_request(
    directory: str,
    request: Request,
    *,
    region_maps: Mapping[str, np.ndarray],
    heatmaps: Mapping[str, np.ndarray] | None,
    photos: Callable[[str], np.ndarray | None] | None = None,
) -> None:
    import pyarrow as pa

    from alseg_core.annotation.overlays import guide_overlay, heatmap_overlay

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
        photo = photos(item.image_id) if photos is not None else None
        shape = regions.shape if regions is not None else None
        if shape is None and photo is not None:
            shape = photo.shape[:2]
        heat = heatmaps.get(item.image_id) if heatmaps else None
        if shape is None and heat is not None:
            shape = heat.shape
        if photo is not None and photo.shape[:2] != shape:
            photo = None  # a photo of another size cannot be drawn under the regions
        if shape is None:
            continue
        area = requested_area(item, regions, shape)
        storage.write_png(
            storage.join(directory, "preannotations", f"{item.image_id}.png"),
            preannotation_mask(area, regions),
        )
        drawn = None if item.full_image else regions  # a whole image: just its frame
        storage.write_png(
            storage.join(directory, "guides", f"{item.image_id}.png"),
            guide_overlay(photo, area, drawn),
        )
        if heat is not None:
            storage.write_png(
                storage.join(directory, "heatmaps", f"{item.image_id}.png"),
                heatmap_overlay(photo, heat, area, drawn),
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
