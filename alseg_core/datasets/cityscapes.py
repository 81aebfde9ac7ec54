"""Reader for the Cityscapes directory layout, from a local path or an fsspec URL.

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

The image id is ``<city>_<seq>_<frame>``, unique within a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alseg_core import storage
from alseg_core.datasets.labels import label_ids_to_train_ids

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


@dataclass(frozen=True)
class Sample:
    """One image of a split and the URLs of its files."""

    image_id: str
    city: str
    image_url: str
    label_url: str | None
    instance_url: str | None


def image_url(root: str, split: str, city: str, image_id: str) -> str:
    return storage.join(root, "leftImg8bit", split, city, image_id + IMAGE_SUFFIX)


def label_url(root: str, split: str, city: str, image_id: str) -> str:
    return storage.join(root, "gtFine", split, city, image_id + LABEL_SUFFIX)


def instance_url(root: str, split: str, city: str, image_id: str) -> str:
    return storage.join(root, "gtFine", split, city, image_id + INSTANCE_SUFFIX)


def list_samples(root: str, split: str, *, require_labels: bool = True) -> list[Sample]:
    """All samples of ``split`` under ``root``, sorted by image id.

    Raises FileNotFoundError when the root or split is missing or holds no image, and
    ValueError naming the image when ``require_labels`` and its label file is missing.
    """
    if not storage.exists(root):
        raise FileNotFoundError(f"dataset root {root!r} does not exist")
    if not storage.isdir(root):
        raise FileNotFoundError(f"{root}: dataset root is not a folder")
    root = storage.normalize(root)
    split_dir = storage.join(root, "leftImg8bit", split)
    if not storage.isdir(split_dir):
        raise FileNotFoundError(
            f"{split_dir}: split {split!r} not found (expected "
            f"leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX} under {root})"
        )
    image_urls = storage.glob(storage.join(split_dir, "*", "*" + IMAGE_SUFFIX))
    if not image_urls:
        raise FileNotFoundError(f"{split_dir}: no *{IMAGE_SUFFIX} images in split {split!r}")
    label_dir = storage.join(root, "gtFine", split)
    labels = (
        set(storage.glob(storage.join(label_dir, "*", "*" + LABEL_SUFFIX)))
        if storage.isdir(label_dir)
        else set()
    )
    instances = (
        set(storage.glob(storage.join(label_dir, "*", "*" + INSTANCE_SUFFIX)))
        if storage.isdir(label_dir)
        else set()
    )
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for url in image_urls:
        city = url.replace("\\", "/").rstrip("/").split("/")[-2]
        image_id = url.replace("\\", "/").split("/")[-1][: -len(IMAGE_SUFFIX)]
        if image_id in seen:
            raise ValueError(f"{url}: image id {image_id!r} also used by {seen[image_id]}")
        seen[image_id] = url
        lab = label_url(root, split, city, image_id)
        inst = instance_url(root, split, city, image_id)
        if lab not in labels:
            if require_labels:
                raise ValueError(f"{url}: image has no label file (expected {lab})")
            lab = None
        samples.append(Sample(image_id, city, url, lab, inst if inst in instances else None))
    return sorted(samples, key=lambda s: s.image_id)


def read_image(sample: Sample) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of ``sample``."""
    return storage.read_rgb(sample.image_url)


def read_label(sample: Sample, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 train ids of ``sample`` (IGNORE_INDEX for void classes).

    ``shape`` is the (H, W) of the image; a label of another size is an error.
    """
    if sample.label_url is None:
        raise ValueError(f"{sample.image_url}: image has no label file")
    ids = storage.read_image(sample.label_url)
    _check_mask(ids, sample.label_url, shape)
    return label_ids_to_train_ids(ids, source=sample.label_url)


def read_instances(sample: Sample, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) int32 Cityscapes instance ids of ``sample``."""
    if sample.instance_url is None:
        raise ValueError(f"{sample.image_url}: image has no instanceIds file")
    inst = storage.read_image(sample.instance_url).astype(np.int32)
    _check_mask(inst, sample.instance_url, shape)
    return inst


def _check_mask(mask: np.ndarray, url: str, shape: tuple[int, int] | None) -> None:
    if mask.ndim != 2:
        raise ValueError(f"{url}: expected a single-channel label PNG, got shape {mask.shape}")
    if shape is not None and mask.shape != tuple(shape):
        raise ValueError(
            f"{url}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
            f"size {shape[1]}x{shape[0]}"
        )
