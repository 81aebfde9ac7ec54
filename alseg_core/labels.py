"""The labelled set: an immutable, serialisable value with its history.

On disk a labelled set is a directory: ``state.json`` (this value) and
``masks/<image_id>.png`` (train ids where labelled, IGNORE_INDEX elsewhere). A merge
never modifies its input: it writes a new directory (atomically for local paths;
``state.json`` is written last, so a set without it is incomplete and refused).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from alseg_core import storage
from alseg_core.types import IGNORE_INDEX

STATE_FORMAT = "alseg-labelled-set/1"


@dataclass(frozen=True)
class ImageLabels:
    """What is labelled in one image: chosen regions, whole image, revealed instances."""

    image_id: str
    regions: frozenset[int] = frozenset()
    full_image: bool = False
    instance_keys: frozenset[str] = frozenset()

    def union(self, other: ImageLabels) -> ImageLabels:
        return ImageLabels(
            self.image_id,
            self.regions | other.regions,
            self.full_image or other.full_image,
            self.instance_keys | other.instance_keys,
        )


@dataclass(frozen=True)
class HistoryEntry:
    delivery_id: str
    round: int
    cost: int
    n_images: int
    n_regions: int
    est_cost: int = 0  # what selection estimated for the delivered units (0: no estimate)


@dataclass(frozen=True)
class LabelState:
    images: Mapping[str, ImageLabels] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()

    @property
    def total_cost(self) -> int:
        return sum(h.cost for h in self.history)

    @property
    def fingerprint(self) -> str:
        """Which deliveries the set holds, as a short hash ('' for the empty set).

        Scores record it; selecting with another labelled set than the one scored
        (which would buy labels already held, or miss free ones) is refused.
        """
        if not self.history:
            return ""
        ids = "\n".join(h.delivery_id for h in self.history)
        return hashlib.sha1(ids.encode()).hexdigest()[:16]

    def has_delivery(self, delivery_id: str) -> bool:
        return any(h.delivery_id == delivery_id for h in self.history)

    def labelled_regions(self, image_id: str) -> frozenset[int]:
        entry = self.images.get(image_id)
        return entry.regions if entry else frozenset()

    def is_fully_labelled(self, image_id: str) -> bool:
        entry = self.images.get(image_id)
        return bool(entry and entry.full_image)

    def instance_keys(self, image_id: str) -> frozenset[str]:
        entry = self.images.get(image_id)
        return entry.instance_keys if entry else frozenset()

    def merged(
        self,
        delivery_id: str,
        round_: int,
        cost: int,
        additions: Iterable[ImageLabels],
        *,
        est_cost: int = 0,
    ) -> LabelState:
        """A new state with ``additions``; the same delivery merged twice changes nothing."""
        if self.has_delivery(delivery_id):
            return self
        images = dict(self.images)
        additions = list(additions)
        for add in additions:
            images[add.image_id] = (
                images[add.image_id].union(add) if add.image_id in images else add
            )
        entry = HistoryEntry(
            delivery_id,
            round_,
            int(cost),
            len(additions),
            sum(len(a.regions) for a in additions),
            int(est_cost),
        )
        return replace(self, images=images, history=(*self.history, entry))

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "total_cost": self.total_cost,
            "images": {
                i: {
                    "regions": sorted(e.regions),
                    "full_image": e.full_image,
                    "instance_keys": sorted(e.instance_keys),
                }
                for i, e in sorted(self.images.items())
            },
            "history": [h.__dict__ for h in self.history],
        }

    @classmethod
    def from_json(cls, data: Mapping, *, source: str = "state") -> LabelState:
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(
                f"{source}: not a labelled set (format {found!r}, expected {STATE_FORMAT!r})"
            )
        images = {
            i: ImageLabels(
                i, frozenset(e["regions"]), bool(e["full_image"]), frozenset(e["instance_keys"])
            )
            for i, e in data["images"].items()
        }
        history = tuple(HistoryEntry(**h) for h in data["history"])
        return cls(images, history)


def state_url(root: str) -> str:
    return storage.join(root, "state.json")


def mask_url(root: str, image_id: str) -> str:
    return storage.join(root, "masks", f"{image_id}.png")


def load_state(root: str | None) -> LabelState:
    """The state of the labelled set at ``root``; None = the empty set.

    A root that does not exist is an error, never an empty set: a typo would otherwise
    score already labelled images again, or write a new set without the earlier labels.
    """
    if root is None:
        return LabelState()
    if not storage.exists(root):
        raise FileNotFoundError(
            f"{root}: no labelled set there (no such folder); give an existing labelled set, "
            "or none for a first round"
        )
    url = state_url(root)
    if not storage.exists(url):
        raise ValueError(f"{root}: incomplete labelled set (no state.json)")
    return LabelState.from_json(storage.read_json(url), source=url)


def read_mask(root: str, image_id: str) -> np.ndarray:
    return storage.read_image(mask_url(root, image_id))


def write_labelled_set(
    root: str, state: LabelState, masks: Mapping[str, np.ndarray], *, copy_from: str | None = None
) -> None:
    """Write a complete labelled set: ``masks`` plus masks of ``copy_from`` not in ``masks``."""

    def fill(target: str) -> None:
        for image_id in state.images:
            if image_id in masks:
                storage.write_png(mask_url(target, image_id), masks[image_id])
            elif copy_from is not None and storage.exists(mask_url(copy_from, image_id)):
                storage.write_bytes(
                    mask_url(target, image_id), storage.read_bytes(mask_url(copy_from, image_id))
                )
        storage.write_bytes(
            state_url(target), (json.dumps(state.to_json(), indent=1) + "\n").encode()
        )

    with storage.output_dir(root) as target:
        fill(target)  # state.json goes last: readers refuse a set without it


def merge_masks(old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    """Labelled pixels of ``old`` stay; ``new`` fills the unlabelled ones."""
    if old is None:
        return new.astype(np.uint8)
    if old.shape != new.shape:
        raise ValueError(f"mask shape {new.shape} differs from the labelled mask {old.shape}")
    return np.where(old != IGNORE_INDEX, old, new).astype(np.uint8)
