"""Peak memory of the whole ``alseg score`` step at 1024x2048 against the batch size.

The step decodes ``eval.batch_size`` images at a time but runs the model on at most
``al.score_batch_pixels`` pixels per trunk pass (default 2048 x 1024: one Cityscapes
image), so its peak should not grow with the batch size, and should grow with the cap.
Each setting is one ``alseg score`` process over the same synthetic pool (LR-ASPP and
DRN-D-22, random weights, D=10); peak RSS from ``/usr/bin/time``.

    .venv/bin/python bench/score_memory.py          # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import code, describe  # noqa: E402
from mc_scoring import random_checkpoint, timed_peak  # noqa: E402

#: (eval.batch_size, al.score_batch_pixels) per process; the default cap first.
SETTINGS = ((1, 2048 * 1024), (8, 2048 * 1024), (32, 2048 * 1024), (32, 4 * 2048 * 1024))
MODELS = ("lraspp_mobilenet_v3_large", "drn_d_22")


def _params(
    work: Path, n: int, batch: int = 8, cap: int = 2048 * 1024, model: str = MODELS[0]
) -> Path:
    """params.yaml of the synthetic pool of ``n`` images at 1024x2048, with ``batch``
    images decoded at a time and at most ``cap`` pixels per trunk pass."""
    params = work / f"params-{model}-b{batch}-c{cap}.yaml"
    params.write_text(
        f"data: {{root: {work / 'cs'}, pool_split: train, val_split: train}}\n"
        f"synthetic: {{n_train: {n}, n_val: 1, height: 1024, width: 2048, seed: 0}}\n"
        f"superpixels: {{store: {work / 'sp'}, workers: 0, compactness: 0.001}}\n"
        f"model: {{name: {model}}}\n"
        f"eval: {{batch_size: {batch}}}\n"
        f"al: {{mc_passes: 10, score_batch_pixels: {cap}}}\n"
    )
    return params


def _alseg(params: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "alseg"), "--params", str(params), "--no-progress"]


def _prepare(work: Path, n: int, threads: int) -> None:
    """The synthetic pool and its superpixels (once)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if not (work / "sp").exists():
        base = _alseg(_params(work, n))
        subprocess.run([*base, "make-synthetic"], check=True, capture_output=True, env=env)
        subprocess.run([*base, "superpixels"], check=True, capture_output=True, env=env)


def measure(work: Path, n: int, ckpt: Path, model: str, batch: int, cap: int,
            threads: int) -> dict:  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [*_alseg(_params(work, n, batch, cap, model)), "score", "--checkpoint", str(ckpt),
           "--out", str(work / "scores.parquet")]  # fmt: skip
    seconds, peak_mb = timed_peak(cmd, env)
    return {"model": model, "batch_size": batch, "score_batch_pixels": cap,
            "seconds": seconds, "peak_mb": peak_mb}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "results" / "score_memory"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="alseg-score-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _prepare(work, args.images, args.threads)
    rows = []
    for model in MODELS:
        ckpt = random_checkpoint(work, model)
        for batch, cap in SETTINGS:
            r = measure(work, args.images, ckpt, model, batch, cap, args.threads)
            rows.append(r)
            print(json.dumps(r), flush=True)
    lines = [
        "# `alseg score` peak memory at 1024x2048 against the batch size",
        "",
        f"Machine: {describe()}; code {code()}; {(time.perf_counter() - start) / 60:.1f} "
        f"min. {args.images} synthetic images at 1024x2048, random weights, D=10, one "
        "process per row (peak RSS from `/usr/bin/time`, model and Python included).",
        "",
        "| model | `eval.batch_size` | `al.score_batch_pixels` | peak RSS | s / image |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['batch_size']} | {r['score_batch_pixels']:,} | "
        f"{r['peak_mb']:.0f} MiB | {r['seconds'] / args.images:.2f} |"
        for r in rows
    ]
    lines += ["", "Command: `.venv/bin/python bench/score_memory.py`", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "images": args.images, "machine": describe(), "code": code()},
        indent=1))  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
