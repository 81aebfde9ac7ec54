"""The Cityscapes reader: official id mapping, local and s3:// roots, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ALL_LABEL_IDS, OFFICIAL_TRAIN_IDS, write_tiny_cityscapes

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import (
    TRAIN_CLASS_NAMES,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
)


def test_every_label_id_maps_like_the_official_table():
    mapped = label_ids_to_train_ids(np.arange(34, dtype=np.uint8))
    assert mapped.tolist() == OFFICIAL_TRAIN_IDS


def test_train_ids_map_back_to_label_ids_and_ignore_to_unlabeled():
    assert train_ids_to_label_ids(np.array([0, 1, 10, 11, 13, 18, 255])).tolist() == [
        7, 8, 23, 24, 26, 33, 0,
    ]  # fmt: skip
    assert TRAIN_CLASS_NAMES[0] == "road" and TRAIN_CLASS_NAMES[18] == "bicycle"


def test_label_id_outside_table_is_an_error_naming_the_source():
    with pytest.raises(ValueError, match=r"x\.png: label ids \[34, 200\] are outside"):
        label_ids_to_train_ids(np.array([7, 34, 200]), source="x.png")


def _check_reads(root: str) -> None:
    samples = cityscapes.list_samples(root, "train")
    assert [s.image_id for s in samples] == ["testcity_000000_000019", "testcity_000001_000019"]
    image = cityscapes.read_image(samples[0])
    label = cityscapes.read_label(samples[0], shape=image.shape[:2])
    assert image.shape == (4, 10, 3) and image.dtype == np.uint8
    expected = np.array(OFFICIAL_TRAIN_IDS)[ALL_LABEL_IDS]
    np.testing.assert_array_equal(label, expected)
    inst = cityscapes.read_instances(samples[0])
    assert inst.dtype == np.int32 and inst[0, 4] == 24001


def test_reads_local_directory(tmp_path):
    write_tiny_cityscapes(str(tmp_path))
    _check_reads(str(tmp_path))


def test_reads_from_s3_bucket_on_moto_server(s3_bucket):
    root = f"{s3_bucket}/cityscapes"
    write_tiny_cityscapes(root)
    assert storage.exists(f"{root}/leftImg8bit/train/testcity")
    _check_reads(root)


def test_missing_root_and_split_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cityscapes.list_samples(str(tmp_path / "nope"), "train")
    write_tiny_cityscapes(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"split 'val' not found"):
        cityscapes.list_samples(str(tmp_path), "val")


def test_image_without_label_file_is_named(tmp_path):
    ids = write_tiny_cityscapes(str(tmp_path))
    sample = cityscapes.list_samples(str(tmp_path), "train")[1]
    storage.remove(sample.label_url)
    with pytest.raises(ValueError, match=f"{ids[1]}_leftImg8bit.png: image has no label file"):
        cityscapes.list_samples(str(tmp_path), "train")
    unlabelled = cityscapes.list_samples(str(tmp_path), "train", require_labels=False)
    assert unlabelled[1].label_url is None


def test_unreadable_png_is_named(tmp_path):
    write_tiny_cityscapes(str(tmp_path))
    sample = cityscapes.list_samples(str(tmp_path), "train")[0]
    data = storage.read_bytes(sample.image_url)
    storage.write_bytes(sample.image_url, data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=r"_leftImg8bit\.png: not a readable image"):
        cityscapes.read_image(sample)


def test_mask_size_differs_from_image(tmp_path):
    write_tiny_cityscapes(str(tmp_path))
    sample = cityscapes.list_samples(str(tmp_path), "train")[0]
    storage.write_png(sample.label_url, np.full((5, 10), 7, np.uint8))
    with pytest.raises(
        ValueError, match=r"labelIds\.png: mask size 10x5 differs from its image size 10x4"
    ):
        cityscapes.read_label(sample, shape=cityscapes.read_image(sample).shape[:2])


def test_label_png_with_id_outside_table(tmp_path):
    write_tiny_cityscapes(str(tmp_path))
    sample = cityscapes.list_samples(str(tmp_path), "train")[0]
    bad = ALL_LABEL_IDS.copy()
    bad[3, 9] = 99
    storage.write_png(sample.label_url, bad)
    with pytest.raises(ValueError, match=r"labelIds\.png: label ids \[99\] are outside"):
        cityscapes.read_label(sample)
