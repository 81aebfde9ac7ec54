"""Selection beyond the reference, on hand-made score maps and candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alseg_core.active.balance import class_counts, class_weights
from alseg_core.active.scorers import PixelStats, class_balanced_mc_variance, mc_variance
from alseg_core.active.selection import Candidate, select_greedy, select_under_budget
from alseg_core.active.strategies import get_strategy
from alseg_core.labels import LabelState


def test_cost_aware_ranking_picks_the_cheaper_of_two_equally_uncertain_regions():
    a = Candidate("img", 0, 0.5, 4, pixels=100)
    b = Candidate("img", 1, 0.5, 1, pixels=100)
    # By score alone the tie breaks on region id: region 0, the expensive one.
    assert select_under_budget([a, b], 4).candidates == (a,)
    chosen = select_greedy([a, b], 4, per_cost=True)
    assert chosen.candidates[0] == b  # 0.5 x 100 / 1 > 0.5 x 100 / 4
    # Informative pixels count too: a larger region of the same score and cost wins.
    big = Candidate("img", 2, 0.5, 1, pixels=300)
    assert select_greedy([b, big], 1, per_cost=True).candidates == (big,)


def test_marginal_cost_charges_a_shared_instance_once():
    # Regions 0 and 1 both overlap the predicted car (instance 7); region 1 also a pole.
    r0 = Candidate("img", 0, 0.9, 1, components=(7,))
    r1 = Candidate("img", 1, 0.8, 2, components=(7, 8))
    # Independent costs: 1 + 2 = 3 > budget 2, so region 1 does not fit.
    assert select_under_budget([r0, r1], 2).candidates == (r0,)
    # Marginal: after region 0 the car is paid; region 1 costs 1 (the pole): both fit.
    chosen = select_greedy([r0, r1], 2, marginal_cost=True)
    assert chosen.candidates == (r0, r1) and chosen.spent == 2
    # Each is reported at the raw estimate it was bought at (region 1: 1, not 2).
    assert chosen.bought_at() == (1, 1)
    assert select_under_budget([r0, r1], 3).bought_at() == (1, 2)
    # The calibration factor scales the marginal cost: 1 x 3 = 3 for region 1 -> too much.
    assert select_greedy([r0, r1], 4, marginal_cost=True, cost_factor=3.0).spent == 3


def test_marginal_cost_reranks_regions_that_became_cheaper():
    first = Candidate("a", 0, 1.0, 1, pixels=10, components=(1,))
    shared = Candidate("a", 1, 0.5, 2, pixels=10, components=(1, 2))  # 0.5*10/2 = 2.5
    other = Candidate("b", 0, 0.4, 1, pixels=10, components=(5,))  # 0.4*10/1 = 4
    chosen = select_greedy([first, shared, other], 2, per_cost=True, marginal_cost=True)
    # After `first`, `shared` costs 1 (key 5 > 4) and goes before `other`.
    assert chosen.candidates == (first, shared)


def test_a_cap_per_image_spreads_the_round_over_images():
    cands = [Candidate("a", r, 1.0 - r / 10, 1) for r in range(5)] + [Candidate("b", 0, 0.1, 1)]
    chosen = select_greedy(cands, 4, max_per_image=2)
    assert [(c.image_id, c.region) for c in chosen.candidates] == [("a", 0), ("a", 1), ("b", 0)]


def test_without_options_greedy_equals_the_reference_selection():
    rng = np.random.default_rng(0)
    cands = [Candidate(f"i{k % 5}", k, float(rng.random()), int(rng.integers(1, 6)))
             for k in range(40)]  # fmt: skip
    assert select_greedy(cands, 30) == select_under_budget(cands, 30)


def test_class_weights_are_median_frequency_and_unseen_classes_get_the_top():
    mask = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 255, 255]], np.uint8)  # 6 road, 2 sidewalk
    counts = class_counts([mask], num_classes=3)
    assert counts.tolist() == [6, 2, 0]
    w = class_weights(counts)
    # freq 0.75 and 0.25, median 0.5: weights 2/3 and 2; class 2 never labelled -> 10
    assert w == pytest.approx([2 / 3, 2.0, 10.0])
    assert class_weights(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_class_weighting_raises_a_rare_class_region_above_a_common_one():
    # Two pixels, equally uncertain: pixel 0 predicted class 0 (common), pixel 1 class 1
    # (rare in the labelled set).
    a = torch.tensor([[[0.9, 0.1]], [[0.1, 0.9]]], dtype=torch.float64)  # (C=2, H=1, W=2)
    probs = torch.stack([a, a.flip(0)])[:, None]  # D=2 disagreeing passes, N=1
    logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]], dtype=torch.float64)
    stats = PixelStats.from_samples(probs, logits=logits)
    plain = mc_variance(stats)[0, 0]
    assert plain[0] == pytest.approx(plain[1].item())
    weighted = PixelStats(**{**stats.__dict__, "class_weights": torch.tensor([0.5, 4.0])})
    balanced = class_balanced_mc_variance(weighted)[0, 0]
    assert balanced[1] > balanced[0] and balanced[1] / balanced[0] == pytest.approx(8.0)


def test_new_strategies_read_their_columns_and_reference_ones_are_unchanged():
    row = {"image_id": "x", "height": 2, "width": 2, "image_est_cost": 3,
           "region_est_cost": [1, 2], "region_pixels": [3, 1],
           "region_components": [[0], [0, 1]],
           "region_mc_variance": [0.2, 0.9], "image_mc_variance": 0.4,
           "region_mc_variance_balanced": [0.9, 0.1],
           "image_mc_variance_balanced": 0.5}  # fmt: skip
    state = LabelState()
    plus = get_strategy("mc_variance_plus").candidates([row], state, unit="superpixel")
    assert [(c.score, c.pixels, c.components) for c in plus] == [(0.9, 3, (0,)), (0.1, 1, (0, 1))]
    ref = get_strategy("mc_variance")
    assert ref.plain and ref.candidates([row], state, unit="superpixel")[0].components is None
    per_cost = get_strategy("mc_variance_per_cost").candidates([row], state, unit="superpixel")
    assert [c.score for c in per_cost] == [0.2, 0.9]  # MC variance's own column


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_diverse_selection_skips_near_duplicates_of_what_it_chose():
    """Two near-identical very uncertain regions and a different, less uncertain one:
    by score the budget of 2 buys both duplicates; k-centre buys one and the other."""
    a = Candidate("img", 0, 0.9, 1, embedding=_unit([1.0, 0.0]))
    dup = Candidate("img", 1, 0.89, 1, embedding=_unit([1.0, 0.01]))
    other = Candidate("img2", 0, 0.5, 1, embedding=_unit([0.0, 1.0]))
    low = Candidate("img3", 0, 0.1, 1, embedding=_unit([-1.0, 0.0]))  # far, not uncertain
    assert select_under_budget([a, dup, other, low], 2).candidates == (a, dup)
    from alseg_core.active.selection import select_diverse

    chosen = select_diverse([a, dup, other, low], 2, shortlist=1.5)
    assert chosen.candidates == (a, other) and chosen.spent == 2
    # The shortlist bounds how far down the ranking diversity may reach: with 2x the
    # budget (4 units) the far but certain region is in it and is the farthest from a.
    assert select_diverse([a, dup, other, low], 2, shortlist=2.0).candidates == (a, low)
    # Costs: a unit that no longer fits is skipped for the farthest one that does.
    pricey = Candidate("img2", 0, 0.5, 5, embedding=_unit([0.0, 1.0]))
    assert select_diverse([a, dup, pricey], 2, shortlist=10).candidates == (a, dup)
    with pytest.raises(ValueError, match="img region 0 has none"):
        select_diverse([Candidate("img", 0, 0.5, 1)], 1)


def test_region_embeddings_weigh_each_feature_cell_by_the_region_area_in_it():
    from alseg_core.active.regions import region_embeddings

    emb = np.zeros((2, 1, 2), np.float32)  # k=2, a 1x2 grid: left cell (1,0), right (0,1)
    emb[0, 0, 0], emb[1, 0, 1] = 1.0, 1.0
    regions = np.zeros((4, 8), np.int64)  # 4x8 image: cells are the 4x4 halves
    regions[:, 6:] = 1  # region 1: 8 pixels of the right cell; region 0: 16 left + 8 right
    out = region_embeddings(emb, regions, n_regions=3)
    np.testing.assert_allclose(out[0], _unit([16.0, 8.0]), rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 1.0])
    np.testing.assert_allclose(out[2], [0.0, 0.0])  # no pixel: zeros


def test_diverse_strategy_reads_the_embeddings_the_score_step_writes(tmp_path):
    """Score a pool where two images are the same photo: the diverse strategy, given a
    budget of two images, never buys both copies; plain MC variance may."""
    from alseg_core.active.scoring import ScoreParams, score_pool
    from alseg_core.datasets import cityscapes
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
    from alseg_core.models import build_model

    make_synthetic(str(tmp_path), SyntheticSpec(n_train=4, n_val=1, height=64, width=128))
    samples = cityscapes.list_samples(str(tmp_path), "train")
    samples = [samples[0], samples[0], *samples[1:]]  # image 0 twice
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", num_classes=19)
    grid = (np.arange(64)[:, None] // 16) * 8 + np.arange(128)[None, :] // 16
    table = score_pool(model, samples, region_maps=lambda _i: grid,
                       labelled_masks=lambda _i: None,
                       params=ScoreParams(mc_passes=2, batch_size=8, device="cpu"))  # fmt: skip
    rows = [{**r, "image_est_cost": 10} for r in table.to_pylist()]  # two fit in 20
    rows[1] = {**rows[1], "image_id": "copy"}
    assert rows[0]["embedding_dim"] == 16
    assert len(rows[0]["region_embedding"]) == 32 * 16 * 2  # 32 regions x 16 float16
    assert rows[0]["image_embedding"] == rows[1]["image_embedding"]
    diverse = get_strategy("mc_variance_diverse")
    cands = diverse.candidates(rows, LabelState(), unit="image")
    chosen = [c.image_id for c in diverse.select(cands, 20).candidates]
    assert len(chosen) == 2 and not {rows[0]["image_id"], "copy"} <= set(chosen)
    regions = diverse.candidates(rows[:1], LabelState(), unit="superpixel")
    assert len(regions) == 32 and regions[0].embedding.shape == (16,)
    with pytest.raises(ValueError, match="scores have no 'region_embedding'"):
        diverse.candidates([{**rows[0], "region_embedding": None}], LabelState(),
                           unit="superpixel")  # fmt: skip


def test_reveal_ranks_regions_by_the_instances_they_reveal_each_counted_once():
    """Buying a region reveals every instance it touches, whole: rank by the score mass
    of those instances per marginal cost, not by the region's own mean score."""
    # Region 0: very uncertain itself, but it reveals a small instance (mass 1).
    r0 = Candidate("img", 0, 0.9, 1, components=(0,), gains=(1.0,))
    # Region 1: a calm corner of a large uncertain car (mass 6).
    r1 = Candidate("img", 1, 0.3, 1, components=(1,), gains=(6.0,))
    # Region 2: the same car and a pole (mass 2): 8 / 2 = 4 before, 2 / 1 after the car.
    r2 = Candidate("img", 2, 0.5, 2, components=(1, 2), gains=(6.0, 2.0))
    assert select_under_budget([r0, r1, r2], 2).candidates == (r0, r1)  # by mean score
    chosen = select_greedy([r0, r1, r2], 2, marginal_cost=True, reveal=True)
    # r1 (6 / 1) first; then r2 reveals only the pole, 2 / 1 > r0's 1 / 1.
    assert chosen.candidates == (r1, r2) and chosen.spent == 2
    # Were the car counted again, r2 would rank 8 / 1 and first; with a budget of 1 the
    # car alone is bought.
    assert select_greedy([r0, r1, r2], 1, marginal_cost=True, reveal=True).candidates == (r1,)
    with pytest.raises(ValueError, match="needs marginal_cost"):
        select_greedy([r0], 1, reveal=True)
    from alseg_core.active.selection import candidates_for_image

    with pytest.raises(ValueError, match="overlaps predicted instance 2 but the scores give "
                                         "gains for 2 instances"):  # fmt: skip
        candidates_for_image("img", [0.5], [1], region_components=[[0, 2]],
                             component_gains=[1.0, 2.0])  # fmt: skip
    with pytest.raises(ValueError, match="img region 0: no instance gains"):
        select_greedy([Candidate("img", 0, 0.5, 1, components=(0,))], 1, marginal_cost=True,
                      reveal=True)  # fmt: skip


def test_instances_strategy_reads_the_instance_masses_of_its_column():
    row = {"image_id": "x", "height": 2, "width": 2, "image_est_cost": 3,
           "region_est_cost": [1, 2], "region_pixels": [3, 1],
           "region_components": [[0], [0, 1]],
           "region_mc_variance_balanced": [0.9, 0.1], "image_mc_variance_balanced": 0.5,
           "component_mc_variance_balanced": [2.0, 5.0], "component_pixels": [1, 10],
           "component_mc_variance": [7.0, 7.0]}  # fmt: skip
    strategy = get_strategy("mc_variance_instances")
    assert strategy.units == ("superpixel",) and not strategy.plain
    cands = strategy.candidates([row], LabelState(), unit="superpixel")
    assert [(c.components, c.gains) for c in cands] == [((0,), (2.0,)), ((0, 1), (2.0, 5.0))]
    # Region 1 reveals 2 + 5 for a cost of 2 (3.5 a unit) > region 0's 2 / 1.
    assert strategy.select(cands, 2).candidates == (cands[1],)
    # Per instance, whatever its size: instance 0 is worth 2 / 1 pixel, instance 1
    # 5 / 10 pixels; region 0 (2 a unit) now beats region 1 ((2 + 0.5) / 2).
    mean = get_strategy("mc_variance_instance_mean")
    cands = mean.candidates([row], LabelState(), unit="superpixel")
    assert [c.gains for c in cands] == [(2.0,), (2.0, 0.5)]
    assert mean.select(cands, 2).candidates[0] == cands[0]
    del row["component_mc_variance_balanced"]
    with pytest.raises(ValueError, match="no column 'component_mc_variance_balanced'"):
        strategy.candidates([row], LabelState(), unit="superpixel")
    with pytest.raises(ValueError, match="scores superpixel units only"):
        strategy.check_unit("image")


def test_rarity_weighting_counts_a_rare_class_the_model_does_not_predict():
    """Two pixels, both predicted class 0 in every pass. Pixel 0 wavers between class 0
    and class 1 (common); pixel 1 between class 0 and class 2 (never labelled)."""
    from alseg_core.active.scorers import rarity_weighted_mc_variance

    pass_a = torch.tensor([[[0.9, 0.9]], [[0.1, 0.0]], [[0.0, 0.1]]], dtype=torch.float64)
    pass_b = torch.tensor([[[0.7, 0.7]], [[0.3, 0.0]], [[0.0, 0.3]]], dtype=torch.float64)
    probs = torch.stack([pass_a, pass_b])[:, None]  # (D=2, N=1, C=3, H=1, W=2)
    stats = PixelStats.from_samples(probs, logits=torch.log(probs.mean(0)))
    # Per class, Var = 0.01 for the two wavering classes, 0 for the silent one.
    plain = mc_variance(stats)[0, 0]
    assert plain.tolist() == pytest.approx([0.02 / 3, 0.02 / 3])
    weighted = PixelStats(**{**stats.__dict__, "class_weights": torch.tensor([1.0, 0.5, 10.0])})
    rare = rarity_weighted_mc_variance(weighted)[0, 0]
    # (1 x 0.01 + 0.5 x 0.01) / 3 against (1 x 0.01 + 10 x 0.01) / 3
    assert rare.tolist() == pytest.approx([0.015 / 3, 0.11 / 3])
    # Weighting by the predicted class (class 0 for both) cannot tell them apart.
    balanced = class_balanced_mc_variance(weighted)[0, 0]
    assert balanced[0] == pytest.approx(balanced[1].item())
    assert get_strategy("mc_variance_rare").plain


def test_ripu_scores_where_predicted_classes_meet_not_inside_one_class():
    """A 3x3 map predicted [[0, 0, 0], [0, 1, 1], [0, 1, 1]], every pixel at softmax
    (0.75, 0.25) for its class: the same uncertainty everywhere, so the impurity of each
    pixel's 3x3 window (cells off the map not counted) orders them."""
    from alseg_core.active.scorers import region_impurity, ripu

    pred = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 1, 1]])
    top, other = math.log(0.75), math.log(0.25)
    logits = torch.stack([torch.where(pred == 0, top, other), torch.where(pred == 1, top, other)])
    logits = logits[None].double()  # (N=1, C=2, 3, 3)
    probs = torch.softmax(logits, dim=1)
    stats = PixelStats.from_samples(torch.stack([probs, probs]), logits=logits)

    def h(*counts: int) -> float:
        n = sum(counts)
        return -sum(c / n * math.log(c / n) for c in counts if c)

    impurity = region_impurity(stats)[0]
    assert impurity[1, 1].item() == pytest.approx(h(5, 4))  # the whole map
    assert impurity[0, 0].item() == pytest.approx(h(3, 1))  # 2x2 window at the corner
    assert impurity[2, 2].item() == pytest.approx(h(4))  # == 0: inside class 1
    uncertainty = h(3, 1)  # H(0.75, 0.25)
    assert ripu(stats)[0].numpy() == pytest.approx(impurity.numpy() * uncertainty)
    # Equally uncertain, but the pure corner scores 0 and the two corners whose windows
    # are half one class, half the other (h(2, 2) = ln 2) score most.
    assert impurity[0, 2].item() == impurity[2, 0].item() == pytest.approx(math.log(2))
    assert ripu(stats)[0].flatten().argmax().item() == 2 and ripu(stats)[0, 2, 2].item() == 0
    with pytest.raises(ValueError, match="window must be an odd number"):
        region_impurity(stats, window=2)
    assert get_strategy("ripu").plain and not get_strategy("ripu").needs_mc
