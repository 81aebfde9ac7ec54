"""What every format shares: class names, the guide label, image ids, the inbox."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from alseg_core import storage
from alseg_core.datasets.labels import LABEL_BY_NAME, TRAIN_CLASS_NAMES
from alseg_core.types import IGNORE_INDEX

EXPORT_FORMATS = ("label-studio", "cvat", "coco")
IMPORT_FORMATS = ("label-studio", "cvat-mask", "cityscapes", "coco")

#: The class-free guide's label: "label what lies here". Never a class on import.
GUIDE_LABEL = "requested region"
#: Names a tool may use for "nothing here" (CVAT's mask formats write 'background').
UNLABELLED_NAMES = frozenset({"background", "unlabeled", "unlabelled", GUIDE_LABEL})
#: Instance ids written to an inbox start here (Cityscapes: things have ids >= 1000).
INSTANCE_BASE = 1000
#: Image files end in this in Cityscapes; ids drop it.
IMAGE_SUFFIXES = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color")


@dataclass(frozen=True)
class ExportItem:
    """One requested image as exported: where the tool finds it, what to label."""

    image_id: str
    image_url: str  # what the tool loads (URL prefix applied)
    shape: tuple[int, int]
    area: np.ndarray  # (H, W) bool: the requested regions (all True for a whole image)
    regions: tuple[int, ...]
    score: float
    est_cost: int
    round: int
    request_id: str
    prediction: np.ndarray | None = None  # (H, W) uint8 predicted train ids, optional


@dataclass(frozen=True)
class ToolLabels:
    """What a tool delivered for one image.

    mask      : (H, W) uint8 train ids, IGNORE_INDEX where nothing was labelled
    instances : (H, W) int32, ids >= INSTANCE_BASE on the pixels of each delivered object
                instance (None when the format carries no instances)
    """

    image_id: str
    mask: np.ndarray
    instances: np.ndarray | None = None


def train_id_of(name: str, *, source: str) -> int:
    """Train id of a class name through the official table (void names give 255).

    Unknown names are refused by name; the guide label and 'background' mean unlabelled.
    """
    key = name.strip().lower()
    if key in UNLABELLED_NAMES:
        return IGNORE_INDEX
    label = LABEL_BY_NAME.get(key)
    if label is None:
        known = ", ".join(TRAIN_CLASS_NAMES)
        raise ValueError(
            f"{source}: unknown class name {name!r} (not in the Cityscapes label table; "
            f"the evaluated classes are: {known})"
        )
    return label.train_id


def image_id_of(file_name: str) -> str:
    """'frankfurt/x_000001_leftImg8bit.png' -> 'x_000001' (folder, extension, suffix dropped)."""
    stem = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem.split("?", 1)[0]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    for suffix in IMAGE_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def class_colours() -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of the 19 evaluated classes, in train-id order."""
    return [(name, LABEL_BY_NAME[name].color) for name in TRAIN_CLASS_NAMES]


def add_instance(instances: np.ndarray, pixels: np.ndarray, next_id: int) -> int:
    """Mark ``pixels`` (where no earlier instance is) as instance ``next_id``; the next id."""
    instances[pixels & (instances == 0)] = next_id
    return next_id + 1


def paint(mask: np.ndarray, pixels: np.ndarray, train_id: int, *, source: str) -> None:
    """Set ``pixels`` of ``mask`` to ``train_id``; two classes on one pixel is an error."""
    clash = pixels & (mask != IGNORE_INDEX) & (mask != train_id)
    if train_id != IGNORE_INDEX and clash.any():
        y, x = np.argwhere(clash)[0]
        raise ValueError(
            f"{source}: pixel (x={x}, y={y}) is labelled both {TRAIN_CLASS_NAMES[mask[y, x]]!r} "
            f"and {TRAIN_CLASS_NAMES[train_id]!r}; resolve the overlap in the tool"
        )
    if train_id != IGNORE_INDEX:
        mask[pixels] = train_id


def read_source(url: str) -> bytes:
    """Bytes of a file at a path or URL, or a clear error naming it."""
    if not storage.exists(url):
        raise FileNotFoundError(f"{url}: no such file or folder")
    return storage.read_bytes(url)


def read_json_source(url: str) -> Any:
    """A tool's JSON export at a path or URL, or a clear error naming it."""
    try:
        return json.loads(read_source(url))
    except json.JSONDecodeError as err:
        raise ValueError(f"{url}: not JSON ({err})") from err


class Archive:
    """A folder or a .zip (path or URL), read the same way: names relative to its root."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._zip: zipfile.ZipFile | None = None
        if not storage.exists(url):
            raise FileNotFoundError(f"{url}: no such file or folder")
        if not storage.isdir(url):
            try:
                self._zip = zipfile.ZipFile(io.BytesIO(storage.read_bytes(url)))
            except zipfile.BadZipFile as err:
                raise ValueError(f"{url}: not a zip archive or a folder ({err})") from err

    def names(self) -> list[str]:
        if self._zip is not None:
            return sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        fs, root = storage.filesystem(self.url)
        root = root.rstrip("/")
        return sorted(p[len(root) + 1 :] for p in fs.find(root))

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return storage.read_bytes(storage.join(self.url, *name.split("/")))

    def where(self, name: str) -> str:
        return f"{self.url}:{name}" if self._zip is not None else storage.join(self.url, name)


def write_zip(url: str, files: Iterable[tuple[str, bytes]]) -> None:
    """A zip archive of (name, bytes), written atomically."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    storage.write_bytes(url, buf.getvalue())


# ----------------------------------------------------------------------------- inbox

INBOX_FORMAT = "alseg-inbox/1"


def write_inbox(directory: str, labels: Mapping[str, ToolLabels], *, meta: dict) -> None:
    """``<image_id>.png`` train ids, ``instances/<image_id>.png`` (16-bit) and import.json;
    the folder appears whole or not at all."""
    with storage.output_dir(directory) as target:
        for image_id, item in sorted(labels.items()):
            storage.write_png(storage.join(target, f"{image_id}.png"), item.mask)
            if item.instances is not None:
                storage.write_png(
                    storage.join(target, "instances", f"{image_id}.png"),
                    item.instances.astype(np.int32),
                )
        storage.write_json(storage.join(target, "import.json"), {"format": INBOX_FORMAT, **meta})


def read_inbox_instances(directory: str, image_id: str) -> np.ndarray | None:
    """The instance map an import wrote for ``image_id`` (None when there is none)."""
    url = storage.join(directory, "instances", f"{image_id}.png")
    if not storage.exists(url):
        return None
    inst = storage.read_image(url)
    if inst.ndim != 2:
        raise ValueError(f"{url}: expected a single-channel instance map, got {inst.shape}")
    return inst.astype(np.int32)
