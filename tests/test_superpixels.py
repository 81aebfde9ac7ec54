"""Superpixels: Parquet round-trip, compute-once, incremental, validation, S3."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.superpixels import (
    SuperpixelParams,
    SuperpixelStore,
    decode_region_map,
    encode_region_map,
    region_stats,
    slic_regions,
    watershed_regions,
)


def _pairs(root, n=None):
    samples = cityscapes.list_samples(str(root), "train")
    return [(s.image_id, s.image_url) for s in samples[:n]]


def test_watershed_gives_about_100_regions_covering_the_image(synthetic_root):
    image = cityscapes.read_image(cityscapes.list_samples(str(synthetic_root), "train")[0])
    regions = watershed_regions(image, n_regions=100)
    assert regions.dtype == np.int32 and regions.shape == image.shape[:2]
    k = regions.max() + 1
    assert 80 <= k <= 100
    np.testing.assert_array_equal(np.unique(regions), np.arange(k))  # consecutive ids
    slic = slic_regions(image, n_regions=100)
    assert 30 <= slic.max() + 1 <= 130


def test_region_stats_by_hand():
    regions = np.array([[0, 0, 1], [2, 2, 1], [2, 2, 2]], np.int32)
    s = region_stats(regions)
    assert s["area"].tolist() == [2, 2, 5]
    assert s["ymin"].tolist() == [0, 0, 1] and s["ymax"].tolist() == [0, 1, 2]
    assert s["xmin"].tolist() == [0, 2, 0] and s["xmax"].tolist() == [1, 2, 2]


def test_encoding_uses_smallest_dtype_and_round_trips():
    for top, dtype in [(99, "<u1"), (300, "<u2"), (70000, "<u4")]:
        regions = np.random.default_rng(0).integers(0, top + 1, (5, 7)).astype(np.int32)
        regions[0, 0] = top
        data, dt = encode_region_map(regions)
        assert dt == dtype
        np.testing.assert_array_equal(decode_region_map(data, dt, 5, 7), regions)


def test_store_round_trips_bit_exactly_and_computes_once(synthetic_root, tmp_path):
    store = SuperpixelStore(str(tmp_path / "sp"))
    pairs = _pairs(synthetic_root, 6)
    assert store.update(pairs, workers=2) == 6
    for image_id, url in pairs:
        expected = watershed_regions(storage.read_image(url), n_regions=100)
        got = store.read(image_id)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        row = store.read_row(image_id)
        assert row["area"] == np.bincount(expected.ravel()).tolist()
    parts = store.parts()
    mtimes = [os.path.getmtime(p) for p in parts]
    again = SuperpixelStore(str(tmp_path / "sp"))
    assert again.update(pairs, workers=2) == 0  # nothing recomputed
    assert again.parts() == parts and [os.path.getmtime(p) for p in parts] == mtimes


def test_adding_images_computes_only_the_new_ones(synthetic_root, tmp_path):
    store = SuperpixelStore(str(tmp_path / "sp"))
    assert store.update(_pairs(synthetic_root, 4), workers=1) == 4
    assert store.update(_pairs(synthetic_root, 7), workers=1) == 3
    assert len(store.parts()) == 2 and len(store.image_ids()) == 7


def test_other_params_or_version_are_refused(synthetic_root, tmp_path):
    url = str(tmp_path / "sp")
    SuperpixelStore(url).update(_pairs(synthetic_root, 2), workers=1)
    with pytest.raises(
        ValueError, match=r"computed with superpixels.n_regions=100, but 50 was asked"
    ):
        SuperpixelStore(url, SuperpixelParams(n_regions=50)).image_ids()
    part = SuperpixelStore(url).parts()[0]
    table = storage.read_parquet(part)
    meta = dict(table.schema.metadata)
    meta[b"alseg_format"] = b"alseg-superpixels/0"
    storage.write_parquet(part, table.replace_schema_metadata(meta))
    with pytest.raises(ValueError, match=r"store format 'alseg-superpixels/0'.*another version"):
        SuperpixelStore(url).image_ids()


def test_truncated_parquet_is_named(synthetic_root, tmp_path):
    url = str(tmp_path / "sp")
    SuperpixelStore(url).update(_pairs(synthetic_root, 2), workers=1)
    part = SuperpixelStore(url).parts()[0]
    data = storage.read_bytes(part)
    storage.write_bytes(part, data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"part-.*\.parquet: not a readable Parquet file"):
        SuperpixelStore(url).image_ids()


def test_unreadable_image_leaves_no_partial_store(synthetic_root, tmp_path):
    pairs = _pairs(synthetic_root, 3)
    bad = str(tmp_path / "bad_leftImg8bit.png")
    storage.write_bytes(bad, b"\x89PNG garbage")
    store = SuperpixelStore(str(tmp_path / "sp"))
    with pytest.raises(ValueError, match=r"bad_leftImg8bit\.png: not a readable image"):
        store.update([*pairs, ("bad", bad)], workers=2)
    assert store.parts() == []
    sp = tmp_path / "sp"
    assert not sp.exists() or list(sp.iterdir()) == []  # no part, no temporary file


def test_store_on_s3(synthetic_root, s3_bucket):
    url = f"{s3_bucket}/superpixels"
    store = SuperpixelStore(url)
    pairs = _pairs(synthetic_root, 3)
    assert store.update(pairs, workers=2) == 3
    fresh = SuperpixelStore(url)
    assert fresh.image_ids() == {i for i, _ in pairs}
    expected = watershed_regions(storage.read_image(pairs[0][1]))
    np.testing.assert_array_equal(fresh.read(pairs[0][0]), expected)
    assert fresh.update(pairs, workers=2) == 0


def test_schema_has_one_row_per_image(synthetic_root, tmp_path):
    store = SuperpixelStore(str(tmp_path / "sp"))
    store.update(_pairs(synthetic_root, 3), workers=1)
    table = storage.read_parquet(store.parts()[0])
    assert table.num_rows == 3
    assert table.schema.field("region_map").type == pa.binary()
    assert set(table.column_names) >= {"image_id", "height", "width", "area", "ymin", "xmax"}
