"""Overhead of running a round through Prefect + DVC, against the same round run directly.

Both sides run round r1 on the same data and parameters after the same seed round:

- direct: the round's steps called in one process (what ``alseg run`` does per round):
  train -> evaluate -> score -> select -> request -> annotate (oracle) -> merge -> publish;
- orchestrated: the ``al-cycle`` flow against a temporary Prefect API: one task per
  step, each running ``dvc repro <stage>@r1`` (a fresh ``dvc`` and ``alseg`` process per
  stage), then artifacts, git commit + tag. No DVC remote, so no push.

    .venv/bin/python bench/orchestration.py [--out bench/results/orchestration.txt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _machine import describe  # noqa: E402

PARAMS = """\
data: {{root: {root}, pool_split: train, val_split: val}}
synthetic: {{n_train: {n_train}, n_val: {n_val}, height: {height}, width: {width}, seed: 0}}
superpixels: {{method: watershed, n_regions: 100, compactness: 0.01, store: {store}, workers: 0}}
model: {{name: {model}, dropout: 0.5, num_classes: 19}}
train: {{epochs: 1, batch_size: 8, lr: 0.001, weight_decay: 0.0001, seed: 0, crop: null,
        scale_range: [0.75, 1.25], hflip: true, num_workers: 0, device: auto}}
eval: {{batch_size: 8}}
al: {{unit: superpixel, strategy: mc_variance, rounds: 1, initial_images: 20,
     budget_per_round: 400, mc_passes: 10, train_steps: {steps}, finetune: true, seed: 0,
     heat_stride: 4, out: data/runs/al, annotator: oracle, label_format: train_ids,
     export: data/exports, export_formats: [label-studio, cvat], image_url_prefix: null,
     score_resolution: feature, score_batch_pixels: 2097152}}
rounds:
  r1: {{prev: r0}}
"""


def sh(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-val", type=int, default=50)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--model", default="lraspp_mobilenet_v3_large")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from alseg_core import storage
    from alseg_core.config import load_config
    from alseg_core.pipeline.engine import RoundEngine
    from alseg_core.pipeline.layout import ROUND_STEPS, RoundLayout

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "params.yaml").write_text(
            PARAMS.format(
                root=f"{tmp}/data", store=f"{tmp}/superpixels", n_train=args.n_train,
                n_val=args.n_val, height=args.height, width=args.width, model=args.model,
                steps=args.train_steps,
            )
        )  # fmt: skip
        for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
            shutil.copy(REPO_ROOT / name, repo)
        shutil.copytree(REPO_ROOT / "alseg_core", repo / "alseg_core",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "b"],
                    ["alseg", "make-synthetic"], ["dvc", "repro", "seed_publish"]):  # fmt: skip
            sh(cmd, repo)
        cfg = load_config(str(repo / "params.yaml"))
        # The same round through the engine in one process (as `alseg run` runs it),
        # starting from a copy of the seed round.
        direct = Path(tmp) / "direct"
        shutil.copytree(repo / "data/rounds", direct)
        engine = RoundEngine(cfg, RoundLayout(str(direct)))
        start = time.perf_counter()
        for step in ROUND_STEPS:
            engine.run_step(step, 1, 0)
        t_direct = time.perf_counter() - start

        from prefect.testing.utilities import prefect_test_harness

        sys.path.insert(0, str(REPO_ROOT))
        from flows.al_cycle import al_cycle

        with prefect_test_harness(server_startup_timeout=90):
            start = time.perf_counter()
            result = al_cycle(repo=str(repo))
            t_flow = time.perf_counter() - start
        same = storage.read_json(str(direct / "r1/labelled/state.json")) == storage.read_json(
            str(repo / "data/rounds/r1/labelled/state.json")
        )

    overhead = t_flow - t_direct
    target = max(0.15 * t_direct, 20.0)
    verdict = "met" if overhead <= target else "NOT met"
    lines = [
        f"machine: {describe()}",
        f"round r1: {args.n_train} pool images {args.width}x{args.height}, {args.model}, "
        f"{args.train_steps} train steps, D=10, superpixel unit, mc_variance",
        f"direct (round engine in one process, as alseg run): {t_direct:7.1f} s",
        f"Prefect flow + DVC stages + git tag:          {t_flow:7.1f} s  ({result['tag']})",
        f"overhead: {overhead:+.1f} s = {100 * overhead / t_direct:+.1f}% "
        f"(target: under max(15%, 20 s) = {target:.1f} s -> {verdict})",
        f"same labelled set both ways: {same}",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
