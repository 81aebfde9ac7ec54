from __future__ import annotations

import os

import numpy as np
import pytest

from alseg_core import storage


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    storage.write_bytes(str(target), b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_png_round_trip_8_and_16_bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    inst = np.array([[26001, 7], [24000, 33999]], np.int32)
    storage.write_png(str(tmp_path / "a.png"), rgb)
    storage.write_png(str(tmp_path / "b.png"), inst)
    np.testing.assert_array_equal(storage.read_image(str(tmp_path / "a.png")), rgb)
    got = storage.read_image(str(tmp_path / "b.png"))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, inst)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png: file not found"):
        storage.read_bytes(str(tmp_path / "nope.png"))


def test_s3_round_trip(s3_bucket):
    url = f"{s3_bucket}/dir/x.json"
    storage.write_json(url, {"a": 1})
    assert storage.read_json(url) == {"a": 1}
    assert storage.glob(f"{s3_bucket}/dir/*.json") == [url]
