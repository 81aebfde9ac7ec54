"""Label Studio: tasks with brush-RLE pre-annotations out, the JSON export back.

Export: ``tasks.json`` (one task per requested image, ordered by score, highest first,
so the tool's default order follows the selection) and ``labeling_config.xml``. Each
task's ``data`` holds the image URL, the image id, the round, the region ids, the score
and the estimated cost; its ``predictions`` hold the requested regions as a class-free
guide (label "requested region" of the ``guide`` brush) and, optionally, the model's
classes inside them as ``tag`` brushes for the annotator to correct.

Import: Label Studio's JSON export (a list of tasks with ``annotations``). Brush results
(``format: rle``) and polygon results (points in percent of the image size) are read;
a thing-class result is one object instance. The guide label is never a class.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import numpy as np

from alseg_core.annotation.formats.brush_rle import mask_to_rle, rle_to_mask
from alseg_core.annotation.formats.common import (
    GUIDE_LABEL,
    INSTANCE_BASE,
    ExportItem,
    ToolLabels,
    add_instance,
    class_colours,
    image_id_of,
    paint,
    read_json_source,
    train_id_of,
)
from alseg_core.annotation.formats.polygons import rasterise_polygon
from alseg_core.datasets.labels import THING_TRAIN_IDS, TRAIN_CLASS_NAMES
from alseg_core.types import IGNORE_INDEX

CLASS_CONTROL = "tag"
POLYGON_CONTROL = "polygon"
GUIDE_CONTROL = "guide"
IMAGE_NAME = "image"


def labeling_config() -> str:
    """The labelling interface: 19 Cityscapes classes as brush and polygon labels + guide."""
    labels = "\n".join(
        f'    <Label value={quoteattr(name)} background="#{r:02x}{g:02x}{b:02x}"/>'
        for name, (r, g, b) in class_colours()
    )
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <Header value="Round $round, score $score: label every object that touches '
        f'the requested regions"/>\n'
        f'  <BrushLabels name="{CLASS_CONTROL}" toName="{IMAGE_NAME}">\n{labels}\n'
        "  </BrushLabels>\n"
        f'  <PolygonLabels name="{POLYGON_CONTROL}" toName="{IMAGE_NAME}">\n{labels}\n'
        "  </PolygonLabels>\n"
        f'  <BrushLabels name="{GUIDE_CONTROL}" toName="{IMAGE_NAME}">\n'
        f'    <Label value="{GUIDE_LABEL}" background="#ffffff"/>\n'
        "  </BrushLabels>\n"
        "</View>\n"
    )


def brush_result(mask: np.ndarray, label: str, control: str, result_id: str) -> dict:
    height, width = mask.shape
    return {
        "id": result_id,
        "type": "brushlabels",
        "from_name": control,
        "to_name": IMAGE_NAME,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
    }


def export_tasks(items: list[ExportItem]) -> list[dict]:
    """Label Studio tasks (with predictions) for ``items``, highest score first."""
    tasks = []
    for item in sorted(items, key=lambda i: (-i.score, i.image_id)):
        result = [brush_result(item.area, GUIDE_LABEL, GUIDE_CONTROL, f"{item.image_id}-guide")]
        if item.prediction is not None:
            for cls in np.unique(item.prediction[item.area]).tolist():
                if cls >= len(TRAIN_CLASS_NAMES):
                    continue
                pixels = item.area & (item.prediction == cls)
                result.append(brush_result(
                    pixels, TRAIN_CLASS_NAMES[cls], CLASS_CONTROL, f"{item.image_id}-c{cls}"
                ))  # fmt: skip
        tasks.append(
            {
                "data": {
                    "image": item.image_url,
                    "image_id": item.image_id,
                    "request_id": item.request_id,
                    "round": item.round,
                    "regions": list(item.regions),
                    "score": round(float(item.score), 6),
                    "estimated_cost": int(item.est_cost),
                },
                "predictions": [
                    {
                        "model_version": f"alseg-{item.request_id}",
                        "score": float(item.score),
                        "result": result,
                    }
                ],  # fmt: skip
            }
        )
    return tasks


def _task_image_id(task: dict, where: str) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError(f"{where}: task has no 'data' object (not a Label Studio JSON export?)")
    if data.get("image_id"):
        return str(data["image_id"])
    if data.get("image"):
        return image_id_of(str(data["image"]))
    raise ValueError(f"{where}: task data names no image ('image' or 'image_id')")


def _annotation(task: dict, where: str) -> dict | None:
    """The task's latest annotation that was not cancelled (None when there is none)."""
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (str(a.get("updated_at") or ""), done.index(a)))


def _result_size(result: dict, where: str) -> tuple[int, int]:
    try:
        return int(result["original_height"]), int(result["original_width"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: result lacks original_width/original_height") from err


def _labels_of(value: dict, kind: str) -> list[str]:
    key = {"brushlabels": "brushlabels", "polygonlabels": "polygonlabels"}[kind]
    return list(value.get(key) or value.get("labels") or [])


def import_labels(
    url: str, shapes: dict[str, tuple[int, int]], *, request_id: str | None = None
) -> dict[str, ToolLabels]:
    """Read a Label Studio JSON export; ``shapes`` gives each requested image's (H, W)."""
    tasks = read_json_source(url)
    if isinstance(tasks, dict) and "data" in tasks:
        tasks = [tasks]  # one task exported on its own
    if not isinstance(tasks, list):
        hint = " (it looks like COCO JSON: use --format coco)" if "images" in tasks else ""
        raise ValueError(f"{url}: expected a list of tasks (Label Studio's JSON export){hint}")
    out: dict[str, ToolLabels] = {}
    for n, task in enumerate(tasks):
        where = f"{url}: task {task.get('id', n)}"
        image_id = _task_image_id(task, where)
        answered = task["data"].get("request_id")
        if request_id and answered and answered != request_id:
            raise ValueError(
                f"{where}: the task belongs to request {answered!r}, not {request_id!r} "
                "(an export of another round?)"
            )
        if image_id not in shapes:
            raise ValueError(f"{where}: image id {image_id!r} is not in the request")
        if image_id in out:
            raise ValueError(f"{where}: image {image_id!r} appears in two tasks")
        annotation = _annotation(task, where)
        if annotation is None:
            continue  # not labelled yet: the delivery check reports it as missing
        shape = shapes[image_id]
        mask = np.full(shape, IGNORE_INDEX, np.uint8)
        instances = np.zeros(shape, np.int32)
        next_id = INSTANCE_BASE
        for r, result in enumerate(annotation.get("result") or []):
            kind = result.get("type")
            if kind not in ("brushlabels", "polygonlabels"):
                continue  # relations, text areas, choices: not labels
            rwhere = f"{where}, result {result.get('id', r)}"
            value = result.get("value") or {}
            names = _labels_of(value, kind)
            if len(names) != 1:
                raise ValueError(f"{rwhere}: expected one class label, got {names}")
            train_id = train_id_of(names[0], source=rwhere)
            if result.get("from_name") == GUIDE_CONTROL or train_id == IGNORE_INDEX:
                continue
            height, width = _result_size(result, rwhere)
            if (height, width) != shape:
                raise ValueError(
                    f"{rwhere}: drawn on a {width}x{height} image, but image {image_id} is "
                    f"{shape[1]}x{shape[0]}"
                )
            if kind == "brushlabels":
                if value.get("format", "rle") != "rle" or "rle" not in value:
                    raise ValueError(f"{rwhere}: brush result without RLE data")
                pixels = rle_to_mask(value["rle"], height, width, source=rwhere)
            else:
                points = [(float(x) * width / 100, float(y) * height / 100)
                          for x, y in value.get("points") or []]  # fmt: skip
                pixels = rasterise_polygon(points, shape, source=rwhere)
            paint(mask, pixels, train_id, source=rwhere)
            if train_id in THING_TRAIN_IDS:
                next_id = add_instance(instances, pixels, next_id)
        out[image_id] = ToolLabels(image_id, mask, instances)
    return out
