"""MC-dropout scoring speed and memory, side by side in one run.

Per model (DRN-D-22, LR-ASPP) and image size (512x1024, 1024x2048), on the same random
image and the same random weights, each measured in its own process (peak RSS is that
process's): one deterministic pass; ours at D=10 and D=40 (statistics at the head's
resolution, the default), ours at full resolution (``al.score_resolution: full``); the
naive way (the whole network D times); baal 2.1.0's ``MCCachingModule`` and
``MCDropoutModule`` (benchmark-only dependency: ``make bench-deps``). Then the whole
``alseg score`` step per image against ``alseg predict`` per image on a synthetic pool at
1024x2048, and the Spearman correlation of region rankings (mean MC variance per
superpixel) between feature- and full-resolution scoring on a trained model.

    .venv/bin/python bench/mc_scoring.py                 # ~25 min on 2 CPU cores
    .venv/bin/python bench/mc_scoring.py --quick         # 512x1024 only, no baal dropout
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import code, describe  # noqa: E402

METHODS = ("one_pass", "ours_d10", "ours_d40", "ours_full_d10", "naive_d10", "baal_caching_d10",
           "baal_dropout_d10")  # fmt: skip


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baal(model, method: str):
    """The model as baal 2.1.0 runs MC dropout: dropout always on, with or without the
    cache of conv outputs whose input did not change (``MCCachingModule``)."""
    import copy

    from baal.bayesian.caching_utils import MCCachingModule
    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    wrapped = MCDropoutModule(copy.deepcopy(model))
    if method.startswith("baal_caching"):
        wrapped = MCCachingModule(wrapped)
    wrapped.eval()
    return ModelWrapper(wrapped, TrainingArgs(use_cuda=False, replicate_in_memory=False))


def measure_one(
    model_name: str, size: tuple[int, int], method: str, threads: int, repeat: int = 2
) -> dict:
    """Time and peak memory of one method on one image (run in a fresh process)."""
    import torch

    from alseg_core.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=19).eval()
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        model(x)  # warm-up: every method starts from the same state
    base = _peak_mb()
    runner = _baal(model, method) if method.startswith("baal") else None
    workspace: dict = {}  # ours: the head's buffers, kept across images as `alseg score` does
    times: list[float] = []
    while len(times) < repeat or (len(times) < FAST_REPEAT and sum(times) < FAST_SECONDS):
        g = torch.Generator().manual_seed(len(times))  # the fastest run kept: less noise
        start = time.perf_counter()
        _run_method(model, runner, x, size, method, g, workspace)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": _peak_mb(), "model_mb": base, "runs": times}


#: Runs that take under a second are repeated up to this many times (within this many
#: seconds in all): a 0.14 s pass varies by ~30 % between single runs.
FAST_REPEAT, FAST_SECONDS = 6, 3.0


def _run_method(model, runner, x, size: tuple[int, int], method: str, g, workspace) -> None:
    import torch

    from alseg_core.active.scorers import mc_dropout_scores, mc_variance, upsample_scores
    from alseg_core.models import class_map

    with torch.inference_mode():
        if method == "one_pass":
            class_map(model(x))
        elif method.startswith("ours"):
            passes = 40 if method == "ours_d40" else 10
            resolution = "full" if "full" in method else "feature"
            mc_dropout_scores(model, x, passes=passes, generator=g, resolution=resolution,
                              workspace=workspace)  # fmt: skip
        elif method == "naive_d10":
            from alseg_core.active.scorers import MCAccumulator

            acc = MCAccumulator()
            for _ in range(10):  # the whole network per pass, dropout drawn in the head
                logits = model.head(model.trunk(x), size, generator=g)
                acc.update(torch.softmax(logits, 1))
            upsample_scores(mc_variance(acc.stats()), size)
        else:
            out = runner.predict_on_batch(x, iterations=10)  # (N, C, H, W, D) logits
            probs = torch.softmax(out, dim=1)
            probs.var(-1, unbiased=False).mean(1)  # baal's Variance, per pixel


def _child(model: str, size: tuple[int, int], method: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", model, f"{size[0]}x{size[1]}", method,
           "--threads", str(threads)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


#: The cells of the headline ratios, each measured in this many processes (the median
#: kept): a process's resident memory after the same warm-up varies by up to ~300 MiB
#: at 1024x2048 (allocator state), and its speed by 10-25 % (one LR-ASPP pass at
#: 1024x2048 took 0.79-0.99 s in three processes of one run).
PROCESSES = {"one_pass": 5, "ours_d10": 5, "ours_d40": 5}


def _cells(model: str, size: tuple[int, int], methods: list[str], threads: int) -> dict:
    """{method: cell} for ``methods``, their processes interleaved (one of each method,
    then the next round), so that a drift of the machine's speed over minutes (seen here:
    ~20 % for the same pass) shifts every method of a ratio alike."""
    rounds = max(PROCESSES.get(m, 1) for m in methods)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for i in range(rounds):
        for m in methods:
            if i < PROCESSES.get(m, 1):
                runs[m].append(_child(model, size, m, threads))
    return {m: _median_cell(r) for m, r in runs.items()}


def _median_cell(runs: list[dict]) -> dict:
    """The median over a cell's processes of time, peak RSS and working memory (peak
    minus the RSS after the warm-up)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    med = {k: float(np.median([r[k] for r in ok])) for k in ("seconds", "peak_mb", "model_mb")}
    med["working_mb"] = float(np.median([r["peak_mb"] - r["model_mb"] for r in ok]))
    return {**med, "processes": ok}


def random_checkpoint(workdir: Path, model: str) -> Path:
    """``<workdir>/<model>.pt``: the model with random weights, written once."""
    ckpt = workdir / f"{model}.pt"
    if not ckpt.exists():
        from alseg_core import storage
        from alseg_core.models import build_model
        from alseg_core.training import checkpoint_state

        storage.save_checkpoint(str(ckpt), checkpoint_state(build_model(model), dropout=0.5,
                                                            epoch=1))  # fmt: skip
    return ckpt


def timed_peak(cmd: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak RSS in MiB from ``/usr/bin/time``) of one command; raises if it fails."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                         env=env)  # fmt: skip
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-2000:]}")
    return seconds, int(out.stderr.strip().splitlines()[-1]) / 1024


def step_timing(workdir: Path, model: str, n: int, threads: int) -> dict:
    """The whole ``alseg score`` step and ``alseg predict`` per image, 1024x2048."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    workdir.mkdir(parents=True, exist_ok=True)
    bin_ = Path(sys.executable).parent / "alseg"
    params = workdir / "params.yaml"
    params.write_text(
        f"data: {{root: {workdir / 'cs'}, pool_split: train, val_split: train}}\n"
        f"synthetic: {{n_train: {n}, n_val: 1, height: 1024, width: 2048, seed: 0}}\n"
        f"superpixels: {{store: {workdir / 'sp'}, workers: 0}}\n"
        f"model: {{name: {model}}}\n"
        "eval: {batch_size: 8}\n"
        "al: {mc_passes: 10}\n"
    )
    base = [str(bin_), "--params", str(params), "--no-progress"]
    if not (workdir / "cs").exists():
        subprocess.run([*base, "make-synthetic"], check=True, capture_output=True, env=env)
        subprocess.run([*base, "superpixels"], check=True, capture_output=True, env=env)
    ckpt = random_checkpoint(workdir, model)
    result = {}
    for name, args in (
        ("predict", ["predict", "--checkpoint", str(ckpt), "--split", "train",
                     "--out", str(workdir / "preds")]),
        ("score", ["score", "--checkpoint", str(ckpt), "--out", str(workdir / "s.parquet")]),
    ):  # fmt: skip
        seconds, peak_mb = timed_peak([*base, *args], env)
        result[name] = {"seconds_per_image": seconds / n, "peak_mb": peak_mb}
    result["ratio"] = result["score"]["seconds_per_image"] / result["predict"]["seconds_per_image"]
    return result


def ranking_agreement(
    workdir: Path,
    threads: int,
    n_images: int = 12,
    size: tuple[int, int] = (128, 256),
    passes: int = 20,
) -> dict:
    """Spearman correlation of per-superpixel mean MC variance, feature vs full
    resolution, on a model trained on the synthetic default (100 regions per image),
    scored on synthetic scenes rendered at ``size``."""
    import torch
    from scipy.stats import spearmanr

    from alseg_core.active.regions import region_means
    from alseg_core.active.scorers import mc_dropout_scores
    from alseg_core.datasets import cityscapes
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
    from alseg_core.pipeline.steps.train import train_on_split
    from alseg_core.superpixels import SuperpixelParams, compute_regions
    from alseg_core.training import load_model

    torch.set_num_threads(threads)
    root = workdir / "default"
    if not root.exists():
        make_synthetic(str(root), SyntheticSpec(n_train=200, n_val=n_images), workers=threads)
    ckpt = workdir / "trained.pt"
    if not ckpt.exists():
        from alseg_core.config import ModelConfig
        from alseg_core.training_spec import TrainConfig

        train_on_split(cityscapes.list_samples(str(root), "train"), str(ckpt),
                       model=ModelConfig(name="lraspp_mobilenet_v3_large"),
                       train=TrainConfig(epochs=6, batch_size=8, device="cpu"))  # fmt: skip
    model = load_model(str(ckpt))
    scenes = root
    if size != (128, 256):
        scenes = workdir / f"scenes-{size[0]}x{size[1]}"
        if not scenes.exists():
            make_synthetic(str(scenes), SyntheticSpec(n_train=1, n_val=n_images, height=size[0],
                                                      width=size[1]), workers=threads)  # fmt: skip
    pairs = {  # (resolution, mask seed) pairs; the second and third: repeatability
        "feature_vs_full": (("feature", 0), ("full", 0)),
        "full_vs_full_other_masks": (("full", 0), ("full", 1)),
        "feature_vs_feature_other_masks": (("feature", 0), ("feature", 1)),
    }
    per_image: dict[str, list[float]] = {k: [] for k in pairs}
    for n, sample in enumerate(cityscapes.list_samples(str(scenes), "val")[:n_images]):
        image = cityscapes.read_image(sample)
        regions = compute_regions(image, SuperpixelParams(n_regions=100))
        from alseg_core.datasets.transforms import to_tensor

        x = to_tensor(image)[None]
        means = {
            (r, s): region_means(mc_dropout_scores(
                model, x, passes=passes, generator=torch.Generator().manual_seed(n + 1000 * s),
                resolution=r)["mc_variance"][0].numpy(), regions)
            for r in ("feature", "full") for s in (0, 1)
        }  # fmt: skip
        for k, (a, b) in pairs.items():
            per_image[k].append(float(spearmanr(means[a], means[b]).statistic))
    out = {k: {"mean": float(np.mean(v)), "min": float(np.min(v))} for k, v in per_image.items()}
    return {"per_image": per_image["feature_vs_full"], **out["feature_vs_full"],
            "repeatability": {k: out[k] for k in list(pairs)[1:]}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "HxW", "METHOD"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "mc_scoring"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    if args.one:
        model, hw, method = args.one
        size = tuple(int(v) for v in hw.split("x"))
        print(json.dumps(measure_one(model, size, method, args.threads)))
        return
    sizes = [(512, 1024)] if args.quick else [(512, 1024), (1024, 2048)]
    start = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="alseg-mc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cells = work / "cells.json"  # measured cells of this code: a rerun goes on from them
    done = json.loads(cells.read_text()) if cells.exists() else {}
    if done.get("code") != code():
        done = {"code": code()}
    table: dict = {}
    for model in ("drn_d_22", "lraspp_mobilenet_v3_large"):
        for size in sizes:
            key = f"{model} {size[0]}x{size[1]}"
            table[key] = {}
            methods = [
                m
                for m in METHODS
                if not (m == "baal_dropout_d10" and (args.quick or size[0] > 512))
            ]  # the whole network D times, as naive: at 512
            headline = [m for m in methods if m in PROCESSES]
            for group in (headline, *([m] for m in methods if m not in PROCESSES)):
                if all(f"{key} {m}" in done for m in group):
                    measured = {m: done[f"{key} {m}"] for m in group}
                else:
                    measured = _cells(model, size, group, args.threads)
                for method, r in measured.items():
                    table[key][method] = done[f"{key} {method}"] = r
                    print(f"{key:<40} {method:<18} {r}", flush=True)
                cells.write_text(json.dumps(done))
            table[key] = {m: table[key][m] for m in methods}  # the columns' order
    steps = {} if args.quick else {
        m: step_timing(work / m, m, 3, args.threads) for m in ("lraspp_mobilenet_v3_large",
                                                                "drn_d_22")
    }  # fmt: skip
    for m, r in steps.items():
        print(f"score step vs predict, {m}: {r}", flush=True)
    ranking = {
        f"{h}x{w}, D={d}": ranking_agreement(work, args.threads, n_images=n, size=(h, w),
                                             passes=d)
        for h, w, d, n in ((128, 256, 20, 12), (128, 256, 100, 12), (512, 1024, 20, 12),
                           (1024, 2048, 20, 6))
    }  # fmt: skip
    print(f"region ranking agreement: {ranking}", flush=True)
    report = render(table, steps, ranking, time.perf_counter() - start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    out.with_suffix(".json").write_text(json.dumps(
        {"table": table, "score_step": steps, "ranking": ranking, "machine": describe(),
         "code": code()}, indent=1))  # fmt: skip
    print(report)


def render(table: dict, steps: dict, ranking: dict, seconds: float) -> str:
    lines = [
        "# MC-dropout scoring: time and peak memory per image",
        "",
        f"Machine: {describe()}; code {code()}; {seconds / 60:.1f} min. One image, random "
        "weights, each cell its own process (peak RSS of that process, model included); "
        "one pass and ours: the median of 5 processes (interleaved), each the fastest of its "
        "runs (2, or up to 6 within 3 s for a fast cell); ours keeps the head's buffers from "
        "run to run as `alseg score` does from batch to batch.",
        "",
        "| model, size | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for key, row in table.items():
        cells = []
        for m in METHODS:
            r = row.get(m)
            if r is None:
                cells.append("–")
            elif "error" in r:
                cells.append(f"error: {r['error'][:40]}")
            else:
                cells.append(f"{r['seconds']:.2f} s, {r['peak_mb']:.0f} MiB")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios (time):", "",
              "| model, size | ours D=10 / one pass | naive / ours | baal caching / ours | "
              "ours full-res / ours | peak D=40 / D=10 | working memory D=10, D=40 |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, row in table.items():

        def t(m: str, row: dict = row) -> float:
            return (row.get(m) or {}).get("seconds", float("nan"))

        def mem(m: str, row: dict = row) -> float:
            return (row.get(m) or {}).get("peak_mb", float("nan"))

        def work(m: str, row: dict = row) -> float:
            return (row.get(m) or {}).get("working_mb", float("nan"))

        ours = t("ours_d10")
        lines.append(
            f"| {key} | {ours / t('one_pass'):.2f}x | {t('naive_d10') / ours:.1f}x | "
            f"{t('baal_caching_d10') / ours:.2f}x | {t('ours_full_d10') / ours:.2f}x | "
            f"{mem('ours_d40') / mem('ours_d10'):.3f} | {work('ours_d10'):.0f}, "
            f"{work('ours_d40'):.0f} MiB |"
        )
    if steps:
        lines += ["", "Whole step per image at 1024x2048 (3 synthetic images, D=10, batch 8, "
                  "`al.score_batch_pixels` default):", "",
                  "| model | `alseg predict` | `alseg score` | ratio |",
                  "|---|---|---|---|"]  # fmt: skip
        for m, r in steps.items():
            p, s = r["predict"], r["score"]
            lines.append(
                f"| {m} | {p['seconds_per_image']:.2f} s, {p['peak_mb']:.0f} MiB | "
                f"{s['seconds_per_image']:.2f} s, {s['peak_mb']:.0f} MiB | {r['ratio']:.2f}x |"
            )
    lines += ["", "Region rankings (mean MC variance per superpixel, 100 per image, "
              "LR-ASPP trained 6 epochs on the synthetic default at 128x256), Spearman "
              "feature vs full resolution with the same masks; beside it the repeatability "
              "of each mode (the same mode, other masks), the agreement MC noise allows:", "",
              "| scenes rendered at, passes | images | feature vs full (mean, min) | full vs full, "
              "other masks | feature vs feature, other masks |",
              "|---|---|---|---|---|"]  # fmt: skip
    for size, r in ranking.items():
        rep = r.get("repeatability", {})

        def agree(k: str, rep: dict = rep) -> str:
            return f"{rep[k]['mean']:.3f}, {rep[k]['min']:.3f}" if k in rep else "–"

        lines.append(
            f"| {size} | {len(r['per_image'])} | {r['mean']:.3f}, {r['min']:.3f} | "
            f"{agree('full_vs_full_other_masks')} | {agree('feature_vs_feature_other_masks')} |"
        )
    lines += ["", "Command: `.venv/bin/python bench/mc_scoring.py`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
