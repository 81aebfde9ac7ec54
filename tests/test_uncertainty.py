"""Scorers on hand-computable probabilities; streaming MC equals keeping all passes."""

from __future__ import annotations

import math

import pytest
import torch

from alseg_core.active.scorers import (
    MCAccumulator,
    PixelStats,
    bald,
    entropy,
    mc_dropout_scores,
    mc_variance,
)
from alseg_core.models import build_model


def _px(*probs):
    """Probabilities of one pixel -> (1, C, 1, 1)."""
    return torch.tensor(probs, dtype=torch.float64).view(1, -1, 1, 1)


def test_entropy_uniform_and_certain():
    assert entropy(_px(0.25, 0.25, 0.25, 0.25)).item() == pytest.approx(math.log(4))
    assert entropy(_px(1.0, 0.0, 0.0)).item() == pytest.approx(0.0)
    assert entropy(_px(0.5, 0.5)).item() == pytest.approx(math.log(2))


def test_two_disagreeing_certain_passes():
    acc = MCAccumulator()
    acc.update(_px(1.0, 0.0))
    acc.update(_px(0.0, 1.0))
    s = acc.scores()
    # mean = (.5, .5): entropy of mean ln 2; each pass has entropy 0 -> BALD = ln 2;
    # per-class variance = E[p²] - E[p]² = .5 - .25 = .25 for both classes.
    assert s["mc_entropy"].item() == pytest.approx(math.log(2))
    assert s["bald"].item() == pytest.approx(math.log(2))
    assert s["mc_variance"].item() == pytest.approx(0.25)


def test_agreeing_uncertain_passes_have_no_mutual_information():
    acc = MCAccumulator()
    for _ in range(3):
        acc.update(_px(0.5, 0.5))
    s = acc.scores()
    assert s["mc_entropy"].item() == pytest.approx(math.log(2))
    assert s["bald"].item() == pytest.approx(0.0, abs=1e-12)
    assert s["mc_variance"].item() == pytest.approx(0.0, abs=1e-12)


def test_hand_case_three_classes():
    p1, p2 = (0.6, 0.3, 0.1), (0.2, 0.5, 0.3)
    acc = MCAccumulator()
    acc.update(_px(*p1))
    acc.update(_px(*p2))
    mean = [(a + b) / 2 for a, b in zip(p1, p2, strict=True)]
    var = [((a - m) ** 2 + (b - m) ** 2) / 2 for a, b, m in zip(p1, p2, mean, strict=True)]

    def h(p):
        return -sum(x * math.log(x) for x in p)

    s = acc.scores()
    assert s["mc_variance"].item() == pytest.approx(sum(var) / 3)
    assert s["mc_entropy"].item() == pytest.approx(h(mean))
    assert s["bald"].item() == pytest.approx(h(mean) - (h(p1) + h(p2)) / 2)


def test_streaming_equals_keeping_all_passes():
    g = torch.Generator().manual_seed(0)
    passes = torch.softmax(torch.randn(7, 2, 5, 3, 4, generator=g, dtype=torch.float64), dim=2)
    acc = MCAccumulator()
    for p in passes:
        acc.update(p)
    s = acc.scores()
    mean = passes.mean(0)
    torch.testing.assert_close(s["mc_variance"], passes.var(0, unbiased=False).mean(1))
    torch.testing.assert_close(s["mc_entropy"], entropy(mean))
    torch.testing.assert_close(
        s["bald"], entropy(mean) - torch.stack([entropy(p) for p in passes]).mean(0)
    )
    stats = PixelStats.from_samples(passes.numpy())  # numpy in: the same statistics
    torch.testing.assert_close(mc_variance(stats), s["mc_variance"])
    torch.testing.assert_close(bald(stats), s["bald"])


def test_mc_dropout_runs_the_trunk_once_and_the_head_d_times():
    torch.manual_seed(0)
    model = build_model("drn_d_22", num_classes=4)
    calls = {"trunk": 0, "head": 0}
    model.trunk.register_forward_hook(lambda *a: calls.__setitem__("trunk", calls["trunk"] + 1))
    model.head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    out = mc_dropout_scores(
        model, torch.randn(2, 3, 32, 32), passes=5, generator=torch.Generator().manual_seed(0)
    )
    assert calls == {"trunk": 1, "head": 2}  # 1 deterministic + the 5 passes in one batch
    for key in ("softmax_entropy", "mc_entropy", "mc_variance", "bald"):
        assert out[key].shape == (2, 32, 32) and (out[key] >= 0).all()
    assert out["mc_variance"].max() > 0  # dropout made the passes differ
    assert not model.head.dropout.training  # left in eval mode
    with pytest.raises(ValueError, match="passes >= 1"):
        mc_dropout_scores(model, torch.randn(1, 3, 8, 8), passes=0, generator=torch.Generator())


def test_batched_head_passes_equal_one_at_a_time():
    """Chunking the D passes to a memory cap changes neither the draws nor the sums."""
    from alseg_core.active.scorers import mc_statistics

    torch.manual_seed(0)
    model = build_model("drn_d_22", num_classes=4)
    calls = []
    model.head.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 32, 32)
    stats = [
        mc_statistics(model, x, passes=5, generator=torch.Generator().manual_seed(3),
                      pass_memory_mb=cap)
        for cap in (1e-6, 512)
    ]  # fmt: skip
    assert len(calls) == (1 + 5) + (1 + 1)  # one pass per call at the tiny cap, one batch
    for name in ("mean_probs", "mean_sq_probs", "mean_entropy"):
        torch.testing.assert_close(getattr(stats[0], name), getattr(stats[1], name))
    assert stats[0].passes == stats[1].passes == 5
    assert stats[1].mean_probs.shape == (2, 4, 4, 4)  # at the head's resolution (stride 8)


@pytest.mark.parametrize("name", ["drn_d_22", "lraspp_mobilenet_v3_large"])
def test_a_workspace_kept_across_calls_changes_no_statistic(name):
    """The head's buffers kept by the caller across batches (larger, then smaller, then
    larger again: stale bytes left in a grown buffer) give the bytes of fresh buffers."""
    from alseg_core.active.scorers import mc_statistics

    torch.manual_seed(0)
    model = build_model(name, num_classes=4)
    workspace: dict = {}
    for n, seed in ((3, 1), (1, 2), (2, 3)):
        x = torch.randn(n, 3, 32, 48, generator=torch.Generator().manual_seed(seed))
        kept, fresh = (
            mc_statistics(model, x, passes=4, generator=torch.Generator().manual_seed(seed),
                          workspace=ws)
            for ws in (workspace, None)
        )  # fmt: skip
        for field in ("mean_probs", "mean_sq_probs", "mean_entropy"):
            assert torch.equal(getattr(kept, field), getattr(fresh, field)), (n, field)
        assert kept.mean_probs.shape[0] == n
    assert workspace  # the head did keep its buffers there


def test_mc_dropout_draws_from_the_generator_passed_in_not_global_state():
    torch.manual_seed(0)
    model = build_model("drn_d_22", num_classes=4)
    x = torch.randn(1, 3, 32, 32)

    def scores(seed: int) -> torch.Tensor:
        return mc_dropout_scores(model, x, passes=3, generator=torch.Generator().manual_seed(seed))[
            "mc_variance"
        ]

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = scores(7)
    assert torch.equal(torch.random.get_rng_state(), before)  # global state untouched
    torch.manual_seed(999)  # another global state: same result
    torch.testing.assert_close(scores(7), a)
    assert not torch.allclose(scores(8), a)  # another generator seed: other masks


def _phase_means(scores: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean score of the rows (then columns) at each phase modulo ``stride`` / the mean."""
    v = scores.double()
    rows = [v[:, r::stride, :].mean() for r in range(stride)]
    cols = [v[:, :, c::stride].mean() for c in range(stride)]
    return torch.stack(rows + cols) / v.mean()


@pytest.mark.parametrize("name", ["drn_d_22", "lraspp_mobilenet_v3_large"])
def test_no_output_stride_grid_in_the_mc_variance_map(name):
    """Dropout acts at 1/8 resolution. Statistics accumulated there and upsampled once
    have the same mean at every pixel phase (within 2 %); upsampling each pass before
    the softmax ("full") puts a grid of low variance between feature-grid points."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=19)
    x = torch.rand(2, 3, 128, 256)
    spread = {}
    for resolution in ("feature", "full"):
        out = mc_dropout_scores(model, x, passes=40, generator=torch.Generator().manual_seed(0),
                                resolution=resolution)  # fmt: skip
        phases = _phase_means(out["mc_variance"], stride=8)
        spread[resolution] = (phases.min().item(), phases.max().item())
    assert 0.98 < spread["feature"][0] and spread["feature"][1] < 1.02, spread
    assert spread["full"][0] < 0.85 and spread["full"][1] > 1.2, spread


def test_head_passes_run_in_as_few_chunks_as_fit_the_cap_of_even_sizes():
    """20 bytes per pass here (one float feature, masked and masked-copy: 8; logits,
    softmax and a sum for one class: 12): a cap of 190 bytes fits 9 passes, so 10 passes
    run as 5 + 5 (not 9 + 1); 70 bytes fit 3, so 4 chunks of at most 3; 10 fit at once."""
    from alseg_core.active.scorers import passes_per_chunk

    feats = (torch.zeros(1, 1, 1, 1),)
    mb = 2**-20
    assert passes_per_chunk(feats, (1, 1, 1, 1), 10, 190 * mb) == 5
    assert passes_per_chunk(feats, (1, 1, 1, 1), 10, 70 * mb) == 3
    assert passes_per_chunk(feats, (1, 1, 1, 1), 10, 10_000 * mb) == 10
    assert passes_per_chunk(feats, (1, 1, 1, 1), 10, 1 * mb / 2**20) == 1  # below one pass
