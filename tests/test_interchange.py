"""Interchange with annotation tools: export a request, fill it as the tool would, import.

Each round trip builds the tool's own export from ground truth, following the tool's
documented schema (Label Studio JSON with brush RLE, a CVAT "Segmentation mask 1.1"
archive with palette PNGs, a CVAT "Cityscapes 1.0" archive, COCO JSON with RLE), for
exactly what the simulated oracle reveals for the same regions; importing it must give
the oracle's labelled set and charge the oracle's cost. The labelled set before the round
already holds labels the requested regions touch, which are not charged again.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alseg_core import storage
from alseg_core.annotation import make_request, merge_delivery, oracle_answer, write_request
from alseg_core.annotation.formats.brush_rle import decode, encode, mask_to_rle, rle_to_mask
from alseg_core.annotation.formats.coco import encode_rle
from alseg_core.annotation.formats.polygons import rasterise_polygon
from alseg_core.annotation.requests import RequestItem
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import (
    LABEL_BY_NAME,
    TRAIN_CLASS_NAMES,
    train_ids_to_label_ids,
)
from alseg_core.labels import load_state, read_mask
from alseg_core.pipeline.pool import Pool
from alseg_core.pipeline.steps.annotate import annotate_step
from alseg_core.pipeline.steps.interchange import export_step, import_step
from alseg_core.pipeline.steps.merge import merge_step
from alseg_core.superpixels import SuperpixelParams, SuperpixelStore
from alseg_core.types import IGNORE_INDEX


@pytest.fixture(scope="module")
def world(synthetic_root, tmp_path_factory):
    """Pool, store, a labelled set after an oracle round, and a round-1 request."""
    base = tmp_path_factory.mktemp("interchange")
    pool = Pool.list(str(synthetic_root), "train", "val")
    store = SuperpixelStore(str(base / "sp"), SuperpixelParams(n_regions=30, compactness=0.02))
    ids = sorted(pool.samples)[:4]
    store.update([(i, pool.samples[i].image_url) for i in ids], workers=1)
    maps = {i: store.read(i) for i in ids}
    # Round 0: the oracle labels regions 0..5 of the first image.
    r0 = make_request(0, "superpixel", "x", [RequestItem(ids[0], tuple(range(6)), False, 1.0, 5)],
                      store.fingerprint())  # fmt: skip
    write_request(str(base / "r0-request"), r0, region_maps=maps)
    merge_delivery(
        None, oracle_answer(r0, pool.samples, maps, load_state(None)), str(base / "labelled0")
    )
    # Round 1: more regions of the first image (touching what round 0 labelled), regions
    # of two more, and one whole image.
    items = [
        RequestItem(ids[0], tuple(range(6, 14)), False, 0.9, 7),
        RequestItem(ids[1], tuple(range(0, 30, 3)), False, 0.7, 9),
        RequestItem(ids[2], (4, 5, 17), False, 0.5, 3),
        RequestItem(ids[3], (), True, 0.3, 20),
    ]
    r1 = make_request(1, "superpixel", "x", items, store.fingerprint())
    write_request(str(base / "request"), r1, region_maps=maps)
    labelled0 = str(base / "labelled0")
    oracle = oracle_answer(r1, pool.samples, maps, load_state(labelled0))
    merge_delivery(labelled0, oracle, str(base / "labelled-oracle"))
    return {"base": base, "pool": pool, "store": store, "request": r1, "maps": maps,
            "labelled0": labelled0, "oracle": oracle}  # fmt: skip


def _revealed(world, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's revealed train ids and the ground-truth instance ids under them."""
    img = next(i for i in world["oracle"].images if i.labels.image_id == image_id)
    inst = cityscapes.read_instances(world["pool"].samples[image_id])
    return img.mask, np.where(img.mask != IGNORE_INDEX, inst, 0)


def _objects(mask: np.ndarray, inst: np.ndarray) -> list[tuple[str, np.ndarray, bool]]:
    """(class name, pixels, is one object instance): things per instance, stuff per class."""
    out = []
    for value in np.unique(inst[inst >= 1000]):
        pixels = inst == value
        out.append((TRAIN_CLASS_NAMES[int(mask[pixels][0])], pixels, True))
    for cls in np.unique(mask[(mask != IGNORE_INDEX) & (inst < 1000)]):
        out.append((TRAIN_CLASS_NAMES[cls], (mask == cls) & (inst < 1000), False))
    return out


def _label_studio_export(world, tmp: Path) -> Path:
    """Label Studio's JSON export: the exported tasks, each with an annotation whose
    results are brush RLE masks, one per object instance and per stuff class."""
    export_step(str(world["base"] / "request"), str(tmp / "ls-out"), ["label-studio"],
                pool=world["pool"], store=world["store"])  # fmt: skip
    tasks = json.loads((tmp / "ls-out/label-studio/tasks.json").read_text())
    for n, task in enumerate(tasks):
        mask, inst = _revealed(world, task["data"]["image_id"])
        h, w = mask.shape
        task["id"] = 100 + n
        task["annotations"] = [{"id": n + 1, "was_cancelled": False, "result": [
            {"id": f"r{k}", "type": "brushlabels", "from_name": "tag", "to_name": "image",
             "original_width": w, "original_height": h, "image_rotation": 0,
             "value": {"format": "rle", "rle": mask_to_rle(px), "brushlabels": [name]}}
            for k, (name, px, _) in enumerate(_objects(mask, inst))]}]  # fmt: skip
    out = tmp / "label-studio-export.json"
    out.write_text(json.dumps(tasks))
    return out


def _palette_png(index: np.ndarray, colours: list[tuple[int, int, int]]) -> bytes:
    img = Image.fromarray(index.astype(np.uint8), mode="P")
    img.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 3 * len(colours)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _cvat_mask_export(world, tmp: Path) -> Path:
    """CVAT's Segmentation mask 1.1 export: its own label order and colours (not ours),
    palette PNGs for classes and for objects."""
    rng = np.random.default_rng(0)
    names = ["background", *rng.permutation(TRAIN_CLASS_NAMES).tolist()]
    colours = [(0, 0, 0)] + [(int(a), int(b), 7 * n % 256) for n, (a, b) in
                             enumerate(rng.integers(1, 255, (len(names) - 1, 2)), 1)]  # fmt: skip
    out = tmp / "cvat-export.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(
            "labelmap.txt",
            "# label:color_rgb:parts:actions\n"
            + "".join(f"{n}:{r},{g},{b}::\n" for n, (r, g, b) in zip(names, colours, strict=True)),
        )
        stems = []
        for item in world["request"].items:
            mask, inst = _revealed(world, item.image_id)
            cls = np.zeros(mask.shape, np.uint8)
            obj = np.zeros(mask.shape, np.uint8)
            for k, (name, px, _) in enumerate(_objects(mask, inst), 1):
                cls[px] = names.index(name)
                obj[px] = k
            stem = f"{item.image_id}_leftImg8bit"
            stems.append(stem)
            zf.writestr(f"SegmentationClass/{stem}.png", _palette_png(cls, colours))
            obj_colours = [(0, 0, 0)] + [(k, 255 - k, 100) for k in range(1, 256)]
            zf.writestr(f"SegmentationObject/{stem}.png", _palette_png(obj, obj_colours))
        zf.writestr("ImageSets/Segmentation/default.txt", "\n".join(stems) + "\n")
    return out


def _cityscapes_export(world, tmp: Path) -> Path:
    """CVAT's Cityscapes 1.0 export: gtFine labelIds and instanceIds PNGs."""
    out = tmp / "cityscapes-export.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for item in world["request"].items:
            mask, inst = _revealed(world, item.image_id)
            ids = train_ids_to_label_ids(mask)
            stem = f"gtFine/default/city/{item.image_id}_gtFine"
            zf.writestr(f"{stem}_labelIds.png", storage.encode_png(ids))
            instance_ids = np.where(inst >= 1000, inst, ids).astype(np.int32)
            zf.writestr(f"{stem}_instanceIds.png", storage.encode_png(instance_ids))
    return out


def _coco_export(world, tmp: Path) -> Path:
    """COCO JSON: categories with the tool's own ids, RLE segmentations; object
    instances iscrowd 0, stuff iscrowd 1."""
    cats = [{"id": 40 + n, "name": name} for n, name in enumerate(reversed(TRAIN_CLASS_NAMES))]
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for n, item in enumerate(world["request"].items, 1):
        mask, inst = _revealed(world, item.image_id)
        images.append({"id": n, "file_name": f"city/{item.image_id}_leftImg8bit.png",
                       "height": mask.shape[0], "width": mask.shape[1]})  # fmt: skip
        for name, px, thing in _objects(mask, inst):
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": cat_id[name],
                         "segmentation": encode_rle(px), "iscrowd": 0 if thing else 1})  # fmt: skip
    out = tmp / "coco-export.json"
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


BUILDERS = {
    "label-studio": _label_studio_export,
    "cvat-mask": _cvat_mask_export,
    "cityscapes": _cityscapes_export,
    "coco": _coco_export,
}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_round_trip_gives_the_oracles_labelled_set_and_cost(world, tmp_path, fmt):
    oracle = world["oracle"]
    touched = sum(len(i.labels.instance_keys) for i in oracle.images)
    assert 0 < oracle.cost < touched  # some touched objects were labelled in round 0
    source = BUILDERS[fmt](world, tmp_path)
    request_dir, labelled0 = str(world["base"] / "request"), world["labelled0"]
    kw = {"pool": world["pool"], "store": world["store"]}
    n, preview, _ = import_step(fmt, str(source), request_dir, str(tmp_path / "inbox"),
                                labelled=labelled0, **kw)  # fmt: skip
    assert n == 4 and preview == oracle.cost
    cost = annotate_step(request_dir, labelled0, str(tmp_path / "delivery"), annotator="human",
                         inbox=str(tmp_path / "inbox"), **kw)  # fmt: skip
    charged, _ = merge_step(labelled0, request_dir, str(tmp_path / "delivery"),
                            str(tmp_path / "labelled1"), **kw)  # fmt: skip
    assert cost == charged == oracle.cost
    want, got = world["base"] / "labelled-oracle", tmp_path / "labelled1"
    assert load_state(str(got)).images.keys() == load_state(str(want)).images.keys()
    for image_id in load_state(str(want)).images:
        assert np.array_equal(read_mask(str(got), image_id), read_mask(str(want), image_id))
        assert (load_state(str(got)).images[image_id].regions
                == load_state(str(want)).images[image_id].regions)  # fmt: skip


def test_export_writes_each_tool_format(world, tmp_path):
    files = export_step(str(world["base"] / "request"), str(tmp_path), ["label-studio", "cvat",
                        "coco"], pool=world["pool"], store=world["store"],
                        url_prefix="https://data.example/cs")  # fmt: skip
    names = ["tasks.json", "labeling_config.xml", "segmentation-mask-1.1.zip", "annotations.json"]
    assert [Path(f).name for f in files] == names
    tasks = json.loads((tmp_path / "label-studio/tasks.json").read_text())
    # Highest score first; the task data says what and why.
    assert [t["data"]["score"] for t in tasks] == [0.9, 0.7, 0.5, 0.3]
    first, item = tasks[0], world["request"].items[0]
    assert first["data"]["image"].startswith("https://data.example/cs/leftImg8bit/train/")
    assert first["data"]["regions"] == list(item.regions) and first["data"]["round"] == 1
    guide = first["predictions"][0]["result"][0]
    assert guide["from_name"] == "guide" and guide["value"]["brushlabels"] == ["requested region"]
    area = np.isin(world["maps"][item.image_id], item.regions)
    assert np.array_equal(rle_to_mask(guide["value"]["rle"], *area.shape), area)
    config = (tmp_path / "label-studio/labeling_config.xml").read_text()
    assert all(f'value="{name}"' in config for name in TRAIN_CLASS_NAMES)
    with zipfile.ZipFile(tmp_path / "cvat/segmentation-mask-1.1.zip") as zf:
        labelmap = zf.read("labelmap.txt").decode().splitlines()
        assert labelmap[1] == "background:0,0,0::" and labelmap[2] == "road:128,64,128::"
        png = Image.open(io.BytesIO(zf.read(f"SegmentationClass/{item.image_id}_leftImg8bit.png")))
        assert png.mode == "P" and np.array_equal(np.asarray(png) == 20, area)  # the guide
    coco = json.loads((tmp_path / "coco/annotations.json").read_text())
    ann = next(a for a in coco["annotations"] if a["image_id"] == 1)
    from pycocotools import mask as mask_utils

    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
    assert np.array_equal(mask_utils.decode(rle).astype(bool), area) and ann["area"] == area.sum()


def test_export_with_predictions_adds_the_models_classes_inside_the_regions(world, tmp_path):
    from alseg_core.models import build_model
    from alseg_core.training import checkpoint_state

    ckpt = str(tmp_path / "m.pt")
    model = build_model("lraspp_mobilenet_v3_large", num_classes=19)
    storage.save_checkpoint(ckpt, checkpoint_state(model, dropout=0.5, epoch=1))
    export_step(str(world["base"] / "request"), str(tmp_path), ["label-studio"],
                pool=world["pool"], store=world["store"], checkpoint=ckpt,
                model_name="lraspp_mobilenet_v3_large", device="cpu")  # fmt: skip
    task = json.loads((tmp_path / "label-studio/tasks.json").read_text())[0]
    item = world["request"].items[0]
    area = np.isin(world["maps"][item.image_id], item.regions)
    classes = [r for r in task["predictions"][0]["result"] if r["from_name"] == "tag"]
    union = np.zeros(area.shape, bool)
    for r in classes:
        assert r["value"]["brushlabels"][0] in TRAIN_CLASS_NAMES
        px = rle_to_mask(r["value"]["rle"], *area.shape)
        assert not (px & union).any() and not (px & ~area).any()
        union |= px
    assert classes and np.array_equal(union, area)  # every requested pixel gets a class


# ----------------------------------------------------------------------------- hand-made


def test_brush_rle_matches_the_published_bit_layout():
    """[7, 7, 7, 2] -> 32-bit count 4, word size 8-1, sizes 3,4,8,16 (minus 1), then
    chunk (repeat, field 0, 3 - 1, value 7) and chunk (repeat, field 0, 1 - 1, value 2)."""
    bits = (format(4, "032b") + format(7, "05b") + "0010" + "0011" + "0111" + "1111"
            + "1" + "00" + "010" + format(7, "08b")
            + "1" + "00" + "000" + format(2, "08b"))  # fmt: skip
    bits += "0" * (-len(bits) % 8)
    expected = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert encode(np.array([7, 7, 7, 2], np.uint8)) == expected
    # A literal chunk (repeat bit 0), as Label Studio's own encoder writes for mixed runs.
    literal = (format(3, "032b") + format(7, "05b") + "0010001101111111"
               + "0" + "00" + "010"
               + format(5, "08b") + format(6, "08b") + format(9, "08b"))  # fmt: skip
    literal += "0" * (-len(literal) % 8)
    data = [int(literal[i : i + 8], 2) for i in range(0, len(literal), 8)]
    assert decode(data).tolist() == [5, 6, 9]


def test_coco_polygon_rasterises_to_the_expected_pixels():
    # The square with corners (1, 1) and (4, 3): pixel centres x+0.5 in 1..4, y+0.5 in 1..3.
    px = rasterise_polygon([(1, 1), (4, 1), (4, 3), (1, 3)], (5, 6), source="test")
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True
    assert np.array_equal(px, expected)


def _hand_world(tmp_path: Path, world) -> tuple[str, str]:
    """A one-image request (whole image) over the first pool image."""
    image_id = world["request"].items[3].image_id
    req = make_request(1, "image", "x", [RequestItem(image_id, (), True, 1.0, 1)],
                       world["store"].fingerprint())  # fmt: skip
    write_request(str(tmp_path / "req"), req, region_maps=world["maps"])
    return image_id, str(tmp_path / "req")


def test_instances_are_charged_one_each_even_when_touching(world, tmp_path):
    """Two cars side by side: one connected piece, two instances. COCO with iscrowd 0
    charges 2; the same pixels as a crowd (no instances) charge 1."""
    image_id, req = _hand_world(tmp_path, world)
    h, w = world["maps"][image_id].shape
    left, right = np.zeros((h, w), bool), np.zeros((h, w), bool)
    left[10:20, 10:20], right[10:20, 20:30] = True, True
    cat = {"id": 1, "name": "car"}
    for crowd, expected in ((0, 2), (1, 1)):
        anns = [{"id": k, "image_id": 1, "category_id": 1, "segmentation": encode_rle(px),
                 "iscrowd": crowd} for k, px in ((1, left), (2, right))]  # fmt: skip
        src = tmp_path / f"coco-{crowd}.json"
        src.write_text(json.dumps({"images": [{"id": 1, "file_name": f"{image_id}.png",
                                   "height": h, "width": w}], "annotations": anns,
                                   "categories": [cat]}))  # fmt: skip
        _, cost, _ = import_step("coco", str(src), req, str(tmp_path / f"in{crowd}"),
                                 pool=world["pool"], store=world["store"])  # fmt: skip
        assert cost == expected


def test_palette_png_delivery_is_read_by_index(world, tmp_path):
    """A palette mask whose colours are dark (index 13 = car drawn in a near-black colour):
    read by index it is car; read as brightness it would be another class."""
    image_id, req = _hand_world(tmp_path, world)
    h, w = world["maps"][image_id].shape
    mask = np.full((h, w), IGNORE_INDEX, np.uint8)
    mask[5:25, 5:40] = 13
    mask[30:, :] = 0
    palette = [(k % 7, 0, 0) for k in range(256)]  # every colour is nearly black
    for name, data in (("palette", _palette_png(mask, palette)),
                       ("grey", storage.encode_png(mask))):  # fmt: skip
        inbox = tmp_path / name
        inbox.mkdir()
        (inbox / f"{image_id}.png").write_bytes(data)
        annotate_step(req, None, str(tmp_path / f"d-{name}"), annotator="human",
                      inbox=str(inbox), pool=world["pool"], store=world["store"])  # fmt: skip
        got = storage.read_image(str(tmp_path / f"d-{name}" / f"{image_id}.png"))
        assert np.array_equal(got, mask), name


def test_palette_predictions_evaluate_like_single_channel_ones(world, tmp_path):
    from alseg_core.evaluation import evaluate_predictions

    samples = list(world["pool"].val)[:3]
    rng = np.random.default_rng(0)
    palette = [(k, 255 - k, (3 * k) % 256) for k in range(256)]
    results = {}
    for name in ("palette", "grey"):
        folder = tmp_path / name
        folder.mkdir()
        for s in samples:
            truth = cityscapes.read_label(s)
            pred = np.where(rng.random(truth.shape) < 0.3, 0, truth)  # 70% right
            ids = train_ids_to_label_ids(pred)
            data = _palette_png(ids, palette) if name == "palette" else storage.encode_png(ids)
            (folder / f"{s.image_id}.png").write_bytes(data)
        rng = np.random.default_rng(0)
        results[name] = evaluate_predictions(str(folder), samples).miou
    assert results["palette"] == results["grey"] and 0.3 < results["grey"] < 1


def test_unknown_class_name_is_refused_by_name(world, tmp_path):
    image_id, req = _hand_world(tmp_path, world)
    h, w = world["maps"][image_id].shape
    src = tmp_path / "coco.json"
    src.write_text(json.dumps({"images": [{"id": 1, "file_name": f"{image_id}.png", "height": h,
                               "width": w}], "annotations": [],
                               "categories": [{"id": 1, "name": "lamppost"}]}))  # fmt: skip
    with pytest.raises(ValueError, match=r"coco\.json: category 1: unknown class name 'lamppost'"):
        import_step("coco", str(src), req, str(tmp_path / "in"), pool=world["pool"],
                    store=world["store"])  # fmt: skip
    assert not (tmp_path / "in").exists()
    assert LABEL_BY_NAME["car"].train_id == 13  # the official table


def test_labels_already_held_are_not_charged_again(world, tmp_path):
    """Delivering exactly the labelled set's own labels again costs nothing."""
    labelled0 = world["labelled0"]
    image_id = next(iter(load_state(labelled0).images))
    held = read_mask(labelled0, image_id)
    req = make_request(1, "image", "x", [RequestItem(image_id, (), True, 1.0, 1)],
                       world["store"].fingerprint())  # fmt: skip
    write_request(str(tmp_path / "req"), req, region_maps=world["maps"])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / f"{image_id}.png").write_bytes(storage.encode_png(held))
    kw = {"pool": world["pool"], "store": world["store"], "annotator": "human"}
    assert annotate_step(str(tmp_path / "req"), labelled0, str(tmp_path / "d"),
                         inbox=str(inbox), **kw) == 0  # fmt: skip
    assert annotate_step(str(tmp_path / "req"), None, str(tmp_path / "d2"),
                         inbox=str(inbox), **kw) > 0  # fmt: skip


def test_regions_returned_unlabelled_are_not_recorded(world, tmp_path):
    item = world["request"].items[1]
    maps = world["maps"]
    req = make_request(1, "superpixel", "x", [item], world["store"].fingerprint())
    write_request(str(tmp_path / "req"), req, region_maps=maps)
    truth = cityscapes.read_label(world["pool"].samples[item.image_id])
    skipped = item.regions[0]
    mask = np.where(np.isin(maps[item.image_id], item.regions[1:]), truth, IGNORE_INDEX)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / f"{item.image_id}.png").write_bytes(storage.encode_png(mask.astype(np.uint8)))
    kw = {"pool": world["pool"], "store": world["store"]}
    annotate_step(str(tmp_path / "req"), None, str(tmp_path / "d"), annotator="human",
                  inbox=str(inbox), **kw)  # fmt: skip
    charged, warnings = merge_step(None, str(tmp_path / "req"), str(tmp_path / "d"),
                                   str(tmp_path / "lab"), **kw)  # fmt: skip
    regions = load_state(str(tmp_path / "lab")).images[item.image_id].regions
    assert skipped not in regions and set(item.regions[1:]) <= set(regions)
    assert any(f"requested regions [{skipped}] came back unlabelled" in w for w in warnings)


def test_cli_export_then_import(world, tmp_path, synthetic_root, capsys):
    from alseg_core.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(
        f"data: {{root: {synthetic_root}}}\n"
        f"superpixels: {{n_regions: 30, compactness: 0.02, store: {world['base'] / 'sp'}}}\n"
    )
    request = str(world["base"] / "request")
    base = ["--params", str(params), "--no-progress"]
    assert main([*base, "export", "--request", request, "--format", "coco", "--format",
                 "label-studio", "--out", str(tmp_path / "tools")]) == 0  # fmt: skip
    assert "wrote " + str(tmp_path / "tools/coco/annotations.json") in capsys.readouterr().out
    source = _coco_export(world, tmp_path)
    assert main([*base, "import", "--format", "coco", "--from", str(source), "--request",
                 request, "--labelled", world["labelled0"], "--out",
                 str(tmp_path / "inbox")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"imported coco labels of 4 images from {source}" in out
    assert f"(will be charged {world['oracle'].cost})" in out
    assert sorted(p.name for p in (tmp_path / "inbox").glob("*.png")) == sorted(
        f"{i.image_id}.png" for i in world["request"].items
    )


def test_polygons_from_label_studio_and_coco_rasterise_to_the_expected_pixels(world, tmp_path):
    """A Label Studio polygon (points in percent of the image) and a COCO polygon (pixels)
    over the same rectangle give its pixels; a thing-class polygon is one instance."""
    image_id, req = _hand_world(tmp_path, world)
    h, w = world["maps"][image_id].shape  # 64 x 128
    x0, y0, x1, y1 = 8, 4, 40, 20
    expected = np.full((h, w), IGNORE_INDEX, np.uint8)
    expected[y0:y1, x0:x1] = LABEL_BY_NAME["bus"].train_id
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    ls = [{"id": 1, "data": {"image_id": image_id}, "annotations": [{"result": [
        {"id": "p", "type": "polygonlabels", "from_name": "polygon", "to_name": "image",
         "original_width": w, "original_height": h,
         "value": {"points": [[100 * x / w, 100 * y / h] for x, y in corners],
                   "polygonlabels": ["bus"]}}]}]}]  # fmt: skip
    (tmp_path / "ls.json").write_text(json.dumps(ls))
    polygon = [float(v) for xy in corners for v in xy]
    coco = {"images": [{"id": 1, "file_name": f"{image_id}_leftImg8bit.png", "height": h,
                        "width": w}],
            "categories": [{"id": 5, "name": "bus"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0,
                             "segmentation": [polygon]}]}  # fmt: skip
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    for fmt, name in (("label-studio", "ls.json"), ("coco", "coco.json")):
        inbox = tmp_path / f"in-{fmt}"
        _, cost, _ = import_step(fmt, str(tmp_path / name), req, str(inbox),
                                 pool=world["pool"], store=world["store"])  # fmt: skip
        assert cost == 1, fmt
        assert np.array_equal(storage.read_image(str(inbox / f"{image_id}.png")), expected), fmt
        instances = storage.read_image(str(inbox / "instances" / f"{image_id}.png"))
        assert set(np.unique(instances).tolist()) == {0, 1000}, fmt
