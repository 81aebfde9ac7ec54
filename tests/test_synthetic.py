"""The embedded synthetic generator writes a deterministic Cityscapes-format dataset."""

from __future__ import annotations

import numpy as np
import pytest

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import LABELS, label_ids_to_train_ids
from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic, render_scene


def test_layout_and_counts(synthetic_root):
    train = cityscapes.list_samples(str(synthetic_root), "train")
    val = cityscapes.list_samples(str(synthetic_root), "val")
    assert len(train) == 24 and len(val) == 8
    assert all(s.instance_url for s in train)
    image, label = cityscapes.read_image(train[0]), cityscapes.read_label(train[0])
    assert image.shape == (64, 128, 3) and label.shape == (64, 128)


def test_same_seed_same_bytes_and_prefix_stable(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_synthetic(str(a), SyntheticSpec(n_train=3, n_val=1, height=48, width=96, seed=7))
    make_synthetic(str(b), SyntheticSpec(n_train=5, n_val=1, height=48, width=96, seed=7))
    for sample in cityscapes.list_samples(str(a), "train"):
        other = sample.image_url.replace(str(a), str(b))
        assert storage.read_bytes(sample.image_url) == storage.read_bytes(other)
    c = tmp_path / "c"
    make_synthetic(str(c), SyntheticSpec(n_train=3, n_val=1, height=48, width=96, seed=8))
    first_a = cityscapes.list_samples(str(a), "train")[0]
    assert storage.read_bytes(first_a.image_url) != storage.read_bytes(
        first_a.image_url.replace(str(a), str(c))
    )


def test_instance_ids_follow_cityscapes_convention():
    has_instances = {lab.id for lab in LABELS if lab.has_instances}
    seen_things = 0
    for seed in range(10):
        _, label_ids, inst = render_scene(np.random.default_rng(seed), 96, 192)
        thing = np.isin(label_ids, list(has_instances))
        # things: label_id * 1000 + k ; stuff: the label id itself
        np.testing.assert_array_equal(inst[thing] // 1000, label_ids[thing])
        np.testing.assert_array_equal(inst[~thing], label_ids[~thing])
        seen_things += len(np.unique(inst[thing]))
    assert seen_things > 30  # several countable objects per scene


def test_scenes_cover_many_classes_with_rare_ones():
    pixel_counts = np.zeros(19, np.int64)
    image_counts = np.zeros(19, np.int64)
    for seed in range(60):
        _, label_ids, _ = render_scene(np.random.default_rng(seed), 96, 192)
        train_ids = label_ids_to_train_ids(label_ids)
        counts = np.bincount(train_ids[train_ids < 19], minlength=19)
        pixel_counts += counts
        image_counts += counts > 0
    present = np.flatnonzero(pixel_counts)
    assert len(present) >= 16  # all but train (16) and at most two rarities
    # road, sidewalk, building, sky, car appear in nearly every image ...
    for cls in (0, 1, 10, 13):
        assert image_counts[cls] >= 50
    # ... while riders, bicycles, motorcycles, buses stay rare
    for cls in (12, 15, 17, 18):
        assert image_counts[cls] <= 30


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="n_train"):
        SyntheticSpec(n_train=-1)
    with pytest.raises(ValueError, match="at least 32x32"):
        SyntheticSpec(height=8)


def test_make_synthetic_skips_the_same_dataset_and_redoes_another(tmp_path):
    root = str(tmp_path / "cs")
    spec = SyntheticSpec(n_train=3, n_val=1, height=48, width=96, seed=7)
    assert make_synthetic(root, spec)["skipped"] is False
    image = next((tmp_path / "cs" / "leftImg8bit" / "train").rglob("*.png"))
    stamp = image.stat().st_mtime_ns
    assert make_synthetic(root, spec)["skipped"] is True
    assert image.stat().st_mtime_ns == stamp  # nothing rewritten
    image.unlink()  # an image gone: written again
    assert make_synthetic(root, spec)["skipped"] is False and image.exists()
    other = SyntheticSpec(n_train=3, n_val=1, height=48, width=96, seed=8)
    assert make_synthetic(root, other)["skipped"] is False  # other settings: rewritten
    assert make_synthetic(root, other, force=True)["skipped"] is False
