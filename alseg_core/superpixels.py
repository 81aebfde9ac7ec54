"""Superpixels (watershed, or SLIC) per pool image, stored once in Parquet.

The store is a directory (local or ``s3://``) of Parquet part files, one row per
image: image id, the image's content key (:func:`alseg_core.content.content_key`: SHA-256 of a
local file, the ETag on S3), height, width, the region map (raw little-endian bytes of
the smallest unsigned dtype that holds it; the file is zstd-compressed), and
per-region area and bounding box. Every part carries the store format and the
superpixel parameters in its schema metadata; a store written with other parameters
or by another format version is refused.

``update`` computes what the store lacks: images not in it, and images whose content
changed since (regenerated in place): their old rows are dropped and recomputed, the
others are not touched. Work goes out in shards cut from the sorted image list
(:mod:`alseg_core.executors`: a local process pool or a Dask cluster); each shard writes
its own part file atomically, named by its images and their content, so the store's
bytes do not depend on the executor, and a re-run after a lost worker computes only the
shards not written. Parts written before content keys (no ``content`` column) count as
of unknown content and are recomputed once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from alseg_core import storage
from alseg_core.content import content_keys
from alseg_core.executors import DEFAULT_SHARD_SIZE, Executor, map_shards, resolve_executor, shards

STORE_FORMAT = "alseg-superpixels/1"
METHODS = ("watershed", "slic")


@dataclass(frozen=True)
class SuperpixelParams:
    method: str = "watershed"
    n_regions: int = 100
    compactness: float = 1e-3  # watershed: 1e-3 on a Sobel gradient; SLIC: around 10

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"superpixels.method must be one of {METHODS}, got {self.method!r}")
        if self.n_regions < 1:
            raise ValueError(f"superpixels.n_regions must be >= 1, got {self.n_regions}")
        if self.compactness < 0:
            raise ValueError(f"superpixels.compactness must be >= 0, got {self.compactness}")


def _consecutive(labels: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def watershed_regions(
    image: np.ndarray, *, n_regions: int = 100, compactness: float = 1e-3
) -> np.ndarray:
    """Compact watershed on the Sobel gradient from a regular grid of ``n_regions`` seeds.

    image : (H, W, 3) uint8. Returns (H, W) int32 region ids 0..k-1 (k close to n_regions).
    """
    from skimage.color import rgb2gray
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    _check_image(image)
    gradient = sobel(rgb2gray(image))
    return _consecutive(watershed(gradient, markers=n_regions, compactness=compactness))


def slic_regions(
    image: np.ndarray, *, n_regions: int = 100, compactness: float = 10.0
) -> np.ndarray:
    """SLIC superpixels. image : (H, W, 3) uint8 -> (H, W) int32 region ids 0..k-1."""
    from skimage.segmentation import slic

    _check_image(image)
    return _consecutive(slic(image, n_segments=n_regions, compactness=compactness, start_label=0))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")


def compute_regions(image: np.ndarray, params: SuperpixelParams) -> np.ndarray:
    if params.method == "watershed":
        return watershed_regions(image, n_regions=params.n_regions, compactness=params.compactness)
    return slic_regions(image, n_regions=params.n_regions, compactness=params.compactness)


def region_stats(region_map: np.ndarray) -> dict[str, np.ndarray]:
    """Per region id 0..k-1: area and inclusive bbox (ymin, xmin, ymax, xmax), all int32."""
    k = int(region_map.max()) + 1
    flat = region_map.ravel()
    h, w = region_map.shape
    ys = np.repeat(np.arange(h, dtype=np.int32), w)
    xs = np.tile(np.arange(w, dtype=np.int32), h)
    area = np.bincount(flat, minlength=k).astype(np.int32)
    big = np.iinfo(np.int32).max
    ymin = np.full(k, big, np.int32)
    xmin = np.full(k, big, np.int32)
    ymax = np.full(k, -1, np.int32)
    xmax = np.full(k, -1, np.int32)
    np.minimum.at(ymin, flat, ys)
    np.minimum.at(xmin, flat, xs)
    np.maximum.at(ymax, flat, ys)
    np.maximum.at(xmax, flat, xs)
    return {"area": area, "ymin": ymin, "xmin": xmin, "ymax": ymax, "xmax": xmax}


def encode_region_map(region_map: np.ndarray) -> tuple[bytes, str]:
    """(raw little-endian bytes, dtype name) in the smallest unsigned dtype."""
    top = int(region_map.max()) if region_map.size else 0
    dtype = "<u1" if top < 2**8 else "<u2" if top < 2**16 else "<u4"
    return region_map.astype(dtype).tobytes(), dtype


def decode_region_map(data: bytes, dtype: str, height: int, width: int) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.dtype(dtype))
    if arr.size != height * width:
        raise ValueError(f"region map holds {arr.size} values, expected {height}x{width}")
    return arr.reshape(height, width).astype(np.int32)


def _row_for(args: tuple[str, str, SuperpixelParams]) -> dict:
    image_id, image_url, params = args
    image = storage.read_rgb(image_url)
    regions = compute_regions(image, params)
    data, dtype = encode_region_map(regions)
    stats = region_stats(regions)
    return {
        "image_id": image_id,
        "content": None,
        "height": regions.shape[0],
        "width": regions.shape[1],
        "n_regions": int(regions.max()) + 1,
        "dtype": dtype,
        "region_map": data,
        **{k: v.tolist() for k, v in stats.items()},
    }


_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("content", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("n_regions", pa.int32()),
        ("dtype", pa.string()),
        ("region_map", pa.binary()),
        ("area", pa.list_(pa.int32())),
        ("ymin", pa.list_(pa.int32())),
        ("xmin", pa.list_(pa.int32())),
        ("ymax", pa.list_(pa.int32())),
        ("xmax", pa.list_(pa.int32())),
    ]
)


def _store_shard(job: tuple[str, SuperpixelParams, list[tuple[str, str, str]]]) -> int:
    """Compute one shard's regions and write them as one part (run on any worker)."""
    url, params, todo = job
    rows = [_row_for((image_id, image_url, params)) | {"content": key}
            for image_id, image_url, key in todo]  # fmt: skip
    store = SuperpixelStore(url, params)
    table = pa.Table.from_pylist(rows, schema=_SCHEMA).replace_schema_metadata(store._metadata())
    names = "\n".join(f"{r['image_id']}\t{r['content']}" for r in rows)
    digest = hashlib.sha1(names.encode()).hexdigest()[:16]
    storage.makedirs(url)
    storage.write_parquet(storage.join(url, f"part-{digest}.parquet"), table)
    return len(rows)


class SuperpixelStore:
    """A Parquet superpixel store at ``url`` for one set of :class:`SuperpixelParams`."""

    def __init__(self, url: str, params: SuperpixelParams | None = None) -> None:
        self.url = storage.normalize(url)
        self.params = params or SuperpixelParams()
        self._index: dict[str, str] | None = None
        self._contents: dict[str, str | None] = {}
        self._cache: dict[str, tuple[pa.Table, dict[str, int]]] = {}

    def fingerprint(self) -> str:
        """What the store's region maps depend on (format and parameters), as a short hash.

        Scores, selections and requests record it; a later step given a store with
        another fingerprint refuses, since its region ids would name other pixels.
        """
        text = STORE_FORMAT + json.dumps(asdict(self.params), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def _metadata(self) -> dict[bytes, bytes]:
        return {
            b"alseg_format": STORE_FORMAT.encode(),
            b"alseg_params": json.dumps(asdict(self.params), sort_keys=True).encode(),
        }

    def parts(self) -> list[str]:
        if not storage.exists(self.url):
            return []
        return storage.glob(storage.join(self.url, "part-*.parquet"))

    def _check_part(self, url: str, table: pa.Table) -> None:
        meta = table.schema.metadata or {}
        fmt = meta.get(b"alseg_format", b"").decode()
        if fmt != STORE_FORMAT:
            raise ValueError(
                f"{url}: superpixel store format {fmt or 'unknown'!r}, expected {STORE_FORMAT!r} "
                "(written by another version; delete the store to recompute)"
            )
        stored = json.loads(meta.get(b"alseg_params", b"{}"))
        for key, value in asdict(self.params).items():
            if stored.get(key) != value:
                raise ValueError(
                    f"{url}: store was computed with superpixels.{key}={stored.get(key)!r}, "
                    f"but {value!r} was asked; use another store path or delete this one"
                )

    def _scan(self) -> None:
        index: dict[str, str] = {}
        contents: dict[str, str | None] = {}
        for part in self.parts():
            table = storage.read_parquet(part, columns=["image_id", "content"], present_only=True)
            self._check_part(part, table)
            ids = table.column("image_id").to_pylist()
            keys = (
                table.column("content").to_pylist()
                if "content" in table.column_names
                else [None] * len(ids)
            )
            for image_id, key in zip(ids, keys, strict=True):
                index[image_id], contents[image_id] = part, key
        self._index, self._contents = index, contents

    def index(self) -> dict[str, str]:
        """image id -> URL of the part file holding it."""
        if self._index is None:
            self._scan()
        assert self._index is not None
        return self._index

    def contents(self) -> dict[str, str | None]:
        """image id -> the content key its regions were computed from (None: unknown)."""
        if self._index is None:
            self._scan()
        return dict(self._contents)

    def image_ids(self) -> set[str]:
        return set(self.index())

    def update(
        self,
        images: Iterable[tuple[str, str]],
        *,
        workers: int = 0,
        shard_size: int = DEFAULT_SHARD_SIZE,
        executor: Executor | str = "local",
        progress: bool = False,
    ) -> int:
        """Compute and store the regions of the (image_id, image_url) pairs the store lacks
        or holds for other content; returns the number of images computed.

        workers : local processes (0 = every core) when the executor names none.
        executor : where shards run (:mod:`alseg_core.executors`; ``ALSEG_EXECUTOR`` wins).
        """
        run_on = executor if isinstance(executor, Executor) else resolve_executor(executor)
        pairs = sorted(set(images))
        keys = content_keys([url for _, url in pairs])
        stored = self.contents()
        stale = sorted(i for (i, _), k in zip(pairs, keys, strict=True)
                       if i in stored and stored[i] != k)  # fmt: skip
        if stale:
            self._drop(stale)
        jobs = []
        for shard in shards(list(zip(pairs, keys, strict=True)), shard_size):
            todo = [(i, u, k) for (i, u), k in shard if stored.get(i) != k]
            if todo:
                jobs.append((self.url, self.params, todo))
        sizes = [len(job[2]) for job in jobs]
        map_shards(_store_shard, jobs, run_on, workers=workers, sizes=sizes,
                   progress="superpixels" if progress else None)  # fmt: skip
        self._index = None
        self._cache = {}
        return sum(sizes)

    def _drop(self, image_ids: Sequence[str]) -> None:
        """Rewrite the parts holding ``image_ids`` without their rows (atomically)."""
        drop = set(image_ids)
        index = self.index()
        for part in sorted({index[i] for i in drop if i in index}):
            table = storage.read_parquet(part)
            keep = [i for i, image_id in enumerate(table.column("image_id").to_pylist())
                    if image_id not in drop]  # fmt: skip
            if keep:
                storage.write_parquet(part, table.take(keep))
            else:
                storage.remove(part)
        self._index = None
        self._cache = {}

    def _table(self, part: str) -> tuple[pa.Table, dict[str, int]]:
        if part not in self._cache:
            table = storage.read_parquet(part)
            self._check_part(part, table)
            rows = {image_id: i for i, image_id in enumerate(table.column("image_id").to_pylist())}
            self._cache = {part: (table, rows)}  # keep one part in memory at a time
        return self._cache[part]

    def read_row(self, image_id: str) -> dict:
        index = self.index()
        if image_id not in index:
            raise KeyError(f"{self.url}: no superpixels for image {image_id!r}")
        table, rows = self._table(index[image_id])
        return table.slice(rows[image_id], 1).to_pylist()[0]

    def read(self, image_id: str) -> np.ndarray:
        """(H, W) int32 region map of ``image_id``, exactly as it was written."""
        row = self.read_row(image_id)
        return decode_region_map(row["region_map"], row["dtype"], row["height"], row["width"])
