"""The pool and validation images, listed once per process (or read from the manifest).

Listing a dataset on S3 is a paginated LIST per prefix; a round used to list the pool
in every step. The superpixels step writes the pool manifest (``<base>/pool.json``)
and every later step reads it, so the images a pipeline works on are fixed when the
superpixels are computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.cityscapes import Sample

POOL_FORMAT = "alseg-pool/1"


@dataclass(frozen=True)
class Pool:
    """The pool split (by image id, sorted) and the validation split of one dataset."""

    root: str
    pool_split: str
    val_split: str
    samples: Mapping[str, Sample]
    val: tuple[Sample, ...]
    superpixels: Mapping | None = None  # store URL and parameters, recorded in the manifest

    @classmethod
    def list(cls, root: str, pool_split: str, val_split: str | None) -> Pool:
        """List the pool split and (unless None) the validation split.

        Labels are required: the oracle, the cost reports and the metrics read them.
        """
        pool = cityscapes.list_samples(root, pool_split)
        val = cityscapes.list_samples(root, val_split) if val_split else []
        return cls(root, pool_split, val_split or "", {s.image_id: s for s in pool}, tuple(val))

    @classmethod
    def open(
        cls,
        root: str,
        pool_split: str,
        val_split: str,
        *,
        manifest: str | None = None,
        list_val: bool = True,
    ) -> Pool:
        """The pool from ``manifest`` (checked to list this dataset), else listed now
        (the validation split too unless ``list_val`` is false)."""
        if manifest is not None:
            pool = cls.read(manifest)
            pool.check_matches(root, pool_split, val_split, manifest)
            return pool
        return cls.list(root, pool_split, val_split if list_val else None)

    @property
    def ids(self) -> list[str]:
        return sorted(self.samples)

    def sample(self, image_id: str) -> Sample:
        if image_id not in self.samples:
            raise ValueError(
                f"image id {image_id!r} is not in the pool ({self.root}, split {self.pool_split})"
            )
        return self.samples[image_id]

    def to_json(self) -> dict:
        return {
            "format": POOL_FORMAT,
            "root": self.root,
            "pool_split": self.pool_split,
            "val_split": self.val_split,
            "superpixels": dict(self.superpixels) if self.superpixels else None,
            "pool": [asdict(self.samples[i]) for i in self.ids],
            "val": [asdict(s) for s in self.val],
        }

    def write(self, url: str) -> None:
        storage.write_json(url, self.to_json())

    @classmethod
    def read(cls, url: str) -> Pool:
        data = storage.read_json(url)
        if not isinstance(data, dict) or data.get("format") != POOL_FORMAT:
            raise ValueError(f"{url}: not an alseg pool manifest (expected format {POOL_FORMAT!r})")
        pool = [Sample(**s) for s in data["pool"]]
        return cls(
            data["root"],
            data["pool_split"],
            data["val_split"],
            {s.image_id: s for s in pool},
            tuple(Sample(**s) for s in data["val"]),
            data.get("superpixels"),
        )

    def check_matches(self, root: str, pool_split: str, val_split: str, source: str) -> None:
        """A manifest is only valid for the dataset it lists."""
        held = (storage.normalize(self.root), self.pool_split, self.val_split)
        if held != (storage.normalize(root), pool_split, val_split):
            raise ValueError(
                f"{source}: lists {self.root} ({self.pool_split}/{self.val_split}) but "
                f"params ask for {root} ({pool_split}/{val_split}); rerun the superpixels step"
            )
