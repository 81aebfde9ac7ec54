"""Training speed: the training loop as it was before a551153 against as it is, side by side.

An active-learning round trains many short epochs over a few labelled images: the quick
label-efficiency preset's seed round is 20 images, 200 steps of batch 8 (67 epochs of 3
steps). Before a551153 that loop wrote its resumable checkpoint (model + AdamW state)
after every epoch, decoded every PNG at every step, and ran AdamW's per-parameter loop.
Now it runs the fused AdamW kernel, keeps decoded images (``train.decode_cache_mb``) and
writes the checkpoint by the clock (``train.checkpoint_every_s``). Each change is also
measured alone, so the table says what each is worth.

Every setting trains in its own process (one thread, as each run of the label-efficiency
benchmark), in the order old, new, old, new, ... (``--repeats`` times); the table gives
the median seconds, the ratio old / setting, the peak RSS of the process and the final
loss. Two cases: the seed round (20 images at 64x128, 200 steps) and a larger set (300
images, 3 epochs).

    .venv/bin/python bench/train_speed.py       # ~12 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _machine import code, describe  # noqa: E402

#: name -> (fused AdamW, train.checkpoint_every_s, train.decode_cache_mb)
SETTINGS: dict[str, tuple[bool, float, float]] = {
    "before a551153 (every epoch, no cache, AdamW loop)": (False, 0.0, 0.0),
    "+ fused AdamW only": (True, 0.0, 0.0),
    "+ decode cache only": (False, 0.0, 1024.0),
    "+ checkpoint every 30 s only": (False, 30.0, 0.0),
    "now (all three)": (True, 30.0, 1024.0),
}
#: name -> (images, height, width, optimiser steps or None, epochs)
CASES: dict[str, tuple[int, int, int, int | None, int]] = {
    "seed round: 20 images 64x128, 200 steps": (20, 64, 128, 200, 0),
    "300 images 64x128, 3 epochs": (300, 64, 128, None, 3),
}


def _one(job: tuple) -> dict:
    """Train once in this (fresh) process; seconds, peak RSS and the final loss."""
    root, n, steps, epochs, fused, every, cache, out = job
    import torch

    torch.set_num_threads(1)
    if not fused:  # the optimiser as it was: AdamW's default per-parameter loop on CPU
        real = torch.optim.AdamW

        def adamw(*args, fused=None, **kwargs):
            return real(*args, **kwargs)

        torch.optim.AdamW = adamw  # type: ignore[misc]
    from alseg_core.datasets import cityscapes
    from alseg_core.training import TrainConfig, items_from_samples, train

    items = items_from_samples(cityscapes.list_samples(root, "train")[:n])
    if steps is not None:
        epochs = max(1, round(steps / -(-len(items) // 8)))
    cfg = TrainConfig(epochs=epochs, batch_size=8, seed=0, checkpoint_every_s=every,
                      decode_cache_mb=cache)  # fmt: skip
    start = time.perf_counter()
    result = train(items, model_name="lraspp_mobilenet_v3_large", checkpoint_url=out,
                   cfg=cfg, progress=False, log=None, resume=False)  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    return {"seconds": seconds, "peak_mib": peak, "loss": result.final_loss, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "train_speed.md"))
    args = parser.parse_args()
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic

    ctx = multiprocessing.get_context("spawn")
    lines = [
        "# Training speed: before a551153 against now, side by side\n",
        "One process per training, one thread each, run one after another "
        f"(old, new, ... {args.repeats} times); median seconds. Ratio: the old loop's "
        "median / this setting's.\n",
    ]
    with tempfile.TemporaryDirectory(prefix="alseg-train-speed-") as tmp:
        for case, (n, h, w, steps, epochs) in CASES.items():
            root = f"{tmp}/data-{n}-{h}x{w}"
            make_synthetic(root, SyntheticSpec(n_train=n, n_val=1, height=h, width=w, seed=0))
            runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
            for r in range(args.repeats):
                for name, (fused, every, cache) in SETTINGS.items():
                    job = (root, n, steps, epochs, fused, every, cache, f"{tmp}/m-{r}.pt")
                    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                        got = pool.submit(_one, job).result()
                    runs[name].append(got)
                    print(f"{case} | {name} | repeat {r}: {got['seconds']:.1f} s, "
                          f"peak {got['peak_mib']:.0f} MiB", flush=True)  # fmt: skip
            old = statistics.median(g["seconds"] for g in runs[next(iter(SETTINGS))])
            lines += [
                f"\n## {case} ({runs[next(iter(SETTINGS))][0]['epochs']} epochs)\n",
                "| setting | seconds (median) | each run | old / this | peak RSS MiB "
                "| final loss |",
                "|---|---|---|---|---|---|",
            ]
            for name, got in runs.items():
                med = statistics.median(g["seconds"] for g in got)
                each = ", ".join(f"{g['seconds']:.1f}" for g in got)
                peak = max(g["peak_mib"] for g in got)
                losses = sorted({f"{g['loss']:.4f}" for g in got})
                lines.append(f"| {name} | {med:.1f} | {each} | {old / med:.2f}x | {peak:.0f} | "
                             f"{', '.join(losses)} |")  # fmt: skip
    lines.append(f"\nMachine: {describe()}. Code: {code()}.\n"
                 "Command: `.venv/bin/python bench/train_speed.py`\n")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
