"""The official Cityscapes label table (cityscapesScripts ``helpers/labels.py``).

Only the fields alseg needs are kept: name, label id, train id, whether the class
has instances, and the colour used for visualisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alseg_core.types import IGNORE_INDEX, NUM_CLASSES


@dataclass(frozen=True)
class Label:
    name: str
    id: int
    train_id: int
    has_instances: bool
    color: tuple[int, int, int]


# fmt: off
LABELS: tuple[Label, ...] = (
    Label("unlabeled",             0, 255, False, (0, 0, 0)),
    Label("ego vehicle",           1, 255, False, (0, 0, 0)),
    Label("rectification border",  2, 255, False, (0, 0, 0)),
    Label("out of roi",            3, 255, False, (0, 0, 0)),
    Label("static",                4, 255, False, (0, 0, 0)),
    Label("dynamic",               5, 255, False, (111, 74, 0)),
    Label("ground",                6, 255, False, (81, 0, 81)),
    Label("road",                  7,   0, False, (128, 64, 128)),
    Label("sidewalk",              8,   1, False, (244, 35, 232)),
    Label("parking",               9, 255, False, (250, 170, 160)),
    Label("rail track",           10, 255, False, (230, 150, 140)),
    Label("building",             11,   2, False, (70, 70, 70)),
    Label("wall",                 12,   3, False, (102, 102, 156)),
    Label("fence",                13,   4, False, (190, 153, 153)),
    Label("guard rail",           14, 255, False, (180, 165, 180)),
    Label("bridge",               15, 255, False, (150, 100, 100)),
    Label("tunnel",               16, 255, False, (150, 120, 90)),
    Label("pole",                 17,   5, False, (153, 153, 153)),
    Label("polegroup",            18, 255, False, (153, 153, 153)),
    Label("traffic light",        19,   6, False, (250, 170, 30)),
    Label("traffic sign",         20,   7, False, (220, 220, 0)),
    Label("vegetation",           21,   8, False, (107, 142, 35)),
    Label("terrain",              22,   9, False, (152, 251, 152)),
    Label("sky",                  23,  10, False, (70, 130, 180)),
    Label("person",               24,  11, True,  (220, 20, 60)),
    Label("rider",                25,  12, True,  (255, 0, 0)),
    Label("car",                  26,  13, True,  (0, 0, 142)),
    Label("truck",                27,  14, True,  (0, 0, 70)),
    Label("bus",                  28,  15, True,  (0, 60, 100)),
    Label("caravan",              29, 255, True,  (0, 0, 90)),
    Label("trailer",              30, 255, True,  (0, 0, 110)),
    Label("train",                31,  16, True,  (0, 80, 100)),
    Label("motorcycle",           32,  17, True,  (0, 0, 230)),
    Label("bicycle",              33,  18, True,  (119, 11, 32)),
    # 'license plate' has id -1 in the official table and never appears in labelIds PNGs.
)
# fmt: on

MAX_LABEL_ID: int = max(label.id for label in LABELS)

#: Names of the 19 evaluated classes, indexed by train id.
TRAIN_CLASS_NAMES: tuple[str, ...] = tuple(
    label.name for label in sorted(LABELS, key=lambda lab: lab.train_id) if label.train_id < 255
)
assert len(TRAIN_CLASS_NAMES) == NUM_CLASSES

LABEL_BY_NAME: dict[str, Label] = {label.name: label for label in LABELS}


def _build_id_to_train_id() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in LABELS:
        lut[label.id] = label.train_id
    return lut


def _build_train_id_to_id() -> np.ndarray:
    # Ignore maps to 0 ('unlabeled') so a results PNG never holds a train id.
    lut = np.zeros(256, dtype=np.uint8)
    for label in LABELS:
        if label.train_id < NUM_CLASSES:
            lut[label.train_id] = label.id
    return lut


ID_TO_TRAIN_ID: np.ndarray = _build_id_to_train_id()
TRAIN_ID_TO_ID: np.ndarray = _build_train_id_to_id()
#: train ids whose classes carry instance ids ("things").
THING_TRAIN_IDS: frozenset[int] = frozenset(
    label.train_id for label in LABELS if label.has_instances and label.train_id < 255
)


def label_ids_to_train_ids(label_ids: np.ndarray, *, source: str = "label map") -> np.ndarray:
    """Map Cityscapes label ids to train ids exactly as the official table does.

    label_ids : (H, W) integer array of label ids in 0..33.
    Returns (H, W) uint8 train ids, IGNORE_INDEX for void classes.
    Raises ValueError naming ``source`` when an id is not in the table.
    """
    ids = np.asarray(label_ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_LABEL_ID):
        bad = sorted({int(v) for v in np.unique(ids) if v < 0 or v > MAX_LABEL_ID})
        raise ValueError(
            f"{source}: label ids {bad[:10]} are outside the Cityscapes label table "
            f"(expected 0..{MAX_LABEL_ID})"
        )
    return ID_TO_TRAIN_ID[ids.astype(np.int64)]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) train ids -> (H, W) uint8 label ids (ignore becomes 0, 'unlabeled')."""
    return TRAIN_ID_TO_ID[np.asarray(train_ids).astype(np.int64)]
