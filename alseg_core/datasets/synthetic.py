"""The embedded synthetic dataset: procedural street scenes in the Cityscapes layout.

Each scene has a perspective road with lane marks, sidewalks, terrain, buildings with
windows, walls and fences, trees, sky, and countable objects that carry instance ids
(cars, trucks, buses, persons, riders on bicycles or motorcycles, poles with traffic
signs and lights). Far objects are drawn first so near ones occlude them; object size
follows perspective; colours, illumination, shadows and texture noise vary per image,
and several classes share colours (grey cars vs road, walls vs buildings, overcast sky
vs facades), so a model has to learn shape and context, not just colour. Rare classes
(rider, bicycle, motorcycle, bus, truck, traffic light, fence, wall) and small objects
make the data worth active learning: random sampling sees them seldom. Hard and rare
cases are concentrated in a minority of scenes: fog and dusk (10 % each), a tram (the
only source of the class "train", 8 %), groups of riders (12 %).

Everything is deterministic from ``seed``: image ``i`` of a split uses its own
``numpy.random.Generator`` seeded from (seed, split, i), so the same call writes
byte-identical files and generating more images does not change the first ones.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.scenes import render_scene

__all__ = ["CITIES", "GENERATOR", "SyntheticSpec", "make_synthetic", "render_scene"]

GENERATOR = "alseg-synthetic-v2"
CITIES = {"train": ("aachen", "bremen", "hamburg"), "val": ("frankfurt",), "test": ("berlin",)}


@dataclass(frozen=True)
class SyntheticSpec:
    """What :func:`make_synthetic` writes. Sizes are (height, width) in pixels."""

    n_train: int = 400
    n_val: int = 50
    height: int = 128
    width: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val"):
            if getattr(self, name) < 0:
                raise ValueError(f"synthetic.{name} must be >= 0, got {getattr(self, name)}")
        if self.height < 32 or self.width < 32:
            raise ValueError(
                f"synthetic image size must be at least 32x32, got {self.width}x{self.height}"
            )


def _image_seed(seed: int, split: str, index: int) -> list[int]:
    return [seed, zlib.crc32(split.encode()), index]


def _write_one(args: tuple[str, str, int, SyntheticSpec]) -> str:
    root, split, index, spec = args
    rng = np.random.default_rng(_image_seed(spec.seed, split, index))
    image, label_ids, instance_ids = render_scene(rng, spec.height, spec.width)
    cities = CITIES[split]
    city = cities[index % len(cities)]
    image_id = f"{city}_{index // len(cities):06d}_000019"
    storage.write_png(cityscapes.label_url(root, split, city, image_id), label_ids)
    storage.write_png(cityscapes.instance_url(root, split, city, image_id), instance_ids)
    # The image goes last: a sample is listed only once its image exists.
    storage.write_png(cityscapes.image_url(root, split, city, image_id), image)
    return image_id


def _already_there(root: str, spec: SyntheticSpec) -> bool:
    """``root`` holds this very dataset: its manifest (written last) names the same spec
    and generator, and every image is listed."""
    from alseg_core.datasets import cityscapes

    url = storage.join(root, "synthetic.json")
    try:
        meta = storage.read_json(url) if storage.exists(url) else None
    except ValueError:
        return False
    if not meta or meta.get("spec") != spec.__dict__ or meta.get("generator") != GENERATOR:
        return False
    try:
        listed = [len(cityscapes.list_samples(root, split)) for split in ("train", "val")]
    except (ValueError, FileNotFoundError):
        return False
    return listed == [spec.n_train, spec.n_val]


def make_synthetic(
    root: str, spec: SyntheticSpec | None = None, *, workers: int = 1, force: bool = False
) -> dict:
    """Write the synthetic dataset under ``root`` (local path or URL); returns a summary
    (``skipped``: the same dataset was already there; ``force`` rewrites it anyway).

    Existing files are overwritten with identical content, so the call is idempotent.
    """
    spec = spec or SyntheticSpec()
    if not force and _already_there(root, spec):
        return {"root": root, "train": spec.n_train, "val": spec.n_val, "skipped": True}
    jobs = [(root, "train", i, spec) for i in range(spec.n_train)]
    jobs += [(root, "val", i, spec) for i in range(spec.n_val)]
    if workers > 1 and len(jobs) > 8:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            ids = list(pool.map(_write_one, jobs, chunksize=8))
    else:
        ids = [_write_one(job) for job in jobs]
    storage.write_json(
        storage.join(root, "synthetic.json"),
        {"spec": spec.__dict__, "n_images": len(ids), "generator": GENERATOR},
    )
    return {"root": root, "train": spec.n_train, "val": spec.n_val, "skipped": False}
