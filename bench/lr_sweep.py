"""Is the learning rate why the rounds' models are step-limited?

The label-efficiency rounds train LR-ASPP from scratch (no pretrained weights here) with
AdamW at ``train.lr`` = 1e-3 and a poly schedule, and most of them are still gaining
val mIoU when the plateau rule's cap stops them. This trains, at each learning rate, side
by side in one run and from the same initial weights:

- the seed round's labelled set (``initial_images`` whole images) for the round's steps,
  then every chunk the plateau rule allows (no early stop): val mIoU after each chunk;
- every pool image for the equal-steps ceiling's epochs (the steps of one AL run).

    .venv/bin/python bench/lr_sweep.py --work /tmp/wQ --lrs 0.001 0.003 0.01

``--work`` is a ``bench/label_efficiency.py`` work folder of the same preset (its
dataset, superpixels and shared seed rounds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _machine import write_table  # noqa: E402


def _one(job: tuple) -> dict:
    preset_name, work, part, lr, seed, threads = job
    import label_efficiency as le
    import torch

    from alseg_core.pipeline.pool import Pool
    from alseg_core.pipeline.steps.evaluate import evaluate_step
    from alseg_core.pipeline.steps.train import (
        Plateau,
        round_schedule,
        train_on_split,
        train_step,
    )

    torch.set_num_threads(threads)
    preset = le.PRESETS[preset_name]
    cfg = le._config(preset, Path(work), unit="image", strategy="random", seed=seed, extra={})
    train = replace(cfg.train, lr=lr)
    pool = Pool.list(cfg.data.root, cfg.data.pool_split, cfg.data.val_split)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alseg-lr-") as scratch:
        if part == "seed round":
            shared = le._seed_folder(Path(work), le.seed_round_key("random", seed))
            # tol -1: every chunk runs, so the whole curve is seen.
            result = train_step(
                pool, str(shared / "r0" / "labelled"), f"{scratch}/m.pt", previous_model=None,
                finetune=False, model=cfg.model, train=train, train_steps=cfg.al.train_steps,
                plateau=Plateau(cfg.al.plateau_chunks + 1, -1.0),
                eval_batch_size=cfg.eval.batch_size,
            )  # fmt: skip
            curve = list(result.val_curve)
            steps = f"{cfg.al.plateau_chunks + 2} x {cfg.al.train_steps}"
        else:
            samples = list(pool.samples.values())
            epochs = round_schedule(cfg.train, len(samples), le.run_steps(cfg)).epochs
            url = f"{scratch}/full.pt"
            train_on_split(samples, url, model=cfg.model, train=replace(train, epochs=epochs))
            curve = [evaluate_step(url, pool.val, model_name=cfg.model.name,
                                   batch_size=cfg.eval.batch_size)["mIoU"]]  # fmt: skip
            steps = f"{epochs} epochs"
    row = {"part": part, "lr": lr, "seed": seed, "steps": steps, "curve": curve,
           "seconds": time.perf_counter() - start}  # fmt: skip
    print(f"  {part} lr {lr:g} seed {seed}: {' -> '.join(f'{m:.4f}' for m in curve)} "
          f"[{row['seconds']:.0f}s]", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--work", required=True, help="a label_efficiency --work folder")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--parts", nargs="+", default=["seed round", "full pool"],
                        choices=["seed round", "full pool"])  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lr_sweep.md")
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [(args.preset, args.work, part, lr, seed, threads)
            for part in args.parts for seed in args.seeds for lr in args.lrs]  # fmt: skip
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(_one, jobs))
    lines = [
        f"# Learning rate of the rounds' training (preset {args.preset})\n",
        "AdamW, poly schedule restarted per chunk, from scratch; val mIoU after each part. "
        "'seed round': the seed round's labelled set, the round's steps then every chunk "
        "the plateau rule allows (no early stop). 'full pool': every pool image for the "
        "equal-steps ceiling's epochs.\n",
        "| part | lr | seed | schedule | val mIoU by chunk | best | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['part']} | {r['lr']:g} | {r['seed']} | {r['steps']} | "
            f"{' -> '.join(f'{m:.4f}' for m in r['curve'])} | {max(r['curve']):.4f} | "
            f"{r['seconds'] / 60:.1f} |"
        )
    write_table(lines, args.out, "lr_sweep.py", start, f" ({args.jobs} jobs)")


if __name__ == "__main__":
    main()
