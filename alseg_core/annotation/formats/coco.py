"""COCO: the guide (and predictions) out as RLE annotations, COCO JSON back.

Export: ``images`` (file name, size, the alseg image id), ``categories`` (the 19 classes
with id = train id + 1, and the guide), ``annotations`` (per image, the requested regions
as one RLE annotation of the guide category; with predictions, one RLE per predicted
class inside them).

Import: RLE (compressed or not) and polygon segmentations through pycocotools; category
names through the official table; a non-crowd annotation of a thing class is one object
instance.
"""

from __future__ import annotations

import numpy as np

from alseg_core.annotation.formats.common import (
    GUIDE_LABEL,
    INSTANCE_BASE,
    ExportItem,
    ToolLabels,
    add_instance,
    image_id_of,
    paint,
    read_json_source,
    train_id_of,
)
from alseg_core.datasets.labels import THING_TRAIN_IDS, TRAIN_CLASS_NAMES
from alseg_core.types import IGNORE_INDEX

GUIDE_CATEGORY = 100


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE ({'size': [H, W], 'counts': str})."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def export_coco(items: list[ExportItem]) -> dict:
    categories = [{"id": t + 1, "name": n, "supercategory": "cityscapes"}
                  for t, n in enumerate(TRAIN_CLASS_NAMES)]  # fmt: skip
    categories.append({"id": GUIDE_CATEGORY, "name": GUIDE_LABEL, "supercategory": "alseg"})
    images, annotations = [], []
    for n, item in enumerate(sorted(items, key=lambda i: (-i.score, i.image_id)), 1):
        height, width = item.shape
        images.append({
            "id": n, "file_name": item.image_url.replace("\\", "/").rsplit("/", 1)[-1],
            "coco_url": item.image_url, "height": height, "width": width,
            "alseg": {"image_id": item.image_id, "round": item.round, "score": item.score,
                      "regions": list(item.regions), "estimated_cost": item.est_cost,
                      "request_id": item.request_id},
        })  # fmt: skip
        parts = [(GUIDE_CATEGORY, item.area)]
        if item.prediction is not None:
            classes = np.unique(item.prediction[item.area])
            parts += [(int(c) + 1, item.area & (item.prediction == c))
                      for c in classes if c < len(TRAIN_CLASS_NAMES)]  # fmt: skip
        for category, pixels in parts:
            annotations.append({
                "id": len(annotations) + 1, "image_id": n, "category_id": category,
                "segmentation": encode_rle(pixels), "area": int(pixels.sum()),
                "bbox": _bbox(pixels), "iscrowd": 1,
            })  # fmt: skip
    return {"info": {"description": "alseg label request"}, "images": images,
            "categories": categories, "annotations": annotations}  # fmt: skip


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if not xs.size:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]  # fmt: skip


def decode_segmentation(seg, height: int, width: int, *, source: str) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [[float(v) for v in p] for p in seg]
        if not polys or any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError(f"{source}: a polygon needs 3 or more (x, y) points")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and "counts" in seg:
        size = [int(v) for v in seg.get("size") or []]
        if size != [height, width]:
            raise ValueError(
                f"{source}: RLE size {size} differs from the image's [{height}, {width}]"
            )
        if isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": size, "counts": str(seg["counts"]).encode("ascii")}
    else:
        raise ValueError(f"{source}: segmentation is neither polygons nor RLE")
    return mask_utils.decode(rle).astype(bool)


def import_coco(
    url: str, shapes: dict[str, tuple[int, int]], *, request_id: str | None = None
) -> dict[str, ToolLabels]:
    """Read a COCO JSON file (path or URL)."""
    data = read_json_source(url)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{url}: no '{key}' list (not a COCO JSON file)")
    classes = {c["id"]: train_id_of(str(c["name"]), source=f"{url}: category {c['id']}")
               for c in data["categories"]}  # fmt: skip
    images: dict[int, tuple[str, tuple[int, int]]] = {}
    out: dict[str, ToolLabels] = {}
    for img in data["images"]:
        ours = img.get("alseg") or {}
        image_id = ours.get("image_id") or image_id_of(str(img["file_name"]))
        where = f"{url}: image {img.get('id')} ({img.get('file_name')})"
        if request_id and ours.get("request_id") and ours["request_id"] != request_id:
            raise ValueError(
                f"{where}: belongs to request {ours['request_id']!r}, not {request_id!r} "
                "(an export of another round?)"
            )
        if image_id not in shapes:
            raise ValueError(f"{where}: image id {image_id!r} is not in the request")
        shape = (int(img["height"]), int(img["width"]))
        if shape != shapes[image_id]:
            raise ValueError(
                f"{where}: size {shape[1]}x{shape[0]} differs from image {image_id} size "
                f"{shapes[image_id][1]}x{shapes[image_id][0]}"
            )
        images[img["id"]] = (image_id, shape)
    masks = {i: np.full(s, IGNORE_INDEX, np.uint8) for i, s in images.values()}
    instances = {i: np.zeros(s, np.int32) for i, s in images.values()}
    next_id = dict.fromkeys(masks, INSTANCE_BASE)
    for ann in data["annotations"]:
        where = f"{url}: annotation {ann.get('id')}"
        if ann.get("image_id") not in images:
            raise ValueError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in classes:
            raise ValueError(
                f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'"
            )
        image_id, (height, width) = images[ann["image_id"]]
        train_id = classes[ann["category_id"]]
        if train_id == IGNORE_INDEX:
            continue
        pixels = decode_segmentation(ann.get("segmentation"), height, width, source=where)
        paint(masks[image_id], pixels, train_id, source=where)
        if train_id in THING_TRAIN_IDS and not ann.get("iscrowd"):
            next_id[image_id] = add_instance(instances[image_id], pixels, next_id[image_id])
    for image_id in masks:
        out[image_id] = ToolLabels(image_id, masks[image_id], instances[image_id])
    return out
