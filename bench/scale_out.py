"""Scale-out: superpixels and scoring of one pool on each executor, side by side.

The same pool, the same shards (``--shard-size``), timed with the local executor at 1
and 2 processes and with a 2-worker Dask ``LocalCluster`` on 127.0.0.1 (started once,
before the timings, as a deployment reuses a running cluster); scoring runs with one
torch thread per worker everywhere, so the executors do equal work. Each timing is the
best of ``--repeat`` runs into a fresh output. Also the per-shard overhead (a shard
that does nothing, many of them) and a check that every executor wrote the same bytes.

    .venv/bin/python bench/scale_out.py [--n-images 48] [--out bench/results/scale_out.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import code, describe  # noqa: E402


def _noop(x: int) -> int:
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=48)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--score-height", type=int, default=256)
    parser.add_argument("--score-width", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--mc-passes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the report (markdown) here")
    args = parser.parse_args()

    import torch
    from distributed import LocalCluster

    from alseg_core import storage
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
    from alseg_core.executors import close_clients, map_shards, parse_executor
    from alseg_core.models import build_model
    from alseg_core.pipeline.pool import Pool
    from alseg_core.pipeline.steps.score import score_step
    from alseg_core.superpixels import SuperpixelParams, SuperpixelStore
    from alseg_core.training import checkpoint_state

    tmp = Path(tempfile.mkdtemp(prefix="alseg-scale-out-"))
    n = args.n_images
    make_synthetic(str(tmp / "sp-data"), SyntheticSpec(n_train=n, n_val=1, height=args.height,
                                                       width=args.width, seed=0))  # fmt: skip
    make_synthetic(str(tmp / "score-data"), SyntheticSpec(
        n_train=n, n_val=1, height=args.score_height, width=args.score_width, seed=0))  # fmt: skip
    sp_pool = Pool.list(str(tmp / "sp-data"), "train", "val")
    pairs = [(s.image_id, s.image_url) for s in sp_pool.samples.values()]
    score_pool = Pool.list(str(tmp / "score-data"), "train", "val")
    params = SuperpixelParams(n_regions=100, compactness=0.001)
    score_store = SuperpixelStore(str(tmp / "score-sp"), params)
    score_store.update([(s.image_id, s.image_url) for s in score_pool.samples.values()])
    torch.manual_seed(0)
    checkpoint = str(tmp / "model.pt")
    model = build_model("lraspp_mobilenet_v3_large", num_classes=19)
    storage.save_checkpoint(checkpoint, checkpoint_state(model, dropout=0.5, epoch=1))

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None)  # fmt: skip
    executors = {"local, 1 process": "local:1", "local, 2 processes": "local:2",
                 "dask, 2 workers": cluster.scheduler_address}  # fmt: skip
    torch.set_num_threads(1)  # the driver too: local:1 scores in this process
    results: dict[str, dict] = {}
    outputs: dict[str, dict[str, bytes]] = {}
    for run_id, (name, spec) in enumerate(executors.items()):
        ex = parse_executor(spec if "://" not in spec else "dask://" + spec.split("://")[1])
        if ex.kind == "dask":  # warm the workers once (imports), as a running cluster is
            map_shards(_noop, list(range(4)), ex)
        sp_times, score_times = [], []
        for rep in range(args.repeat):
            store = SuperpixelStore(str(tmp / f"sp-{run_id}-{rep}"), params)
            t0 = time.perf_counter()
            store.update(pairs, executor=ex, shard_size=args.shard_size)
            sp_times.append(time.perf_counter() - t0)
            out = str(tmp / f"scores-{run_id}-{rep}.parquet")
            t0 = time.perf_counter()
            score_step(
                checkpoint, score_pool, score_store, None, out, strategy="mc_variance",
                mc_passes=args.mc_passes, heat_stride=4, seed=0, batch_size=4, device="cpu",
                executor=spec, shard_size=args.shard_size, threads=1,
            )  # fmt: skip
            score_times.append(time.perf_counter() - t0)
        parts = storage.glob(storage.join(store.url, "part-*.parquet"))
        outputs[name] = {"superpixels": b"".join(storage.read_bytes(p) for p in parts),
                         "scores": storage.read_bytes(out)}  # fmt: skip
        # The per-shard overhead: many shards that do nothing.
        t0 = time.perf_counter()
        map_shards(_noop, list(range(200)), ex)
        overhead = (time.perf_counter() - t0) / 200
        results[name] = {"superpixels": min(sp_times), "score": min(score_times),
                         "overhead": overhead}  # fmt: skip
        print(f"{name}: superpixels {min(sp_times):.1f}s, score {min(score_times):.1f}s, "
              f"{overhead * 1000:.1f} ms per empty shard", flush=True)  # fmt: skip
    close_clients()
    cluster.close()
    same = all(o == outputs["local, 1 process"] for o in outputs.values())

    one = results["local, 1 process"]
    local2, dask2 = results["local, 2 processes"], results["dask, 2 workers"]
    lines = [
        "# Scale-out: superpixels and scoring on each executor",
        "",
        f"Pool: {n} synthetic images; superpixels at {args.width}x{args.height} (watershed, "
        f"100 regions), scoring at {args.score_width}x{args.score_height} (LR-ASPP, random "
        f"weights, D={args.mc_passes}, batch 4, 1 torch thread per worker); shards of "
        f"{args.shard_size} images; best of {args.repeat} runs each. The Dask cluster "
        "(LocalCluster, 2 single-threaded workers on 127.0.0.1) is started and warmed once, "
        "before the timings; the local process pool starts with each step (spawn once "
        "torch is loaded), as it does in use.",
        "",
        "| executor | superpixels s | images/s | score s | images/s | per empty shard |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['superpixels']:.1f} | {n / r['superpixels']:.2f} | "
            f"{r['score']:.1f} | {n / r['score']:.2f} | {r['overhead'] * 1000:.1f} ms |"
        )
    sp_ratio = dask2["superpixels"] / local2["superpixels"]
    sc_ratio = dask2["score"] / local2["score"]
    lines += [
        "",
        f"- Speed-up of 2 local processes over 1: superpixels "
        f"{one['superpixels'] / local2['superpixels']:.2f}x, score "
        f"{one['score'] / local2['score']:.2f}x.",
        f"- Dask (2 workers) time / local pool (2 processes) time: superpixels "
        f"{sp_ratio:.2f}, score {sc_ratio:.2f}. Target: within 10 % (<= 1.10): "
        f"superpixels {'met' if sp_ratio <= 1.10 else 'NOT met'}, score "
        f"{'met' if sc_ratio <= 1.10 else 'NOT met'}.",
        f"- Every executor wrote byte-identical superpixel parts and scores: {same}.",
        "",
        f"Machine: {describe()}. Code: {code()}.",
        "Command: `.venv/bin/python bench/scale_out.py --out bench/results/scale_out.md`",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    os._exit(0)  # distributed's threads can hold a clean exit for a while


if __name__ == "__main__":
    main()
