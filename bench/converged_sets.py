"""Selection or training? Each chosen round's labelled set, trained like the ceiling.

The label-efficiency curves compare each round's model with a ceiling trained to a
plateau. The rounds' models get far fewer optimiser steps (a chunk or two per round),
so a curve far below the ceiling may say that the labels bought are poor, or only that
the models trained on them stopped early. This trains the labelled set of given rounds
of a finished ``bench/label_efficiency.py`` run from scratch with the ceiling's own
schedule: as many steps as the equal-steps ceiling, then chunks of as many steps as the
ceiling's chunks (``ceiling_chunk`` epochs over the whole pool), each from the previous
chunk's weights, until a chunk gains < ``ceiling_tol`` mIoU (``ceiling_patience`` chunks
in a row) or ``ceiling_max_chunks`` ran (``label_efficiency.train_to_plateau``). It
prints the round's own mIoU, the converged one and both as % of the ceiling.

With ``--self-training THRESHOLD`` each converged set then goes on as the product's
self-training does (``al.pseudo_threshold``): the best checkpoint pseudo-labels every
unpaid pool pixel it is that confident about (``pseudo_label_items``) and training goes
on from it on paid + pseudo labels in the ceiling's chunks, same stop rule; the table
adds the share of unpaid pixels pseudo-labelled, how many of them are right (against
ground truth) and the self-trained mIoU: does self-training lift a converged set?

    .venv/bin/python bench/converged_sets.py --preset quick_steps --work /tmp/wQ \\
        --ceilings bench/results/label_efficiency_quick_steps.json \\
        --runs image-mc_variance superpixel-mc_variance --seeds 0 --rounds 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _machine import write_table  # noqa: E402


def converge(job: tuple) -> dict:
    """Train round ``k``'s labelled set of run ``name`` (seed ``seed``) to the ceiling's
    plateau; the val mIoU after the equal-steps part and after each chunk."""
    preset_name, work, name, seed, k, threads, threshold = job
    import label_efficiency as le
    import torch

    from alseg_core import storage
    from alseg_core.pipeline.pool import Pool
    from alseg_core.pipeline.run import run_layout
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import labelled_items, round_schedule
    from alseg_core.training import train

    torch.set_num_threads(threads)
    preset = le.PRESETS[preset_name]
    unit, strategy = name.split("-", 1)
    real, extra = le._variant(strategy)
    cfg = le._config(preset, Path(work), unit=unit, strategy=real, seed=seed, extra=extra,
                     name=strategy)  # fmt: skip
    layout = run_layout(cfg)
    pool = Pool.list(cfg.data.root, cfg.data.pool_split, cfg.data.val_split)
    items = labelled_items(pool, layout.labelled(k))
    own = storage.read_json(storage.join(layout.publish(k), "metrics.json"))  # the round's row
    pool_steps = -(-len(pool.samples) // cfg.train.batch_size)  # an epoch over the pool
    first = round_schedule(cfg.train, len(items), le.run_steps(cfg)).epochs
    chunk = round_schedule(cfg.train, len(items), preset["ceiling_chunk"] * pool_steps).epochs
    folder = Path(work) / "converged" / f"{name}-s{seed}-r{k}"
    start = time.perf_counter()

    def fit_on(on: list) -> Callable[[str, int, str | None], float]:
        def fit(url: str, epochs: int, init: str | None) -> float:
            train(on, model_name=cfg.model.name, checkpoint_url=url,
                  cfg=replace(cfg.train, epochs=epochs), num_classes=cfg.model.num_classes,
                  dropout=cfg.model.dropout, init_from=init, progress=False, log=None)  # fmt: skip
            return evaluate_step(url, pool.val, model_name=cfg.model.name,
                                 batch_size=cfg.eval.batch_size,
                                 device=cfg.train.device)["mIoU"]  # fmt: skip

        return fit

    curve = le.train_to_plateau(fit_on(items), folder, first, chunk, preset)
    row = {
        "run": name, "seed": seed, "round": k, "pct_full_cost": own["pct_full_cost"],
        "images": len(items), "own_mIoU": own["mIoU"], "converged_mIoU": max(curve),
        "curve": curve, "epochs": [first, chunk], "seconds": time.perf_counter() - start,
    }  # fmt: skip
    print(f"  {name} seed {seed} round {k} ({own['pct_full_cost']:.1f}% of full cost): own "
          f"{own['mIoU']:.4f}, converged {max(curve):.4f} "
          f"({' -> '.join(f'{m:.3f}' for m in curve)})", flush=True)  # fmt: skip
    if threshold:
        row |= self_train(fit_on, folder, curve, threshold, pool, layout.labelled(k), cfg,
                          preset, pool_steps)  # fmt: skip
        print(f"  {name} seed {seed} round {k}: self-training {row['self_trained_mIoU']:.4f} "
              f"({' -> '.join(f'{m:.3f}' for m in row['st_curve'])}), "
              f"{100 * row['pseudo_share']:.1f}% of unpaid pixels pseudo-labelled, "
              f"{100 * row['pseudo_accuracy']:.1f}% right", flush=True)  # fmt: skip
    return row


def self_train(
    fit_on, folder: Path, curve: list[float], threshold: float, pool, labelled: str, cfg,
    preset: dict, pool_steps: int,
) -> dict:  # fmt: skip
    """Then the product's self-training from the best checkpoint of ``curve``: its
    confident predictions on every unpaid pixel (``pseudo_label_items``), training on
    from it on paid + pseudo labels in chunks of the ceiling's steps, same stop rule."""
    import label_efficiency as le
    import numpy as np

    from alseg_core import storage
    from alseg_core.datasets.cityscapes import read_label
    from alseg_core.labels import load_state, read_mask
    from alseg_core.pipeline.steps.train import pseudo_label_items, round_schedule
    from alseg_core.types import IGNORE_INDEX

    best = max(range(len(curve)), key=curve.__getitem__)
    ckpt = str(folder / ("equal-steps.pt" if best == 0 else f"chunk-{best}.pt"))
    pseudo = pseudo_label_items(pool, labelled, ckpt, str(folder / "pseudo"), threshold,
                                model_name=cfg.model.name, batch_size=cfg.eval.batch_size,
                                device=cfg.train.device)  # fmt: skip
    paid, by_id = load_state(labelled).images, {i.image_id: i for i in pseudo}
    unpaid = kept = right = 0  # unpaid pixels, those pseudo-labelled, those right
    for image_id, sample in pool.samples.items():
        truth = read_label(sample)
        own = (read_mask(labelled, image_id) if image_id in paid
               else np.full(truth.shape, IGNORE_INDEX, np.uint8))  # fmt: skip
        unpaid += int((own == IGNORE_INDEX).sum())
        if image_id in by_id:
            mask = storage.read_image(by_id[image_id].label_url)
            new = (own == IGNORE_INDEX) & (mask != IGNORE_INDEX)
            kept, right = kept + int(new.sum()), right + int((new & (mask == truth)).sum())
    chunk = round_schedule(cfg.train, len(pseudo), preset["ceiling_chunk"] * pool_steps).epochs
    st = le.chunks_to_plateau(
        fit_on(pseudo), folder / "self-training", ckpt, curve[best], chunk, preset
    )
    return {
        "self_trained_mIoU": max([curve[best], *st]), "st_curve": st, "threshold": threshold,
        "pseudo_share": kept / max(1, unpaid), "pseudo_accuracy": right / max(1, kept),
    }  # fmt: skip


ST_HEAD = (
    " unpaid pixels pseudo-labelled | of them right | self-training val curve "
    "| self-trained mIoU (% of ceiling) |"
)


def _self_training_cells(r: dict, ceiling: float) -> str:
    return (
        f" {100 * r['pseudo_share']:.1f}% | {100 * r['pseudo_accuracy']:.1f}% | "
        f"{' -> '.join(f'{m:.3f}' for m in r['st_curve'])} | "
        f"{r['self_trained_mIoU']:.4f} ({100 * r['self_trained_mIoU'] / ceiling:.1f}%) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--work", required=True, help="a finished label_efficiency --work")
    parser.add_argument("--ceilings", type=Path, required=True,
                        help="that run's results JSON (its ceilings)")  # fmt: skip
    parser.add_argument("--runs", nargs="+", required=True, help="e.g. superpixel-mc_variance")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, nargs="+", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--self-training", type=float, default=0.0, metavar="THRESHOLD",
        help="then self-train each converged set (al.pseudo_threshold; 0: no)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "results" / "converged_sets.md")
    args = parser.parse_args()
    per_seed = {
        c["seed"]: c["converged"] for c in json.loads(args.ceilings.read_text())["ceilings"]
    }
    ceiling = sum(per_seed.values()) / len(per_seed)  # as the results report it
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [(args.preset, args.work, name, seed, k, threads, args.self_training)
            for name in args.runs for seed in args.seeds for k in args.rounds]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(converge, jobs))
    lines = [
        f"# Labelled sets trained like the ceiling (preset {args.preset})\n",
        f"Ceiling (full supervision to a plateau): {ceiling:.4f}, the mean of the seeds' "
        f"{', '.join(f'{v:.4f}' for _, v in sorted(per_seed.items()))}. Each row: round k's "
        "labelled set of a finished run, trained from scratch with the ceiling's schedule "
        f"({args.ceilings}); 'own' is the round's model as the run trained it.\n",
        "| run | seed | round | % of full cost | images | own mIoU (% of ceiling) "
        "| converged mIoU (% of ceiling) | val curve | minutes |"
        + (ST_HEAD if args.self_training else ""),
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (4 if args.self_training else 0),
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['seed']} | {r['round']} | {r['pct_full_cost']:.1f} | "
            f"{r['images']} | {r['own_mIoU']:.4f} ({100 * r['own_mIoU'] / ceiling:.1f}%) | "
            f"{r['converged_mIoU']:.4f} ({100 * r['converged_mIoU'] / ceiling:.1f}%) | "
            f"{' -> '.join(f'{m:.3f}' for m in r['curve'])} | {r['seconds'] / 60:.1f} |"
            + (_self_training_cells(r, ceiling) if args.self_training else "")
        )
    write_table(lines, args.out, "converged_sets.py", start)


if __name__ == "__main__":
    main()
