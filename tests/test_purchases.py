"""bench/purchases.py on a hand-made run folder: class shares, cost, pixels per cost."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from alseg_core.labels import ImageLabels, LabelState, write_labelled_set

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("purchases", REPO_ROOT / "bench" / "purchases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_a_round_s_purchases_by_class(tmp_path):
    work = tmp_path / "work"
    run = work / "runs" / "superpixel-random-s0"
    # the pool: one image, label ids 7 (road) on the top half, 23 (sky) on the bottom
    label_ids = np.full((4, 4), 7)
    label_ids[2:] = 23
    label = _png(tmp_path / "gt" / "a_gtFine_labelIds.png", label_ids)
    pool = {"pool": [{"image_id": "a", "city": "x", "image_url": "a.png", "label_url": label,
                      "instance_url": None}]}  # fmt: skip
    run.mkdir(parents=True)
    (run / "pool.json").write_text(json.dumps(pool))
    # round 1 delivered 6 road pixels (train id 0) and 2 sky (10); the rest unlabelled
    delivered = np.full((4, 4), 255)
    delivered[0, :] = 0
    delivered[1, :2] = 0
    delivered[3, :2] = 10
    _png(run / "r1" / "delivery" / "a.png", delivered)
    from alseg_core.datasets.labels import TRAIN_CLASS_NAMES

    iou = {name: 0.5 for name in TRAIN_CLASS_NAMES}
    iou["pole"] = None  # a class absent from val
    (run / "r1" / "metrics.json").write_text(json.dumps({"mIoU": 0.25, "per_class_IoU": iou}))
    write_labelled_set(str(run / "r0" / "labelled"), LabelState(), {})
    # it revealed two road components and one car (label id 26 -> train id 13)
    keys = frozenset({"s0_0", "s0_1", "i26000"})
    state = LabelState().merged("d1", 1, 4, [ImageLabels("a", frozenset({0, 1}), False, keys)])
    write_labelled_set(str(run / "r1" / "labelled"), state, {"a": delivered})

    out = tmp_path / "p.md"
    ceilings = []
    for k, value in enumerate((0.6, 0.8)):  # two ceiling checkpoints: road 0.6, 0.8
        ceilings.append(tmp_path / f"ceiling{k}.json")
        per_class = {**iou, "road": value}
        ceilings[-1].write_text(json.dumps({"mIoU": value / 2, "per_class_IoU": per_class}))
    argv = ["--work", str(work), "--out", str(out), "--ceilings", *map(str, ceilings)]
    assert _load().main(argv) == 0
    text = out.read_text()
    pool_row = next(line for line in text.splitlines() if line.startswith("| pool |"))
    cells = [c.strip() for c in pool_row.strip("|").split("|")]
    assert cells[7] == "50.0" and cells[7 + 10] == "50.0"  # road, sky: half the pool each
    pixel_row, instance_row = (
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines() if line.startswith("| superpixel | random | 1 | 1 |")
    )  # fmt: skip
    # seeds 1, images 1, cost 4, 8 labelled pixels / 4 cost units, road 6/8, sky 2/8
    assert pixel_row[3:7] == ["1", "1", "4", "2"]
    assert pixel_row[7] == "75.0" and pixel_row[7 + 10] == "25.0"
    # the cost by class: 2 of the 3 new instances road, 1 car
    assert instance_row[7] == "66.7" and instance_row[7 + 13] == "33.3"
    assert instance_row[7 + 10] == "0.0"
    # val IoU by class under the ceilings' mean (road first; pole absent counts 0)
    assert "| ceiling | - | - | 0.3500 | 0.70 | 0.50 |" in text
    assert "| superpixel | random | 1 | 0.2500 | 0.50 | 0.50 |" in text
    iou_row = next(
        line for line in text.splitlines() if line.startswith("| superpixel | random | 1 | 0.25")
    )
    assert iou_row.strip("|").split("|")[4 + 5].strip() == "0.00"  # pole
