"""The pipeline's layout, pool manifest, steps and round engine."""

from __future__ import annotations

import pytest

from alseg_core.config import config_from_dict
from alseg_core.datasets import cityscapes
from alseg_core.pipeline.engine import RoundEngine
from alseg_core.pipeline.layout import RoundLayout, stage_name
from alseg_core.pipeline.pool import Pool
from alseg_core.pipeline.steps.select import select_step
from alseg_core.pipeline.steps.train import round_schedule
from alseg_core.training_spec import TrainConfig


def test_stage_names_and_paths_come_from_one_layout():
    assert stage_name("select", 0) == "seed_select" and stage_name("score", 3) == "score@r3"
    with pytest.raises(ValueError, match="round 0 has no step 'score'"):
        stage_name("score", 0)
    layout = RoundLayout("base")
    assert (
        layout.labelled(2) == "base/r2/labelled"
        and layout.model("${key}") == "base/${key}/model.pt"
    )
    assert layout.curve(1) == "base/r1/publish/curve.csv" and layout.pool == "base/pool.json"


def test_round_schedule_turns_steps_into_whole_epochs():
    # 20 images, batch 8 -> 3 steps per epoch; 200 steps -> round(66.7) = 67 epochs
    assert round_schedule(TrainConfig(batch_size=8), 20, 200).epochs == 67
    assert round_schedule(TrainConfig(batch_size=8), 100, 4).epochs == 1  # at least one


def test_seed_selection_is_a_seeded_random_set_of_whole_images(tmp_path):
    ids = [f"img{i:02d}" for i in range(30)]

    def pick(seed, out):
        return select_step(0, pool_ids=ids, scores=None, labelled=None, out=str(tmp_path / out),
                           unit="superpixel", strategy="mc_variance", budget=9,
                           initial_images=5, seed=seed)  # fmt: skip

    a, b, c = pick(0, "a.json"), pick(0, "b.json"), pick(1, "c.json")
    chosen = [i["image_id"] for i in a["items"]]
    assert len(set(chosen)) == 5 and chosen == sorted(chosen)
    assert all(i["full_image"] and i["regions"] == [] for i in a["items"])
    assert a == b and chosen != [i["image_id"] for i in c["items"]]
    assert (a["unit"], a["strategy"], a["budget"]) == ("image", "random", 0)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def _cfg(root, tmp_path, **al):
    return config_from_dict({
        "data": {"root": str(root)},
        "superpixels": {"n_regions": 20, "store": str(tmp_path / "sp"), "workers": 1},
        "model": {"name": "lraspp_mobilenet_v3_large"},
        "train": {"batch_size": 4, "device": "cpu", "scale_range": None},
        "al": {"rounds": 1, "initial_images": 2, "budget_per_round": 15, "mc_passes": 2,
               "train_steps": 2, "out": str(tmp_path / "run"), **al},
        "rounds": {"r1": {"prev": "r0"}},
    })  # fmt: skip


def test_the_engine_refuses_steps_a_round_does_not_have(synthetic_root, tmp_path):
    engine = RoundEngine(_cfg(synthetic_root, tmp_path), RoundLayout(str(tmp_path / "x")))
    with pytest.raises(ValueError, match="round 0 has no step 'score'"):
        engine.run_step("score", 0, None)
    with pytest.raises(ValueError, match="the seed round alone has no previous round"):
        engine.run_step("select", 1, None)
    with pytest.raises(ValueError, match="round r5 is not listed .listed: r1."):
        _cfg(synthetic_root, tmp_path).previous_round(5)


def test_a_run_lists_the_pool_once_and_a_resumed_run_not_at_all(
    synthetic_root, tmp_path, monkeypatch
):
    from alseg_core.pipeline.run import run_rounds

    listings: list[str] = []
    real = cityscapes.list_samples

    def counting(root, split, **kw):
        listings.append(split)
        return real(root, split, **kw)

    monkeypatch.setattr(cityscapes, "list_samples", counting)
    cfg = _cfg(synthetic_root, tmp_path)
    rows = run_rounds(cfg, log=lambda m: None)
    assert [r["round"] for r in rows] == [0, 1]
    assert sorted(listings) == ["train", "val"]  # once each, for the whole run
    listings.clear()
    again = run_rounds(cfg, log=lambda m: None)
    assert listings == [] and [r["mIoU"] for r in again] == [r["mIoU"] for r in rows]


def test_a_pool_manifest_is_only_valid_for_its_dataset(synthetic_root, tmp_path):
    pool = Pool.list(str(synthetic_root), "train", "val")
    pool.write(str(tmp_path / "pool.json"))
    again = Pool.read(str(tmp_path / "pool.json"))
    assert again.samples == pool.samples and again.val == pool.val
    again.check_matches(str(synthetic_root), "train", "val", "pool.json")
    with pytest.raises(ValueError, match="pool.json: lists .* but params ask for elsewhere"):
        again.check_matches("elsewhere", "train", "val", "pool.json")
    with pytest.raises(ValueError, match="not in the pool"):
        pool.sample("nope")
