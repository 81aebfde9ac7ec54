"""Oracle instance expansion and cost on a hand-made scene; merge; label import."""

from __future__ import annotations

import numpy as np
import pytest

from alseg_core import storage
from alseg_core.active.costs import cost_calibration
from alseg_core.annotation import (
    RequestItem,
    make_request,
    merge_delivery,
    oracle_answer,
    read_delivery,
    write_delivery,
    write_request,
)
from alseg_core.datasets import cityscapes
from alseg_core.labels import LabelState, load_state, read_mask

SKY, CAR, BLD, ROAD, WALK, EGO = 23, 26, 11, 7, 8, 1
# fmt: off
LABEL_IDS = np.array([
    [SKY, SKY, SKY, SKY, SKY, SKY],
    [CAR, CAR, BLD, BLD, CAR, CAR],
    [ROAD, ROAD, ROAD, ROAD, ROAD, ROAD],
    [EGO, ROAD, WALK, WALK, ROAD, ROAD],
], np.uint8)
INSTANCES = LABEL_IDS.astype(np.int32)
INSTANCES[1, :2] = 26000
INSTANCES[1, 4:] = 26001
REGIONS = np.array([
    [0, 0, 0, 1, 1, 1],
    [0, 0, 0, 1, 1, 1],
    [2, 2, 2, 3, 3, 3],
    [2, 2, 2, 3, 3, 3],
], np.int32)
# fmt: on
IMG = "town_000000_000019"
U = 255


@pytest.fixture
def scene(tmp_path):
    root = str(tmp_path / "ds")
    image = np.zeros((4, 6, 3), np.uint8)
    storage.write_png(cityscapes.image_url(root, "train", "town", IMG), image)
    storage.write_png(cityscapes.label_url(root, "train", "town", IMG), LABEL_IDS)
    storage.write_png(cityscapes.instance_url(root, "train", "town", IMG), INSTANCES)
    samples = {s.image_id: s for s in cityscapes.list_samples(root, "train")}
    return samples, {IMG: REGIONS}


def _request(round_, regions=(), full=False, est_cost=1):
    item = RequestItem(IMG, tuple(regions), full, 0.5, est_cost)
    return make_request(round_, "superpixel", "mc_variance", [item])


def test_oracle_reveals_whole_instances_and_stuff_components(scene):
    samples, maps = scene
    delivery = oracle_answer(_request(1, [0]), samples, maps, LabelState())
    (img,) = delivery.images
    # region 0 touches the sky, car 26000 and the building: all three revealed whole,
    # but not the other car, the road or the sidewalk.
    np.testing.assert_array_equal(img.mask, [
        [10, 10, 10, 10, 10, 10],
        [13, 13, 2, 2, U, U],
        [U, U, U, U, U, U],
        [U, U, U, U, U, U],
    ])  # fmt: skip
    assert img.cost == 3 and delivery.cost == 3


def test_oracle_charges_only_new_instances(scene, tmp_path):
    samples, maps = scene
    first = oracle_answer(_request(1, [0]), samples, maps, LabelState())
    state = merge_delivery(None, first, str(tmp_path / "l1"))
    # region 1 touches sky and building (already labelled) and car 26001 (new)
    second = oracle_answer(_request(2, [1]), samples, maps, state)
    assert second.cost == 1
    # region 2 touches road and sidewalk (new) and the void ego-vehicle pixel (free)
    third = oracle_answer(_request(2, [2]), samples, maps, state)
    assert third.cost == 2 and third.images[0].mask[3, 0] == U
    whole = oracle_answer(_request(2, full=True), samples, maps, LabelState())
    assert whole.cost == 6  # sky, 2 cars, building, road, sidewalk


def test_merge_is_idempotent_and_never_touches_its_input(scene, tmp_path):
    samples, maps = scene
    delivery = oracle_answer(_request(1, [0]), samples, maps, LabelState())
    l1, l2, l3 = (str(tmp_path / n) for n in ("l1", "l2", "l3"))
    s1 = merge_delivery(None, delivery, l1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "l1").rglob("*") if p.is_file()}
    s2 = merge_delivery(l1, delivery, l2)  # the same delivery again
    assert s2 == s1 and s2.total_cost == 3 and len(s2.history) == 1
    np.testing.assert_array_equal(read_mask(l2, IMG), read_mask(l1, IMG))
    after = {p.name: p.read_bytes() for p in (tmp_path / "l1").rglob("*") if p.is_file()}
    assert after == before
    other = oracle_answer(_request(2, [3]), samples, maps, s1)
    s3 = merge_delivery(l1, other, l3)
    assert s3.total_cost == 3 + other.cost and load_state(l3) == s3
    merged = read_mask(l3, IMG)
    assert merged[0, 0] == 10 and merged[2, 5] == 0 and merged[3, 3] == 1
    assert s3.images[IMG].regions == frozenset({0, 3})


def _human_delivery(tmp_path, request, samples, maps, mask, name=IMG):
    req_dir, deliv = str(tmp_path / "req"), str(tmp_path / "human")
    write_request(req_dir, request, region_maps=maps)
    storage.write_png(f"{deliv}/{name}.png", mask)
    return read_delivery(deliv, request, samples, maps)


def test_human_delivery_is_accepted_and_outside_labels_reported(scene, tmp_path):
    """The sky touches region 0 (its pixels beyond the region are part of the object);
    the sidewalk at the bottom right does not touch it: reported, merged, charged."""
    samples, maps = scene
    request = _request(1, [0])
    mask = np.full((4, 6), U, np.uint8)
    mask[0, :] = 10
    mask[3, 2:4] = 1
    delivery = _human_delivery(tmp_path, request, samples, maps, mask)
    assert delivery.source == "human" and delivery.cost == 2
    assert delivery.images[0].outside_pixels == 2
    assert (
        "1 labelled objects (2 pixels) do not touch the requested regions" in (delivery.warnings[0])
    )


def test_human_deliveries_record_instances_once_and_calibrate_the_image_unit(scene, tmp_path):
    """Region 0 by hand (sky, left car, building), then the whole image: the labelled
    set holds 6 instances (sky, 2 cars, building, road, sidewalk; no instance ids, so
    each car is its own connected piece), not 3 + 6, and the image-unit calibration
    counts them against the 3 instances the model predicts there: factor 2."""
    samples, maps = scene
    full = np.array([
        [10, 10, 10, 10, 10, 10],
        [13, 13, 2, 2, 13, 13],
        [0, 0, 0, 0, 0, 0],
        [U, 0, 1, 1, 0, 0],
    ], np.uint8)  # fmt: skip
    part = full.copy()
    part[1, 4:], part[2:] = U, U  # the objects region 0 touches, whole
    # Requests without a model estimate (as a seed round's): the image unit calibrates
    # on the fully labelled images.
    first = _human_delivery(tmp_path / "a", _request(1, [0], est_cost=0), samples, maps, part)
    assert first.cost == 3 and len(first.images[0].labels.instance_keys) == 3
    state = merge_delivery(None, first, str(tmp_path / "l1"))
    whole = _human_delivery(tmp_path / "b", _request(2, full=True, est_cost=0), samples, maps, full)
    assert len(whole.images[0].labels.instance_keys) == 6
    state = merge_delivery(str(tmp_path / "l1"), whole, str(tmp_path / "l2"))
    assert len(state.instance_keys(IMG)) == 6 and state.is_fully_labelled(IMG)
    assert cost_calibration(state, unit="image", predicted_on_labelled={IMG: 3}) == (
        2.0,
        "1 labelled images",
    )


@pytest.mark.parametrize(
    ("mask", "name", "message"),
    [
        (np.full((5, 6), 10, np.uint8), IMG,
         r"mask size 6x5 differs from image town_000000_000019 size 6x4"),
        (np.full((4, 6), 42, np.uint8), IMG,
         r"class ids \[42\] are not train ids 0..18 or 255"),
        (np.full((4, 6), 10, np.uint8), "nowhere_000001_000019",
         r"image id 'nowhere_000001_000019' is not in request"),
    ],
)  # fmt: skip
def test_bad_deliveries_are_refused_and_labelled_set_unchanged(
    scene, tmp_path, mask, name, message
):
    samples, maps = scene
    labelled = str(tmp_path / "l1")
    merge_delivery(None, oracle_answer(_request(0, [3]), samples, maps, LabelState()), labelled)
    before = {p: p.read_bytes() for p in (tmp_path / "l1").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=message):
        _human_delivery(tmp_path, _request(1, [0]), samples, maps, mask, name=name)
    assert {p: p.read_bytes() for p in (tmp_path / "l1").rglob("*") if p.is_file()} == before


def test_oracle_delivery_round_trips_through_files(scene, tmp_path):
    samples, maps = scene
    request = _request(1, [0])
    delivery = oracle_answer(request, samples, maps, LabelState())
    write_delivery(str(tmp_path / "d"), delivery)
    again = read_delivery(str(tmp_path / "d"), request, samples, maps)
    assert again.delivery_id == delivery.delivery_id and again.cost == 3
    np.testing.assert_array_equal(again.images[0].mask, delivery.images[0].mask)
    other = _request(2, [1])
    with pytest.raises(ValueError, match="delivery answers request"):
        read_delivery(str(tmp_path / "d"), other, samples, maps)


def test_request_files(scene, tmp_path):
    _, maps = scene
    request = _request(1, [0, 3])
    heat = {IMG: np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)}
    write_request(str(tmp_path / "r"), request, region_maps=maps, heatmaps=heat)
    csv_text = (tmp_path / "r" / "request.csv").read_text().splitlines()
    assert csv_text[0] == "image_id,region_ids,score,estimated_cost"
    assert csv_text[1] == f"{IMG},0 3,0.5,1"
    pre = storage.read_image(str(tmp_path / "r" / "preannotations" / f"{IMG}.png"))
    assert set(np.unique(pre)) <= {0, 128, 255}
    assert (pre[REGIONS == 1] == 0).all() and (pre[REGIONS == 0] > 0).all()
    heat_png = storage.read_image(str(tmp_path / "r" / "heatmaps" / f"{IMG}.png"))
    assert heat_png.shape == (4, 6, 3)
