"""Label efficiency: strategies x units x seeds at equal annotation cost.

For each strategy and unit, the active-learning loop (``alseg run``: the round engine
the pipeline runs) runs R rounds with the same per-round budget for each seed, on the
embedded synthetic dataset; full supervision (every pool image labelled) trained to a
plateau gives the ceiling, with the equal-steps figure beside it. Runs are independent
processes, two at a time; the runs of a seed share its seed round (the same random
images, labels and round-0 model: trained once, copied into each run). The report adds
a diagnosis per strategy (true cost per selected unit, labelled pixels per cost unit,
true cost spent in each round against the budget, the share of round trainings still
rising when the plateau rule's cap stopped them, per-class IoU at the last round). Each
run's step lines are kept in its folder (``bench.log``).

Writes ``<out>.csv`` (one row per strategy, unit, seed, round: cost, mIoU and a digest of
the round's weights, which ``--check`` compares), ``<out>.png`` (mean mIoU
vs % of full cost, ±1 std band over seeds, one line per strategy x unit, the ceiling)
and ``<out>.md`` (mIoU at 10/25/50 % of full cost as % of the ceiling, the cost needed
to reach 95 % of it, and whether superpixel MC variance beats random at every round by
more than one std).

    # ~3 h on 2 cores (target < 60 min); the ceilings alone: --ceilings-only (~1 h)
    .venv/bin/python bench/label_efficiency.py --preset quick \
        --ceilings-from bench/results/label_efficiency_quick_ceilings
    .venv/bin/python bench/label_efficiency.py --preset full    # GPU: DRN-D-22, 10 rounds
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import code, describe  # noqa: E402
from _machine import footer as _footer  # noqa: E402
from label_efficiency_report import ceiling_line, compare, summarise  # noqa: E402

#: Runs named ``<strategy>+<variant>``: the strategy with these ``al`` settings. The
#: superpixel seed spends about what the 20 random seed images cost (≈35 each at 64x128).
VARIANTS: dict[str, dict] = {
    "sp_seed": {"seed_unit": "superpixel", "seed_budget": 700},
    # Each round trained on until val mIoU stops improving (up to 2 more chunks of the
    # round's steps): is a curve limited by the steps its rounds were given?
    "plateau": {"plateau_chunks": 2, "plateau_tol": 0.005},
}

PRESETS: dict[str, dict] = {
    # The 200-step rule (each round 200 steps, then one plateau chunk), the ``quick``
    # preset until 2026-11-29 (``quick`` is now this with rounds of at least 16 epochs,
    # below). Sized from measured throughput on 2 CPU cores: LR-ASPP trains ~55 images/s
    # at 64x128, so a 200-step chunk trains in ~27 s with two runs sharing the cores; 5
    # trainings (up to 2 chunks each) + 4 scorings per run, 18 runs two at a time + 3
    # ceilings trained to a plateau (~20 min of one core each). Measured on a 2-core Xeon
    # 2.1 GHz: 101 min at 1e-3 (1835326), 89 min at 3e-3 in three sittings (681010e):
    # each run ~6.5-7 min. 4 rounds of 1500 cover 52-65 % of full cost. The
    # superpixel seed round (measured at fd50b2b: it costs more per pixel) runs in
    # ``ablation``. Beside the reference: ``mc_variance_plus`` (cost-aware ranking,
    # marginal cost, class balance, a cap per image) and ``ripu`` (region impurity);
    # ``mc_variance_diverse`` (level with MC variance at 75ecb1e) and the single
    # modifiers run in ``ablation``. The ceiling gets up to 6 chunks of 16 epochs: with 3
    # (75ecb1e) it still gained 0.02 mIoU in its last chunk.
    "quick_steps": {
        "synthetic": {"n_train": 300, "n_val": 50, "height": 64, "width": 128, "seed": 0},
        "superpixels": {"compactness": 0.02},
        "model": {"name": "lraspp_mobilenet_v3_large"},
        # AdamW at 3e-3: LR-ASPP trains from scratch here, and at 1e-3 (the 3-seed result
        # at 1835326, now ``quick_lr1``) most rounds were still gaining when the plateau
        # rule stopped them and the "converged" ceiling was the learning rate's plateau
        # (bench/results/lr_sweep.md, seed 0: the seed round's 20 images 0.192 after 200
        # steps at 3e-3 against 0.199 after 600 at 1e-3; the full pool for the AL run's
        # steps 0.344 against 0.306). 1e-2 (``quick_lr10``, seed 0) lifts the ceiling to
        # 0.401 but leaves every strategy level with random from 30 % of cost on.
        "train": {"lr": 0.003},
        # Each round trains 200 steps, then a chunk of 200 more unless val mIoU gained
        # < 0.005 in the first: the same rule for every strategy.
        "al": {"rounds": 4, "initial_images": 20, "budget_per_round": 1500, "mc_passes": 10,
               "train_steps": 200, "plateau_chunks": 1, "plateau_tol": 0.005},
        "runs": [("image", "random"), ("image", "mc_variance"), ("superpixel", "random"),
                 ("superpixel", "mc_variance"), ("superpixel", "mc_variance_plus"),
                 ("superpixel", "ripu")],
        "seeds": [0, 1, 2],
        "jobs": 2,
        "ceiling_chunk": 16, "ceiling_tol": 0.005, "ceiling_max_chunks": 6,
    },
    # The synthetic default resolution, each round trained on until val mIoU stops
    # improving (up to 2 more chunks of 200 steps: with 200 steps alone, as at
    # 560e73a-e4c545e, the rounds' models were step-limited, e.g. round 0 at 0.198
    # against 0.241 with the rule, 33d03ca). The headline comparison only: random and MC
    # variance on both units; the refinements are ``ablation`` (same settings, so
    # --ceilings-from and --merge join the two). Measured with the rule: ~32-38 min per pair
    # of runs two at a time, ~35 min per ceiling.
    "standard": {
        "synthetic": {"n_train": 400, "n_val": 50, "height": 128, "width": 256, "seed": 0},
        "superpixels": {"compactness": 0.01},
        "model": {"name": "lraspp_mobilenet_v3_large"},
        "al": {"rounds": 5, "initial_images": 20, "budget_per_round": 800, "mc_passes": 10,
               "train_steps": 200, "plateau_chunks": 2, "plateau_tol": 0.005},
        "strategies": ["random", "mc_variance"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1, 2],
        "jobs": 2,
        "ceiling_chunk": 8, "ceiling_tol": 0.005, "ceiling_max_chunks": 4,
    },
    "full": {
        "synthetic": {"n_train": 1000, "n_val": 100, "height": 256, "width": 512, "seed": 0},
        "superpixels": {"compactness": 0.005},
        "model": {"name": "drn_d_22"},
        "al": {"rounds": 10, "initial_images": 50, "budget_per_round": 2000, "mc_passes": 10,
               "train_steps": 500, "plateau_chunks": 2, "plateau_tol": 0.005},
        "strategies": ["random", "softmax_entropy", "mc_entropy", "mc_variance", "bald",
                       "learning_loss", "mc_variance_balanced", "mc_variance_rare",
                       "mc_variance_per_cost", "mc_variance_plus", "mc_variance_diverse",
                       "mc_variance_instances", "mc_variance_instance_mean", "ripu"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1, 2],
        "jobs": 1,
        "ceiling_chunk": 10, "ceiling_tol": 0.005, "ceiling_max_chunks": 6, "ceiling_patience": 2,
    },
    # For the test suite: two rounds on a handful of images.
    "tiny": {
        "synthetic": {"n_train": 24, "n_val": 4, "height": 48, "width": 96, "seed": 0},
        "superpixels": {"compactness": 0.02, "n_regions": 30},
        "model": {"name": "lraspp_mobilenet_v3_large"},
        "al": {"rounds": 2, "initial_images": 2, "budget_per_round": 60, "mc_passes": 2,
               "train_steps": 2, "plateau_chunks": 1, "plateau_tol": 0.005},
        "strategies": ["random", "mc_variance", "mc_variance_instances"],
        "units": ["image", "superpixel"],
        "seeds": [0, 1],
        "jobs": 2,  # two processes as the real presets (CI has 2 cores: ~half the time)
        "ceiling_chunk": 1, "ceiling_tol": 0.005, "ceiling_max_chunks": 2,
    },
}  # fmt: skip
# ``quick_steps`` at other learning rates: 1e-3 (the 3-seed result at 1835326, the quick
# preset until 2026-11-29) and 1e-2 (lr_sweep.md: the full pool in the AL run's steps
# 0.359 against 0.344 at 3e-3). ``quick_lr3`` is ``quick_steps`` (its seed-0 part, ca7589e).
PRESETS["quick_lr1"] = {**PRESETS["quick_steps"], "train": {"lr": 0.001}}
PRESETS["quick_lr3"] = PRESETS["quick_steps"]
PRESETS["quick_lr10"] = {**PRESETS["quick_steps"], "train": {"lr": 0.01}}
# ``quick``: ``quick_steps`` with each round's chunk at least 16 epochs over its labelled
# images (al.train_epochs): with 200 steps alone a superpixel round (a few regions in
# each of ~270 images) passes over its labelled pixels ~6 times, an image round of 100
# images 16 times, and converged_sets_quick_s0.md found the superpixel sets the most
# step-limited (+0.053 mIoU trained like the ceiling, against +0.019 for image random).
# 16 epochs is what image rounds got at ~100 images. The headline four runs and
# ``mc_variance_plus``. The ceiling is ``quick_steps``' schedule (the rule is
# ``NOT_IN_CEILING``) with two flat chunks of patience, trained alone by
# ``--ceilings-only`` (bench/results/label_efficiency_quick_ceilings), which
# ``--merge ... --ceilings-from`` joins to the runs' parts.
# Superpixel runs train ~2.5x the steps of ``quick_steps``': measured two at a time on
# the 2-core Xeon (f72871a, seed 0), an image run 706 s, a superpixel run 1262-1370 s;
# ~3 h for 3 seeds (target < 60 min: not met). ``quick_epochs`` is its name until
# 2026-11-29, which the parts in bench/results/label_efficiency_quick_epochs_* carry.
PRESETS["quick"] = {
    **PRESETS["quick_steps"],
    "al": {**PRESETS["quick_steps"]["al"], "train_epochs": 16},
    "runs": PRESETS["quick_steps"]["runs"][:5],
    # Two flat chunks in a row end the ceiling: with one, seed 2's stopped at 0.357
    # (0.353 -> 0.357) where seeds 0-1 went on to 0.381-0.390.
    "ceiling_patience": 2,
}
PRESETS["quick_epochs"] = PRESETS["quick"]
# ``quick``'s four headline runs with up to two extra chunks a round instead of one:
# trained like the ceiling, seed 2's last superpixel sets reach 97-101 % of it where their
# own models reach 93 % (bench/results/converged_sets_quick_s2.md): is the rule still
# limiting the curves? Its own seed rounds (the rule trains them too). Seed 2's
# superpixel runs came first (label_efficiency_quick_plateau2_s2, when the preset had
# those two alone); the others join them with ``--units`` and ``--merge``.
PRESETS["quick_plateau2"] = {
    **PRESETS["quick"],
    "al": {**PRESETS["quick"]["al"], "plateau_chunks": 2},
    "runs": PRESETS["quick"]["runs"][:4],
}
# ``quick``'s superpixel pair with each round trained as the ceiling is: up to 6 more
# chunks, stopping at two flat chunks in a row (al.plateau_patience 2, the ceiling's
# patience). With one flat chunk ending a round, 40-53 % of ``quick_plateau2``'s trainings
# were still rising at its cap, and converged_sets found the rounds' sets worth more than
# their own models: do converged rounds move the curves, or MC variance against random?
# The superpixel pair on 3 seeds (label_efficiency_quick_patience: parts _s0, 56 min, and
# _s12, 84 min): no training still rising at the cap; superpixel MC variance 71.0 / 86.9 /
# 97.1 % of the ceiling at 10 / 25 / 50 % of cost, 95 % at 43.2 % (quick: 80.5 % at 25 %,
# 95 % not reached). Its runs are ``quick``'s five, so the whole headline can be run
# under this rule a unit or a seed at a time (``--units image``) and merged.
PRESETS["quick_patience"] = {
    **PRESETS["quick"],
    "al": {**PRESETS["quick"]["al"], "plateau_chunks": 6, "plateau_patience": 2},
}
# Every refinement on its own, superpixel unit, in the ``standard`` setting: run with
# ``--ceilings-from`` a standard result and join it with ``--merge`` (~35 min a pair of
# runs: a strategy or a seed per sitting).
PRESETS["ablation"] = {
    **PRESETS["standard"],
    "strategies": ["mc_variance_balanced", "mc_variance_rare", "mc_variance_per_cost",
                   "mc_variance_plus", "mc_variance_diverse", "mc_variance_instances",
                   "mc_variance_instance_mean", "ripu"],
    "units": ["superpixel"],
    "extra_runs": [("superpixel", "mc_variance_plus+sp_seed")],
}  # fmt: skip


def _config(
    preset: dict, work: Path, *, unit: str, strategy: str, seed: int, extra: dict,
    name: str | None = None,
):  # fmt: skip
    from alseg_core.config import config_from_dict

    raw = {
        "data": {"root": str(work / "data")},
        "synthetic": preset["synthetic"],
        "superpixels": {**preset["superpixels"], "store": str(work / "superpixels"), "workers": 1},
        "model": preset["model"],
        "train": {**preset.get("train", {}), "seed": seed, "device": "auto"},
        "al": {
            **preset["al"],
            "unit": unit,
            "strategy": strategy,
            "seed": seed,
            "out": str(work / "runs" / f"{unit}-{name or strategy}-s{seed}"),
            **extra,
        },
    }
    return config_from_dict(raw, source=f"preset ({unit}, {strategy}, seed {seed})")


# The plateau rule's chunks (self-training chunks after them, if any, are not its own).
_TRAINED = re.compile(
    r"round (\d+): trained .*?, val mIoU by chunk ([0-9.]+(?: -> [0-9.]+)*)"
    r"(?:, then self-training [0-9.]+(?: -> [0-9.]+)*)? \(kept the best\)"
)


def still_rising(log: list[str], chunks: int, tol: float) -> float | None:
    """Share of a run's round trainings that the plateau rule stopped at its cap while val
    mIoU was still rising: every one of the ``chunks`` extra chunks ran and the last one
    gained >= ``tol`` over the best before it (a model limited by steps). Read from the
    round engine's training lines ("val mIoU by chunk a -> b -> c"); None without the rule.
    """
    curves = {}
    for line in log:
        if m := _TRAINED.search(line):
            curves[int(m.group(1))] = [float(v) for v in m.group(2).split(" -> ")]
    if chunks < 1 or not curves:
        return None
    capped = [
        len(c) == chunks + 1 and c[-1] - max(c[:-1]) >= tol for c in curves.values()
    ]  # fmt: skip
    return sum(capped) / len(capped)


def _diagnose(cfg, log: list[str]) -> dict:
    """What a finished run's budget bought: true cost per unit and labelled pixels per
    cost unit over the acquisition rounds, the true cost each round spent (against
    ``al.budget_per_round``), the share of trainings still rising at the plateau cap (from
    the run's step lines ``log``) and the per-class IoU of the last round's model."""
    from alseg_core import storage
    from alseg_core.labels import load_state, read_mask
    from alseg_core.pipeline.run import run_layout

    layout, rounds, budget = run_layout(cfg), cfg.al.rounds, cfg.al.budget_per_round
    rising = still_rising(log, cfg.al.plateau_chunks, cfg.al.plateau_tol)

    def labelled_pixels(k: int) -> int:
        root = layout.labelled(k)
        return sum(int((read_mask(root, i) != 255).sum()) for i in load_state(root).images)

    history = load_state(layout.labelled(rounds)).history
    acquired = [h for h in history if h.round >= 1]
    units = sum(h.n_regions or h.n_images for h in acquired)
    cost = sum(h.cost for h in acquired)
    pixels = labelled_pixels(rounds) - labelled_pixels(0)
    per_class = storage.read_json(layout.metrics(rounds))["per_class_IoU"]
    return {
        "cost_per_unit": cost / max(1, units),
        "pixels_per_cost": pixels / max(1, cost),
        "budget": budget,
        "spend_by_round": [
            float(sum(h.cost for h in acquired if h.round == k)) for k in range(1, rounds + 1)
        ],
        "still_rising": rising,
        "per_class": per_class,
    }


def _variant(name: str) -> tuple[str, dict]:
    """``strategy+variant`` -> (strategy, its extra ``al`` settings)."""
    strategy, _, variant = name.partition("+")
    return strategy, (VARIANTS[variant] if variant else {})


def seed_round_key(strategy: str, seed: int) -> tuple:
    """What a run's seed round (round 0) depends on besides the preset: the seed, the
    variant's ``al`` settings (a superpixel seed round, another training rule) and whether
    the strategy trains a loss-prediction head. Runs with one key have byte-identical
    seed rounds (the same random images, labels and training): it is trained once."""
    from alseg_core.active.strategies import get_strategy

    real, extra = _variant(strategy)
    return seed, json.dumps(extra, sort_keys=True), get_strategy(real).loss_prediction


def _seed_folder(work: Path, key: tuple) -> Path:
    seed, extra, loss_head = key
    tag = hashlib.sha256(f"{extra}|{loss_head}".encode()).hexdigest()[:8]
    return work / "seed-rounds" / f"s{seed}-{tag}"


def _seed_round(job: tuple) -> list[str]:
    """Round 0 of ``strategy`` alone (``al.rounds`` = 0) in its shared folder; returns the
    step lines (each run that copies it logs them as its own)."""
    preset, work, unit, strategy, seed = job
    import torch

    from alseg_core.pipeline.run import run_rounds

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // preset["jobs"]))
    real, extra = _variant(strategy)
    folder = _seed_folder(Path(work), seed_round_key(strategy, seed))
    cfg = _config(
        {**preset, "al": {**preset["al"], "rounds": 0}}, Path(work), unit=unit,
        strategy=real, seed=seed, extra={**extra, "out": str(folder)}, name=strategy,
    )  # fmt: skip
    said: list[str] = []
    run_rounds(cfg, log=said.append)
    return [line for line in said if line.startswith("  round 0:")]


def _one_run(job: tuple) -> tuple[list[dict], dict]:
    preset, work, unit, strategy, seed, seed_log = job
    import torch

    from alseg_core.pipeline.run import run_layout, run_rounds

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // preset["jobs"]))
    real, extra = _variant(strategy)
    cfg = _config(
        preset, Path(work), unit=unit, strategy=real, seed=seed, extra=extra, name=strategy
    )
    # The seed round this run shares with the other runs of its key, trained once: its
    # outputs (not its curve point, which names the strategy) become this run's round 0,
    # which the round engine then skips.
    shared = _seed_folder(Path(work), seed_round_key(strategy, seed)) / "r0"
    shutil.copytree(shared, Path(cfg.al.out) / "r0", ignore=shutil.ignore_patterns("publish"))
    start = time.perf_counter()
    said: list[str] = [f"{line} (shared seed round)" for line in seed_log]
    rows = run_rounds(cfg, log=said.append)  # the round engine, as the pipeline
    last, seconds = rows[-1], time.perf_counter() - start
    print(
        f"  {unit:>10} {strategy:<20} seed {seed}: final mIoU {last['mIoU']:.4f} "
        f"at {last['pct_full_cost']:.1f}% [{seconds:.0f}s]",
        flush=True,
    )
    layout = run_layout(cfg)
    weights = {str(r["round"]): weights_digest(layout.model(int(r["round"]))) for r in rows}
    rows = [{"strategy": strategy, "unit": unit, "seed": seed, **r,
             "weights": weights[str(r["round"])]} for r in rows]  # fmt: skip
    # Kept for --from-work (the rounds' models are pruned below).
    Path(layout.base, "weights.json").write_text(json.dumps(weights))
    # The run's step lines, kept beside it (what trained how long, what was selected);
    # written last: it marks the run done.
    Path(layout.base, "bench.log").write_text("\n".join(said) + "\n")
    _prune_checkpoints(layout, cfg.al.rounds)
    return rows, _diagnose(cfg, said)


def weights_digest(checkpoint: str) -> str:
    """The first 12 hex digits of a sha256 over a checkpoint's weights (names and bytes in
    name order): a ``--check`` rerun whose mIoU agrees to 4 digits can still train other
    weights, and two reruns that differ show which round's training first did."""
    import torch

    from alseg_core import storage

    state = storage.load_checkpoint(checkpoint)["model_state"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        value = state[name]
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def _prune_checkpoints(layout, rounds: int) -> None:
    """Drop every round's model but the last once a run is done: the curve and the
    diagnosis need only the metrics (a DRN-D-22 checkpoint is ~190 MB, a full preset
    would keep 540 of them)."""
    for k in range(rounds):
        Path(layout.model(k)).unlink(missing_ok=True)


def ceiling_patience(preset: dict) -> int:
    """Flat chunks in a row before the ceiling stops (1 where a preset does not say)."""
    return preset.get("ceiling_patience", 1)


def train_to_plateau(
    fit: Callable[[str, int, str | None], float], folder: Path, first: int, chunk: int,
    preset: dict,
) -> list[float]:  # fmt: skip
    """The ceiling's schedule: ``fit(url, epochs, init)`` (train to the checkpoint ``url``
    for ``epochs`` from ``init``'s weights, return val mIoU) for ``first`` epochs from
    scratch, then chunks of ``chunk`` epochs, each from the previous chunk's weights, until
    ``ceiling_patience`` chunks in a row (default 1) each gained < ``ceiling_tol`` over the
    best before it, or ``ceiling_max_chunks`` ran. One chunk of patience stops on a noisy
    flat step: quick's seed 2 stopped at 0.357 after two chunks (0.353 -> 0.357) where
    seeds 0-1 went on to 0.381-0.390. Returns val mIoU after each part (checkpoints
    ``equal-steps.pt``, ``chunk-N.pt``)."""
    ckpt = str(folder / "equal-steps.pt")
    curve = [fit(ckpt, first, None)]
    return curve + chunks_to_plateau(fit, folder / "chunk", ckpt, curve[0], chunk, preset)


def chunks_to_plateau(
    fit: Callable[[str, int, str | None], float], prefix: Path, ckpt: str, best: float,
    chunk: int, preset: dict,
) -> list[float]:  # fmt: skip
    """The ceiling's chunks from ``ckpt`` (val mIoU ``best`` so far): ``<prefix>-N.pt``
    until ``ceiling_patience`` chunks in a row each gained < ``ceiling_tol`` over the best
    before it, or ``ceiling_max_chunks`` ran; val mIoU after each."""
    from alseg_core.pipeline.steps.train import Plateau

    rule = Plateau(preset["ceiling_max_chunks"], preset["ceiling_tol"], ceiling_patience(preset))
    curve: list[float] = []
    for n in range(rule.chunks):
        nxt = f"{prefix}-{n + 1}.pt"
        curve.append(fit(nxt, chunk, ckpt))
        ckpt = nxt
        if rule.reached([best, *curve]):
            break
    return curve


def run_steps(cfg) -> int:
    """Optimiser steps of one AL run without the plateau rule's extra chunks: the
    equal-steps ceiling's budget."""
    return cfg.al.train_steps * (cfg.al.rounds + 1)


def _ceiling(job: tuple) -> dict:
    """Every pool image labelled: (a) as many optimiser steps as one AL run in total;
    (b) then on, in chunks of ``ceiling_chunk`` epochs (each from the previous chunk's
    weights, poly learning rate restarted), until val mIoU gains less than
    ``ceiling_tol`` over a chunk or ``ceiling_max_chunks`` chunks ran: the plateau."""
    preset, work, seed = job
    from dataclasses import replace

    import torch

    from alseg_core.pipeline.pool import Pool
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import round_schedule, train_on_split

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // preset["jobs"]))
    cfg = _config(preset, Path(work), unit="image", strategy="random", seed=seed, extra={})
    pool = Pool.list(cfg.data.root, cfg.data.pool_split, cfg.data.val_split)
    samples = list(pool.samples.values())
    epochs = round_schedule(cfg.train, len(samples), run_steps(cfg)).epochs
    folder = Path(work) / "runs" / f"full-s{seed}"

    def evaluate(ckpt: str) -> float:
        return evaluate_step(
            ckpt, pool.val, model_name=cfg.model.name, batch_size=cfg.eval.batch_size,
            device=cfg.train.device,
        )["mIoU"]  # fmt: skip

    def fit(url: str, n_epochs: int, init: str | None) -> float:
        train_on_split(samples, url, model=cfg.model, train=replace(cfg.train, epochs=n_epochs),
                       init_from=init)  # fmt: skip
        return evaluate(url)

    chunk = preset["ceiling_chunk"]
    mious = train_to_plateau(fit, folder, epochs, chunk, preset)
    curve = [(epochs + n * chunk, m) for n, m in enumerate(mious)]
    converged = max(mious)
    print(f"  full supervision seed {seed}: equal steps {curve[0][1]:.4f} ({epochs} epochs), "
          f"plateau {converged:.4f} after {curve[-1][0]} epochs", flush=True)  # fmt: skip
    return {"seed": seed, "equal_steps": curve[0][1], "converged": converged, "curve": curve}


def run(
    preset_name: str,
    out: Path,
    work: Path,
    *,
    jobs: int | None = None,
    only: dict | None = None,
    check: Path | None = None,
    ceilings_from: Path | None = None,
    command: str | None = None,
    ceilings_only: bool = False,
) -> str:
    """Run the preset (or the subset ``only`` names) from scratch in ``work``.

    ``only`` may set ``seeds``, ``strategies`` and ``units``. ``check``: a CSV of an
    earlier run; the rows both runs have are compared and the differences reported
    against the earlier run's spread over seeds (written to ``<out>.md``; this run's
    rows to ``<out>.csv``).
    ``ceilings_from``: an earlier result (``<part>.json``) of the same settings and
    seeds whose ceilings are reused instead of trained again (strategies added later
    run in a fraction of the time; ``--merge`` then joins the parts). ``command``: the
    command line, for the report (default: the preset's). ``ceilings_only``: train the
    seeds' ceilings alone (``<out>.{md,json}``, for ``--ceilings-from``).
    """
    from alseg_core.active.strategies import get_strategy
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
    from alseg_core.pipeline.engine import RoundEngine
    from alseg_core.pipeline.layout import RoundLayout

    preset = dict(PRESETS[preset_name])
    preset["jobs"] = jobs or preset["jobs"]
    preset.update({k: v for k, v in (only or {}).items() if v})
    reused = _reused_ceilings(ceilings_from, preset) if ceilings_from else None
    # A rerun starts from nothing: the loop would otherwise resume the old runs.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make_synthetic(
        str(work / "data"), SyntheticSpec(**preset["synthetic"]), workers=os.cpu_count() or 1
    )
    base = _config(preset, work, unit="image", strategy="random", seed=0, extra={})
    # The shared store, computed once with every core (each run then finds it complete).
    RoundEngine(replace_workers(base), RoundLayout(str(work / "prepare"))).superpixels()
    print(f"label efficiency, preset {preset_name}: data and superpixels ready "
          f"[{time.perf_counter() - start:.0f}s]", flush=True)  # fmt: skip
    command = command or f".venv/bin/python bench/label_efficiency.py --preset {preset_name}"
    if ceilings_only:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=preset["jobs"], mp_context=ctx) as pool:
            ceilings = list(pool.map(_ceiling, [(preset, str(work), s) for s in preset["seeds"]]))
        return _ceilings_report(ceilings, preset, preset_name, out, _footer(start, command))
    runs = preset.get("runs") or [
        (unit, strategy) for unit in preset["units"] for strategy in preset["strategies"]
        if unit in get_strategy(_variant(strategy)[0]).units
    ] + preset.get("extra_runs", [])  # fmt: skip
    if only and only.get("strategies"):
        runs = [r for r in runs if r[1] in only["strategies"]]
    if only and only.get("units"):
        runs = [r for r in runs if r[0] in only["units"]]
    jobs_list = [(preset, str(work), unit, name, seed)
                 for seed in preset["seeds"] for unit, name in runs]  # fmt: skip
    # One seed round per key (seed, variant, loss head), trained before the runs that
    # share it: 6 runs of a seed would otherwise train the same round-0 model 6 times.
    firsts: dict[tuple, tuple] = {}
    for job in jobs_list:
        firsts.setdefault(seed_round_key(job[3], job[4]), job)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=preset["jobs"], mp_context=ctx) as pool:
        seed_jobs = {key: pool.submit(_seed_round, job) for key, job in firsts.items()}
        # Ceilings queued next: a worker never idles while the seed rounds train.
        ceiling_jobs = [] if check or reused else [
            pool.submit(_ceiling, (preset, str(work), s)) for s in preset["seeds"]]  # fmt: skip
        seed_logs = {key: f.result() for key, f in seed_jobs.items()}
        run_jobs = [
            pool.submit(_one_run, (*job, seed_logs[seed_round_key(job[3], job[4])]))
            for job in jobs_list
        ]
        ceilings = reused or [f.result() for f in ceiling_jobs]
        results = [f.result() for f in run_jobs]
    rows = [r for result, _ in results for r in result]
    diagnosis = _mean_diagnosis(jobs_list, [d for _, d in results])
    if check is not None:
        md = compare(rows, check, preset_name, time.perf_counter() - start)
        md += _footer(None, command)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(md)
        _write_csv(rows, out)  # this run's rows, weights included: a check of the check
        print(md)
        return md
    _write_csv(rows, out)
    footer = _footer(start, command)
    extra = {"machine": describe(), "code": code()}
    if ceilings_from:
        footer += f"Ceilings reused from `{ceilings_from}` (`--ceilings-from`).\n"
        extra["ceilings_from"] = str(ceilings_from)
    return _report(rows, ceilings, diagnosis, preset, preset_name, out, footer, extra)


RUN_FOLDER = re.compile(r"^(image|superpixel)-(.+)-s(\d+)$")


def report_from_work(
    preset_name: str,
    work: Path,
    out: Path,
    *,
    ceilings_from: Path,
    seeds: list[int] | None = None,
    command: str | None = None,
) -> str:
    """The report of the runs that finished in ``work`` (a run's ``bench.log`` is written
    once its last round is done), with the ceilings of ``ceilings_from``: a benchmark
    stopped part-way (a session's end, a machine taken back) keeps the runs it finished.
    The rows are each run's ``metrics.csv`` (with its ``weights.json``), the diagnosis
    is read as ``run`` reads it.
    ``seeds``: only the runs of these seeds."""
    preset = dict(PRESETS[preset_name])
    jobs, rows, diagnoses = [], [], []
    for folder in sorted((work / "runs").iterdir()):
        m = RUN_FOLDER.match(folder.name)
        if not m or not (folder / "bench.log").exists():
            continue  # the ceilings' folders, runs still going or stopped
        unit, name, seed = m.group(1), m.group(2), int(m.group(3))
        if seeds and seed not in seeds:
            continue
        real, extra = _variant(name)
        cfg = _config(preset, work, unit=unit, strategy=real, seed=seed, extra=extra, name=name)
        text = (folder / "metrics.csv").read_text()
        saved = folder / "weights.json"  # runs before it was written: no digests
        weights = json.loads(saved.read_text()) if saved.exists() else {}
        rows += [{"strategy": name, "unit": unit, "seed": seed, **r,
                  "weights": weights.get(r["round"], "")}
                 for r in csv.DictReader(io.StringIO(text))]  # fmt: skip
        diagnoses.append(_diagnose(cfg, (folder / "bench.log").read_text().splitlines()))
        jobs.append((preset, str(work), unit, name, seed))
    if not jobs:
        raise ValueError(f"{work}/runs: no finished run (a run's bench.log marks it done)")
    preset["seeds"] = sorted({j[4] for j in jobs})
    ceilings = _reused_ceilings(ceilings_from, preset)
    _write_csv(rows, out)
    command = command or (f".venv/bin/python bench/label_efficiency.py --preset {preset_name} "
                          f"--from-work {work} --ceilings-from {ceilings_from}")  # fmt: skip
    footer = (
        f"\nReported from the {len(jobs)} runs that finished in {work} (`--from-work`); "
        f"ceilings from `{ceilings_from}`." + _footer(None, command)
    )
    extra = {"machine": describe(), "code": code(), "ceilings_from": str(ceilings_from)}
    diagnosis = _mean_diagnosis(jobs, diagnoses)
    return _report(rows, ceilings, diagnosis, preset, preset_name, out, footer, extra)


#: Preset keys that say which runs a result holds, not how each run was made.
RUN_KEYS = ("seeds", "jobs", "strategies", "units", "runs", "extra_runs")


#: Preset keys of the ceiling's schedule only: the AL runs do not read them.
CEILING_KEYS = ("ceiling_chunk", "ceiling_tol", "ceiling_max_chunks", "ceiling_patience")


def _settings(preset: dict) -> str:
    """The settings two results must share to be compared or merged, as JSON."""
    same = {k: v for k, v in preset.items() if k not in RUN_KEYS}
    return json.dumps(same, sort_keys=True, default=str)


def _run_settings(preset: dict) -> str:
    """The settings the AL runs depend on (the ceiling's schedule left out), as JSON."""
    return _settings({k: v for k, v in preset.items() if k not in CEILING_KEYS})


#: ``al`` settings full supervision does not read: results that differ only in these
#: share their ceilings (the ceiling trains every pool image for the AL run's steps,
#: then to its own plateau).
NOT_IN_CEILING = ("plateau_chunks", "plateau_tol", "plateau_patience", "train_epochs")


def _ceiling_settings(preset: dict) -> str:
    preset = json.loads(json.dumps(preset, default=str))
    al = {k: v for k, v in preset.get("al", {}).items() if k not in NOT_IN_CEILING}
    return _settings({**preset, "al": al})


def _reused_ceilings(part: Path, preset: dict) -> list[dict]:
    """The ceilings of ``preset``'s seeds from an earlier result of the same settings
    (other than how each round is trained, ``NOT_IN_CEILING``)."""
    meta = json.loads(part.with_suffix(".json").read_text())
    if _ceiling_settings(meta["preset"]) != _ceiling_settings(preset):
        raise ValueError(f"{part}: run with other settings than this run; its ceilings differ")
    have = {int(c["seed"]): c for c in meta["ceilings"]}
    missing = sorted(set(preset["seeds"]) - set(have))
    if missing:
        raise ValueError(f"{part}: no ceiling for seed(s) {missing} (it has {sorted(have)})")
    return [have[s] for s in preset["seeds"]]


def _write_csv(rows: list[dict], out: Path) -> None:
    fields = ["strategy", "unit", "seed", "round", "labelled_cost", "pct_full_cost", "n_images",
              "n_regions", "mIoU", "weights"]  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".csv").write_text(buf.getvalue())


def _patience(preset: dict) -> str:
    n = ceiling_patience(preset)
    return "a chunk gains" if n == 1 else f"{n} chunks in a row each gain"


def _title(preset_name: str, preset: dict, n_seeds: int) -> str:
    """What a report covers: the preset, its model and how many seeds."""
    plural = "s" if n_seeds != 1 else ""
    return f"preset {preset_name}, {preset['model']['name']}, {n_seeds} seed{plural}"


def _ceiling_summary(ceilings: list[dict], preset: dict) -> dict:
    """The seeds' ceilings as ``summarise`` and ``ceiling_line`` take them."""
    return {
        "converged": [c["converged"] for c in ceilings],
        "equal_steps": [c["equal_steps"] for c in ceilings],
        "curves": [{"seed": c["seed"], "curve": c["curve"]} for c in ceilings],
        "schedule": (
            f"{ceilings[0]['curve'][0][0]} epochs (the AL run's steps), then chunks of "
            f"{preset['ceiling_chunk']} epochs until {_patience(preset)} < "
            f"{preset['ceiling_tol']} mIoU (at most {preset['ceiling_max_chunks']})"
        ),
    }


def _ceilings_report(ceilings: list[dict], preset: dict, preset_name: str, out: Path,
                     footer: str) -> str:  # fmt: skip
    """Write <out>.{md,json} of a ``--ceilings-only`` run (``--ceilings-from`` reads the
    json as it reads a full result's); returns the markdown."""
    seeds = [int(c["seed"]) for c in ceilings]
    md = (f"# Ceilings ({_title(preset_name, preset, len(seeds))})\n\n"
          + ceiling_line(_ceiling_summary(ceilings, preset)) + "\n" + footer)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(json.dumps(
        {"ceilings": ceilings, "preset": {**preset, "seeds": seeds},
         "machine": describe(), "code": code()}, indent=1, default=str) + "\n")  # fmt: skip
    print(md)
    return md


def _report(
    rows: list[dict], ceilings: list[dict], diagnosis: dict, preset: dict, preset_name: str,
    out: Path, footer: str, extra: dict,
) -> str:  # fmt: skip
    """Write <out>.{md,png,json} (the CSV is the caller's); returns the markdown."""
    seeds = sorted({int(r["seed"]) for r in rows})
    title = _title(preset_name, preset, len(seeds))
    md = summarise(rows, _ceiling_summary(ceilings, preset), diagnosis, out, title) + footer
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(json.dumps(
        {"ceilings": ceilings, "diagnosis": {f"{u}/{st}": d for (u, st), d in diagnosis.items()},
         "preset": {**preset, "seeds": seeds}, **extra},
        indent=1, default=str,
    ) + "\n")  # fmt: skip
    print(md)
    return md


def merge(parts: list[Path], out: Path, preset_name: str, ceilings_from: Path | None = None) -> str:
    """One report from earlier results of the same preset (each ``<part>.csv`` and
    ``<part>.json`` as ``run`` wrote them): other seeds, or other strategies on the same
    seeds, in pieces that each fit a session, or several machines. Refused when the
    runs' settings differ (other than which runs they hold), two parts hold the same run
    (unit, strategy, seed) or give a seed different ceilings.

    ``ceilings_from``: the ceilings come from this result instead (e.g. a
    ``--ceilings-only`` run of ``preset_name`` with more patience); the parts' runs must
    then have ``preset_name``'s settings apart from the ceiling's (``CEILING_KEYS``)."""
    rows: list[dict] = []
    ceilings: dict[int, dict] = {}
    weighted: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    settings, codes, machines = None, [], []
    same = _run_settings if ceilings_from else _settings
    if ceilings_from:
        settings = dict(PRESETS[preset_name])
    for part in parts:
        meta = json.loads(part.with_suffix(".json").read_text())
        these = list(csv.DictReader(io.StringIO(part.with_suffix(".csv").read_text())))
        if settings is not None and same(meta["preset"]) != same(settings):
            first = f"preset {preset_name}" if ceilings_from else parts[0]
            raise ValueError(f"{part}: run with other settings than {first}; not merged")
        settings = settings or meta["preset"]

        def runs(rs: list[dict]) -> set[tuple]:
            return {(r["unit"], r["strategy"], r["seed"]) for r in rs}

        overlap = runs(these) & runs(rows)
        if overlap:
            raise ValueError(f"{part}: run(s) {sorted(overlap)} already in an earlier part")
        rows += these
        for c in [] if ceilings_from else meta["ceilings"]:
            if ceilings.setdefault(int(c["seed"]), c) != c:
                raise ValueError(f"{part}: another ceiling for seed {c['seed']} than before")
        for key, d in meta["diagnosis"].items():
            unit, strategy = key.split("/", 1)
            n = len({r["seed"] for r in these if (r["unit"], r["strategy"]) == (unit, strategy)})
            weighted.setdefault((unit, strategy), []).append((n, d))
        codes.append(f"{part.name}: {meta.get('code', 'unknown')}")
        machine = meta.get("machine", "unknown")
        machines += machine if isinstance(machine, list) else [machine]
    assert settings is not None
    settings = {**settings, "strategies": sorted({r["strategy"] for r in rows}),
                "units": sorted({r["unit"] for r in rows})}  # fmt: skip
    settings.pop("runs", None)
    settings.pop("extra_runs", None)
    diagnosis = {key: _weighted_diagnosis(items) for key, items in weighted.items()}
    if ceilings_from:
        seeds = sorted({int(r["seed"]) for r in rows})
        for c in _reused_ceilings(ceilings_from, {**settings, "seeds": seeds}):
            ceilings[int(c["seed"])] = c
    _write_csv(rows, out)
    footer = ("\nMerged from " + ", ".join(str(p) for p in parts) + " (code: "
              + "; ".join(codes) + "). Machines: " + "; ".join(sorted(set(machines))) + ".\n"
              f"Command: `.venv/bin/python bench/label_efficiency.py --preset {preset_name} "
              "--merge " + " ".join(str(p) for p in parts)
              + (f" --ceilings-from {ceilings_from}" if ceilings_from else "")
              + f" --out {out}`\n")  # fmt: skip
    extra = {"machine": sorted(set(machines)), "code": codes,
             "merged_from": [str(p) for p in parts]}  # fmt: skip
    if ceilings_from:
        footer += f"Ceilings from `{ceilings_from}` (`--ceilings-from`).\n"
        extra["ceilings_from"] = str(ceilings_from)
    by_seed = [ceilings[s] for s in sorted(ceilings)]
    return _report(rows, by_seed, diagnosis, settings, preset_name, out, footer, extra)


def _weighted_diagnosis(items: list[tuple[int, dict]]) -> dict:
    """Diagnoses of several runs (each the mean over its ``n`` seeds) -> their mean over
    all the seeds."""
    total = sum(n for n, _ in items)
    out: dict = {m: sum(n * d[m] for n, d in items) / total
                 for m in ("cost_per_unit", "pixels_per_cost")}  # fmt: skip
    # Parts written before these were recorded lack them: then the mean is unknown (None).
    known = all(d.get("spend_by_round") for _, d in items)
    spends = [d["spend_by_round"] for _, d in items] if known else []
    out["budget"] = items[0][1].get("budget") if known else None
    out["spend_by_round"] = (
        [sum(n * sp[k] for (n, _), sp in zip(items, spends, strict=True)) / total
         for k in range(len(spends[0]))]
        if known and len({len(sp) for sp in spends}) == 1 else None
    )  # fmt: skip
    rising = [(n, d.get("still_rising")) for n, d in items]
    out["still_rising"] = (
        sum(n * r for n, r in rising) / total if all(r is not None for _, r in rising) else None
    )
    out["per_class"] = {}
    for name in items[0][1]["per_class"]:
        have = [(d["per_class"][name], n) for n, d in items if d["per_class"][name] is not None]
        out["per_class"][name] = (
            sum(v * n for v, n in have) / sum(n for _, n in have) if have else None
        )
    return out


def _mean_diagnosis(jobs: list[tuple], diagnoses: list[dict]) -> dict:
    """(unit, strategy) -> diagnosis averaged over seeds."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for job, d in zip(jobs, diagnoses, strict=True):
        grouped.setdefault((job[2], job[3]), []).append(d)
    return {key: _weighted_diagnosis([(1, d) for d in ds]) for key, ds in grouped.items()}


def replace_workers(cfg):
    from dataclasses import replace

    return replace(cfg, superpixels=replace(cfg.superpixels, workers=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--out", default=str(HERE / "results" / "label_efficiency"))
    parser.add_argument("--work", default="data/bench/label_efficiency")
    parser.add_argument("--jobs", type=int, default=None, help="runs in parallel")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--strategies", nargs="+", help="only these strategies")
    parser.add_argument("--units", nargs="+", choices=["image", "superpixel"])
    parser.add_argument(
        "--check",
        type=Path,
        help="compare with the rows of this earlier CSV instead of writing new results "
        "(no ceiling runs); the report goes to <out>.md, this run's rows to <out>.csv",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="no runs: one report at --out from these earlier results of the preset on "
        "other seeds (paths without suffix, e.g. bench/results/label_efficiency_s0)",
    )
    parser.add_argument(
        "--ceilings-from",
        type=Path,
        help="reuse the ceilings of this earlier result of the same settings and seeds "
        "(path without suffix) instead of training them again; with --merge, the "
        "merged report's ceilings (e.g. a --ceilings-only result)",
    )
    parser.add_argument(
        "--ceilings-only",
        action="store_true",
        help="train the seeds' ceilings alone: <out>.md and <out>.json, for --ceilings-from",
    )
    parser.add_argument(
        "--from-work",
        type=Path,
        help="no runs: the report of the runs that finished in this --work folder (a "
        "benchmark stopped part-way), with the ceilings of --ceilings-from",
    )
    args = parser.parse_args()
    command = " ".join([".venv/bin/python bench/label_efficiency.py", *sys.argv[1:]])
    if args.from_work:
        if not args.ceilings_from:
            parser.error("--from-work needs --ceilings-from (the ceilings are not rerun)")
        report_from_work(args.preset, args.from_work, Path(args.out), seeds=args.seeds,
                         ceilings_from=args.ceilings_from, command=command)  # fmt: skip
        return
    if args.merge:
        merge(args.merge, Path(args.out), args.preset, ceilings_from=args.ceilings_from)
        return
    only = {"seeds": args.seeds, "strategies": args.strategies, "units": args.units}
    run(args.preset, Path(args.out), Path(args.work), jobs=args.jobs, only=only,
        check=args.check, ceilings_from=args.ceilings_from, command=command,
        ceilings_only=args.ceilings_only)  # fmt: skip


if __name__ == "__main__":
    main()
