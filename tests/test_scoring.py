"""Scoring a pool: one row per image with every strategy's image and region scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from alseg_core import storage
from alseg_core.active.regions import region_means
from alseg_core.active.scoring import ScoreParams, heat_of, read_scores, score_pool
from alseg_core.active.strategies import pixel_strategies
from alseg_core.datasets import cityscapes
from alseg_core.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("lraspp_mobilenet_v3_large", num_classes=19)


def _score(model, samples, seed=0, labelled=None):
    grid = (np.arange(64)[:, None] // 16) * 8 + np.arange(128)[None, :] // 16  # 32 cells
    return score_pool(
        model, samples, region_maps=lambda _i: grid,
        labelled_masks=lambda i: (labelled or {}).get(i),
        params=ScoreParams(mc_passes=3, batch_size=2, seed=seed, device="cpu"),
    ), grid  # fmt: skip


def test_rows_hold_every_pixel_strategy_per_image_and_region(model, synthetic_root):
    samples = cityscapes.list_samples(str(synthetic_root), "train")[:3]
    table, grid = _score(model, samples)
    assert table.column("image_id").to_pylist() == [s.image_id for s in samples]
    row = table.to_pylist()[0]
    for strategy in pixel_strategies():
        regions = row[f"region_{strategy.name}"]
        assert len(regions) == 32 and all(v >= 0 for v in regions)
        # The image score is the mean over valid pixels, and (every pixel being valid
        # here) the mean of the equal-sized region means.
        assert row[f"image_{strategy.name}"] == pytest.approx(np.mean(regions), rel=1e-5)
    assert len(row["region_est_cost"]) == 32 and row["image_est_cost"] >= 1
    assert heat_of(row).shape == (16, 32)  # heat_stride 4 of 64x128


def test_scores_depend_on_the_seed_not_on_global_random_state(model, synthetic_root):
    samples = cityscapes.list_samples(str(synthetic_root), "train")[:2]
    torch.manual_seed(1)
    a, _ = _score(model, samples, seed=5)
    torch.manual_seed(2)
    b, _ = _score(model, samples, seed=5)
    c, _ = _score(model, samples, seed=6)
    no_ll = [n for n in a.column_names if n != "image_learning_loss"]  # NaN without the module
    assert a.select(no_ll).equals(b.select(no_ll))
    assert a.column("image_mc_variance") != c.column("image_mc_variance")


def test_labelled_pixels_make_their_instances_free(model, synthetic_root):
    sample = cityscapes.list_samples(str(synthetic_root), "train")[0]
    free, _ = _score(model, [sample])
    everything = np.zeros((64, 128), np.uint8)  # every pixel labelled (class 0)
    paid, _ = _score(model, [sample], labelled={sample.image_id: everything})
    assert free.column("image_est_cost")[0].as_py() >= 1
    assert paid.column("image_est_cost")[0].as_py() == 0
    assert sum(paid.column("region_est_cost")[0].as_py()) == 0


def test_region_means_agree_with_the_table(model, synthetic_root):
    """The stored region scores are region_means of the stored pixel scores' source."""
    samples = cityscapes.list_samples(str(synthetic_root), "train")[:1]
    table, grid = _score(model, samples)
    heat = heat_of(table.to_pylist()[0])  # mc_variance at stride 4
    coarse = region_means(heat, grid[::4, ::4])
    stored = np.array(table.column("region_mc_variance")[0].as_py())
    np.testing.assert_allclose(coarse, stored, rtol=2e-2, atol=1e-4)  # float16 heat


def test_read_scores_refuses_other_parquet(tmp_path):
    url = str(tmp_path / "x.parquet")
    storage.write_parquet(url, pa.table({"a": [1]}))
    with pytest.raises(ValueError, match=r"x.parquet: not an alseg scores file"):
        read_scores(url)


def test_instance_masses_sum_the_scores_of_each_predicted_instance_not_yet_labelled():
    from alseg_core.active.scoring import _row

    # Two predicted instances: class 0 on the left half, class 1 on the right.
    pred = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    score = np.array([[1.0, 2.0, 10.0, 20.0], [3.0, 4.0, 30.0, 40.0]])
    regions = np.array([[0, 1, 1, 2], [0, 1, 1, 2]], np.int32)
    row = _row("x", pred, {"s": score}, regions, None)
    assert row["region_components"] == [[0], [0, 1], [1]]
    assert row["component_s"] == pytest.approx([10.0, 100.0])
    # Pixel (0, 0) labelled: instance 0 is free, and its mass counts the 3 others only.
    labelled = np.full(pred.shape, 255, np.uint8)
    labelled[0, 0] = 0
    row = _row("x", pred, {"s": score}, regions, labelled)
    assert row["region_est_cost"] == [0, 1, 1]
    assert row["component_s"] == pytest.approx([9.0, 100.0])
    assert row["component_pixels"] == [3, 4]
    assert _row("x", pred, {"s": score}, None, None)["component_s"] == []
