"""CVAT: "Segmentation mask 1.1" archives out and back, "Cityscapes 1.0" archives back.

Segmentation mask 1.1 (CVAT's Pascal-VOC-style mask format)::

    labelmap.txt                      # label:color_rgb:parts:actions
    ImageSets/Segmentation/default.txt
    SegmentationClass/<image>.png     # class masks, coloured by labelmap.txt
    SegmentationObject/<image>.png    # instance masks, one colour per object

Masks are palette PNGs whose colours are the labelmap's (RGB masks are read too): a
pixel's class is the label whose colour it has, so the reader maps colours, never
raw indices, through the archive's own labelmap.

Cityscapes 1.0::

    gtFine/<split>/<city>/<image>_gtFine_labelIds.png     # official label ids
    gtFine/<split>/<city>/<image>_gtFine_instanceIds.png  # label id x 1000 + k
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from alseg_core import storage
from alseg_core.annotation.formats.common import (
    GUIDE_LABEL,
    INSTANCE_BASE,
    Archive,
    ExportItem,
    ToolLabels,
    class_colours,
    image_id_of,
    train_id_of,
)
from alseg_core.datasets.labels import THING_TRAIN_IDS, label_ids_to_train_ids
from alseg_core.types import NUM_CLASSES

GUIDE_COLOUR = (255, 255, 255)


def encode_palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """(H, W) uint8 indices + (n, 3) uint8 colours -> a palette ('P') PNG."""
    img = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    flat = np.zeros((256, 3), np.uint8)
    flat[: len(palette)] = np.asarray(palette, np.uint8)[:256]
    img.putpalette(flat.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def labelmap() -> list[tuple[str, tuple[int, int, int]]]:
    """background, the 19 classes (train-id order), the guide: palette index = position."""
    return [("background", (0, 0, 0)), *class_colours(), (GUIDE_LABEL, GUIDE_COLOUR)]


def labelmap_text(entries: list[tuple[str, tuple[int, int, int]]]) -> str:
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in entries]
    return "\n".join(lines) + "\n"


def export_archive(items: list[ExportItem]) -> list[tuple[str, bytes]]:
    """The files of a Segmentation mask 1.1 archive holding the pre-annotations.

    Inside the requested regions: the model's class when a prediction is given, else the
    guide label; outside: background.
    """
    entries = labelmap()
    palette = np.array([c for _, c in entries], np.uint8)
    guide = len(entries) - 1
    files = [("labelmap.txt", labelmap_text(entries).encode())]
    names = []
    for item in sorted(items, key=lambda i: (-i.score, i.image_id)):
        stem = item.image_url.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        index = np.zeros(item.shape, np.uint8)
        if item.prediction is not None:
            pred = item.prediction.astype(np.int64)
            index[item.area] = np.where(pred[item.area] < NUM_CLASSES, pred[item.area] + 1, guide)
        else:
            index[item.area] = guide
        files.append((f"SegmentationClass/{stem}.png", encode_palette_png(index, palette)))
        names.append(stem)
    files.append(("ImageSets/Segmentation/default.txt", ("\n".join(names) + "\n").encode()))
    return files


def parse_labelmap(text: str, *, source: str) -> dict[tuple[int, int, int], int]:
    """colour -> train id of a labelmap.txt (unknown names refused by name)."""
    colours: dict[tuple[int, int, int], int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        try:
            rgb = tuple(int(v) for v in parts[1].split(","))
            assert len(rgb) == 3
        except (IndexError, ValueError, AssertionError) as err:
            raise ValueError(f"{source}, line {n}: expected 'name:r,g,b::', got {line!r}") from err
        colours[rgb] = train_id_of(parts[0], source=f"{source}, line {n}")
    return colours


def _colour_image(arch: Archive, name: str) -> np.ndarray:
    """(H, W, 3) colours of a mask PNG, palette or RGB."""
    where = arch.where(name)
    data = arch.read(name)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), np.uint8)
    except OSError as err:
        raise ValueError(f"{where}: not a readable image ({err})") from err


def _instances_of(colours: np.ndarray) -> np.ndarray:
    """(H, W) int32 object index (0 background) of a SegmentationObject image."""
    flat = colours.reshape(-1, 3).astype(np.int64)
    key = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inverse = np.unique(key, return_inverse=True)
    out = inverse.astype(np.int32) + 1
    background = np.flatnonzero(uniq == 0)
    if background.size:
        out[key == 0] = 0
    return out.reshape(colours.shape[:2])


def import_mask_archive(url: str, shapes: dict[str, tuple[int, int]]) -> dict[str, ToolLabels]:
    """Read a Segmentation mask 1.1 archive (zip or folder)."""
    arch = Archive(url)
    names = arch.names()
    if "labelmap.txt" not in names:
        raise ValueError(f"{url}: no labelmap.txt (not a CVAT Segmentation mask 1.1 archive)")
    colours = parse_labelmap(arch.read("labelmap.txt").decode(), source=arch.where("labelmap.txt"))
    out: dict[str, ToolLabels] = {}
    for name in names:
        if not (name.startswith("SegmentationClass/") and name.endswith(".png")):
            continue
        where = arch.where(name)
        image_id = image_id_of(name)
        if image_id not in shapes:
            raise ValueError(f"{where}: image id {image_id!r} is not in the request")
        rgb = _colour_image(arch, name)
        if rgb.shape[:2] != shapes[image_id]:
            h, w = shapes[image_id]
            raise ValueError(
                f"{where}: mask size {rgb.shape[1]}x{rgb.shape[0]} differs from image "
                f"{image_id} size {w}x{h}"
            )
        flat = rgb.reshape(-1, 3)
        uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
        lut = np.empty(len(uniq), np.uint8)
        for n, colour in enumerate(map(tuple, uniq.tolist())):
            if colour not in colours:
                raise ValueError(
                    f"{where}: colour {colour} is not a label of labelmap.txt "
                    f"(known: {sorted(colours)[:5]}...)"
                )
            lut[n] = colours[colour]
        mask = lut[inverse.ravel()].reshape(rgb.shape[:2])
        instances = None
        obj = name.replace("SegmentationClass/", "SegmentationObject/", 1)
        if obj in names:
            index = _instances_of(_colour_image(arch, obj))
            thing = np.isin(mask, list(THING_TRAIN_IDS)) & (index > 0)
            instances = np.where(thing, index + INSTANCE_BASE - 1, 0).astype(np.int32)
        out[image_id] = ToolLabels(image_id, mask, instances)
    if not out:
        raise ValueError(f"{url}: no SegmentationClass/*.png masks in the archive")
    return out


def import_cityscapes_archive(
    url: str, shapes: dict[str, tuple[int, int]]
) -> dict[str, ToolLabels]:
    """Read a Cityscapes 1.0 archive: ``*_gtFine_labelIds.png`` (+ ``_instanceIds``)."""
    arch = Archive(url)
    names = arch.names()
    out: dict[str, ToolLabels] = {}
    for name in names:
        if not name.endswith("_gtFine_labelIds.png"):
            continue
        where = arch.where(name)
        image_id = image_id_of(name)
        if image_id not in shapes:
            raise ValueError(f"{where}: image id {image_id!r} is not in the request")
        ids = storage.decode_png(arch.read(name), source=where)
        if ids.ndim != 2 or ids.shape != shapes[image_id]:
            h, w = shapes[image_id]
            raise ValueError(
                f"{where}: expected a {w}x{h} single-channel label PNG, got {ids.shape}"
            )
        mask = label_ids_to_train_ids(ids, source=where)
        instances = None
        inst_name = name.replace("_gtFine_labelIds.png", "_gtFine_instanceIds.png")
        if inst_name in names:
            inst = storage.decode_png(arch.read(inst_name), source=arch.where(inst_name))
            if inst.shape != mask.shape:
                raise ValueError(f"{arch.where(inst_name)}: size differs from {where}")
            instances = np.where(inst >= 1000, inst, 0).astype(np.int32)
        out[image_id] = ToolLabels(image_id, mask.astype(np.uint8), instances)
    if not out:
        raise ValueError(f"{url}: no gtFine/**/*_gtFine_labelIds.png in the archive")
    return out
