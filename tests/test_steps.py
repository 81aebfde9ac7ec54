"""The pipeline's layout, pool manifest, steps and round engine."""

from __future__ import annotations

import re

import numpy as np
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


def test_round_schedule_gives_at_least_train_epochs_passes_over_the_labelled_images():
    # A superpixel round: regions in 270 images, batch 8 -> 34 steps per epoch; 200 steps
    # alone would be round(5.9) = 6 epochs; al.train_epochs 16 raises it to 16.
    assert round_schedule(TrainConfig(batch_size=8), 270, 200, 16).epochs == 16
    # Where the steps already give more (20 images: 67 epochs) the floor changes nothing.
    assert round_schedule(TrainConfig(batch_size=8), 20, 200, 16).epochs == 67


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


def test_a_superpixel_seed_is_random_regions_over_the_whole_pool(tmp_path):
    from alseg_core.pipeline.steps.select import seed_region_candidates

    counts = {"a": 3, "b": 2, "c": 4}  # 9 regions in all
    every = seed_region_candidates(counts, 20, np.random.default_rng(0))
    assert sorted((c.image_id, c.region) for c in every) == [
        ("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1),
        ("c", 0), ("c", 1), ("c", 2), ("c", 3),
    ]  # fmt: skip
    some = seed_region_candidates(counts, 4, np.random.default_rng(0))
    assert len({(c.image_id, c.region) for c in some}) == 4
    assert all(c.est_cost == 0 for c in some)  # no model estimate: calibration skips them
    summary = select_step(
        0, pool_ids=list(counts), scores=None, labelled=None, out=str(tmp_path / "s.json"),
        unit="superpixel", strategy="mc_variance", budget=9, initial_images=5, seed=0,
        seed_regions=(counts, "fp", 4),
    )  # fmt: skip
    assert (summary["unit"], summary["strategy"], summary["budget"]) == ("superpixel", "random", 4)
    assert summary["estimated_spent"] == 4 and summary["superpixel_store"] == "fp"
    assert sum(len(i["regions"]) for i in summary["items"]) == 4
    assert not any(i["full_image"] for i in summary["items"])


def test_a_superpixel_seed_round_labels_regions_not_whole_images(synthetic_root, tmp_path):
    from alseg_core.labels import load_state
    from alseg_core.pipeline.run import run_layout, run_rounds

    cfg = _cfg(synthetic_root, tmp_path, rounds=0, seed_unit="superpixel", seed_budget=12)
    run_rounds(cfg, log=lambda m: None)
    state = load_state(run_layout(cfg).labelled(0))
    assert sum(len(e.regions) for e in state.images.values()) == 12
    assert not any(e.full_image for e in state.images.values())
    assert state.history[0].cost >= 12  # each region holds at least one instance
    with pytest.raises(ValueError, match="al.seed_unit 'superpixel' needs al.seed_budget >= 1"):
        _cfg(synthetic_root, tmp_path, seed_unit="superpixel")


def test_plateau_training_goes_on_until_val_miou_stops_and_keeps_the_best(synthetic_root, tmp_path):
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import Plateau, train_step

    cfg = _cfg(synthetic_root, tmp_path, rounds=0)
    engine = RoundEngine(cfg, RoundLayout(str(tmp_path / "base")))
    engine.superpixels()
    for step in ("select", "request", "annotate", "merge"):
        engine.run_step(step, 0, None)
    labelled = engine.layout.labelled(0)

    def train(out, plateau):
        return train_step(
            engine.pool, labelled, str(tmp_path / out), previous_model=None, finetune=False,
            model=cfg.model, train=cfg.train, train_steps=2, plateau=plateau,
        )  # fmt: skip

    plain = train("plain.pt", None)
    assert plain.val_curve == ()
    # A tolerance no chunk can reach stops after the first extra chunk.
    stopped = train("stopped.pt", Plateau(chunks=3, tol=1.0))
    assert len(stopped.val_curve) == 2
    assert stopped.epochs_run == 2 * plain.epochs_run
    # The kept checkpoint is the best chunk's: its val mIoU is the curve's maximum.
    kept = evaluate_step(str(tmp_path / "stopped.pt"), engine.pool.val, model_name=cfg.model.name,
                         batch_size=4, device="cpu")["mIoU"]  # fmt: skip
    assert kept == pytest.approx(max(stopped.val_curve), abs=1e-9)
    # The first chunk's val mIoU is the plain schedule's (same seed, same steps).
    plain_miou = evaluate_step(
        str(tmp_path / "plain.pt"), engine.pool.val, model_name=cfg.model.name, batch_size=4,
        device="cpu",
    )["mIoU"]  # fmt: skip
    assert stopped.val_curve[0] == pytest.approx(plain_miou, abs=1e-9)


@pytest.mark.parametrize(
    ("patience", "chunks_run", "kept"),
    [
        (1, 2, "c-2.pt"),  # stops at the first flat chunk (0.312: +0.002 < tol)
        (2, 5, "c-5.pt"),  # a flat chunk, then +0.018: goes on; two flat in a row: stops
        (3, 6, "c-5.pt"),  # the cap of 6 chunks comes first; the best is still chunk 5
    ],
)
def test_plateau_patience_counts_flat_chunks_in_a_row(patience, chunks_run, kept):
    from alseg_core.pipeline.steps.train import Plateau, _Chunks
    from alseg_core.training import TrainResult

    # Val mIoU after the first chunk and after each further one (by checkpoint name).
    val = {"c-0.pt": 0.300, "c-1.pt": 0.310, "c-2.pt": 0.312, "c-3.pt": 0.330,
           "c-4.pt": 0.331, "c-5.pt": 0.3345, "c-6.pt": 0.320}  # fmt: skip
    fitted = []

    def fit(url, init):
        fitted.append((url, init))
        return TrainResult(url, epochs_run=2, resumed_from_epoch=0, final_loss=1.0, seconds=0.0)

    run = _Chunks("c-0.pt", val["c-0.pt"], fit("c-0.pt", None))
    run.go_on(fit, 6, Plateau(6, 0.005, patience), val.__getitem__, "c")
    assert len(run.curve) == 1 + chunks_run
    assert run.best_url == kept and run.best == val[kept]
    assert run.epochs == 2 * (1 + chunks_run)
    # Each chunk starts from the one before it, flat or not.
    assert fitted[1:] == [(f"c-{n}.pt", f"c-{n - 1}.pt") for n in range(1, chunks_run + 1)]


def test_plateau_patience_must_be_at_least_one(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match=r"al.plateau_patience must be >= 1, got 0"):
        _cfg(synthetic_root, tmp_path, plateau_patience=0)


@pytest.fixture(scope="module")
def two_rounds(synthetic_root, tmp_path_factory):
    """A run through round 1's merge: whole seed images and superpixels in others."""
    tmp_path = tmp_path_factory.mktemp("two-rounds")
    cfg = _cfg(synthetic_root, tmp_path)
    engine = RoundEngine(cfg, RoundLayout(str(tmp_path / "base")))
    engine.superpixels()
    for step in ("select", "request", "annotate", "merge", "train"):
        engine.run_step(step, 0, None)
    for step in ("score", "select", "request", "annotate", "merge"):
        engine.run_step(step, 1, 0)
    return cfg, engine


def test_pseudo_labels_fill_only_unpaid_pixels_with_confident_predictions(two_rounds, tmp_path):
    from alseg_core import storage
    from alseg_core.inference import predict
    from alseg_core.labels import load_state, read_mask, state_url
    from alseg_core.pipeline.steps.train import pseudo_label_items
    from alseg_core.storage import read_image
    from alseg_core.training import load_model
    from alseg_core.types import IGNORE_INDEX

    cfg, engine = two_rounds
    labelled, model = engine.layout.labelled(1), engine.layout.model(0)
    state_before = storage.read_bytes(state_url(labelled))
    paid = load_state(labelled).images
    assert any(not e.full_image for e in paid.values())  # partial masks to fill

    def items(threshold, folder):
        return pseudo_label_items(engine.pool, labelled, model, str(tmp_path / folder),
                                  threshold, model_name=cfg.model.name, device="cpu")  # fmt: skip

    # Any confidence: every pool image, paid pixels as paid, every other pixel the
    # model's prediction (what `predict` gives).
    every = {i.image_id: read_image(i.label_url) for i in items(1e-9, "every")}
    assert sorted(every) == sorted(engine.pool.samples)
    predicted = dict(predict(load_model(model), list(engine.pool.samples.values()), device="cpu"))
    for sample, pred in predicted.items():
        own = (read_mask(labelled, sample.image_id) if sample.image_id in paid
               else np.full(pred.shape, IGNORE_INDEX, np.uint8))  # fmt: skip
        np.testing.assert_array_equal(
            every[sample.image_id], np.where(own != IGNORE_INDEX, own, pred)
        )
    # Confidence 1 (no softmax reaches it here): the paid labels alone, images without
    # any skipped.
    paid_only = items(1.0, "paid")
    assert sorted(i.image_id for i in paid_only) == sorted(paid)
    for item in paid_only:
        np.testing.assert_array_equal(
            read_image(item.label_url), read_mask(labelled, item.image_id)
        )

    # In between (the median confidence over the pool): more than the paid labels, fewer
    # than every pixel.
    import torch

    from alseg_core.datasets.transforms import to_tensor

    net = load_model(model).eval()
    with torch.no_grad():
        conf = [torch.softmax(net(to_tensor(cityscapes.read_image(s))[None]), 1).max(1).values
                for s in engine.pool.samples.values()]  # fmt: skip
    median = float(torch.cat([c.flatten() for c in conf]).median())

    def labelled_pixels(found):
        return sum(int((read_image(i.label_url) != IGNORE_INDEX).sum()) for i in found)

    half = labelled_pixels(items(median, "half"))
    assert labelled_pixels(paid_only) < half < sum(m.size for m in every.values())
    # The labelled set is untouched.
    assert storage.read_bytes(state_url(labelled)) == state_before
    with pytest.raises(ValueError, match="al.pseudo_threshold must be in"):
        items(0.0, "zero")


def test_self_training_goes_on_from_the_best_checkpoint_and_keeps_the_best(two_rounds, tmp_path):
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import Plateau, SelfTraining, round_schedule, train_step

    cfg, engine = two_rounds
    labelled = engine.layout.labelled(1)

    def train(out, self_training):
        return train_step(
            engine.pool, labelled, str(tmp_path / out), previous_model=engine.layout.model(0),
            finetune=True, model=cfg.model, train=cfg.train, train_steps=2,
            self_training=self_training, plateau=Plateau(chunks=0, tol=1.0),
        )  # fmt: skip

    # Threshold 0 is off: the plain schedule, no val curve.
    plain = train("plain.pt", SelfTraining(threshold=0.0))
    assert plain.val_curve == () and plain.self_training_chunks == 0
    # The plateau rule's tolerance 1: one self-training chunk, then stop.
    st = train("st.pt", SelfTraining(threshold=0.5, chunks=3))
    assert len(st.val_curve) == 2 and st.self_training_chunks == 1
    # The self-training chunk runs the round's schedule over the pseudo-labelled images
    # (2 steps at batch 4 over up to 24 images: one epoch).
    pool_epochs = round_schedule(cfg.train, len(engine.pool.samples), 2).epochs
    assert st.epochs_run == plain.epochs_run + pool_epochs
    kept = evaluate_step(str(tmp_path / "st.pt"), engine.pool.val, model_name=cfg.model.name,
                         batch_size=4, device="cpu")["mIoU"]  # fmt: skip
    assert kept == pytest.approx(max(st.val_curve), abs=1e-9)
    # The engine's round line shows both parts (what the benchmark's diagnosis reads).
    from dataclasses import replace

    st_cfg = replace(cfg, al=replace(cfg.al, pseudo_threshold=0.5, plateau_tol=1.0))
    line = RoundEngine(st_cfg, engine.layout).run_step("train", 1, 0)
    assert re.search(
        r"val mIoU by chunk [0-9.]+, then self-training [0-9.]+ \(kept the best\)", line
    ), line
