"""Interchange with annotation tools: requests out, deliveries back.

Export (``alseg export``) writes, per requested image, what a tool imports as a task and
as pre-annotations: the requested regions as a class-free guide and, as an option, the
model's predicted classes inside them for the annotator to correct.

- ``label-studio``: tasks JSON (brush RLE predictions) + labelling config
- ``cvat``: a "Segmentation mask 1.1" archive (palette PNGs + labelmap.txt)
- ``coco``: COCO JSON with the guide (and predictions) as RLE annotations

Import (``alseg import``) reads what the tool exports and writes an alseg inbox (train
id masks, instance maps where the format has instances) that the annotate step validates
and merges like any delivery:

- ``label-studio``: Label Studio JSON export (brush RLE and polygons)
- ``cvat-mask``: CVAT "Segmentation mask 1.1" archive
- ``cityscapes``: CVAT "Cityscapes 1.0" archive (or any gtFine-style folder)
- ``coco``: COCO JSON (RLE and polygons)
"""

from alseg_core.annotation.formats.common import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    ExportItem,
    ToolLabels,
    read_inbox_instances,
    write_inbox,
)
from alseg_core.annotation.formats.dispatch import export_request, import_delivery

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "ExportItem",
    "ToolLabels",
    "export_request",
    "import_delivery",
    "read_inbox_instances",
    "write_inbox",
]
