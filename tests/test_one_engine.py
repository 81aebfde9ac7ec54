"""One engine: `alseg run` and `dvc repro` run the same steps with the same meaning.

The same params.yaml drives both in one real DVC repo (with the library's sources, which
its stages depend on); the selections and labelled sets must be byte-identical and the
metrics equal, with and without fine-tuning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import copy_pipeline

from alseg_core.pipeline.layout import DVC_BASE, RoundLayout
from alseg_core.storage import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.orchestration

PARAMS = """\
data: {{root: {root}, pool_split: train, val_split: val}}
superpixels: {{method: watershed, n_regions: 30, compactness: 0.01, store: {store}, workers: 1}}
model: {{name: lraspp_mobilenet_v3_large, dropout: 0.5, num_classes: 19}}
train: {{epochs: 1, batch_size: 4, lr: 0.001, weight_decay: 0.0001, seed: 0, crop: null,
        scale_range: null, hflip: true, num_workers: 0, device: cpu}}
eval: {{batch_size: 8}}
al: {{unit: superpixel, strategy: mc_variance, rounds: 2, initial_images: 3,
     budget_per_round: 30, mc_passes: 2, train_steps: 6, train_epochs: 0, finetune: {finetune},
     seed: 0, heat_stride: 4, out: data/runs/al, annotator: oracle, label_format: train_ids,
     export_formats: [label-studio, cvat], image_url_prefix: null,
     score_resolution: feature, score_batch_pixels: 2097152, plateau_chunks: 0,
     plateau_tol: 0.005, plateau_patience: 1, pseudo_threshold: 0.0, pseudo_chunks: 2,
     seed_unit: image, seed_budget: 0}}
rounds:
  r1: {{prev: r0}}
  r2: {{prev: r1}}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(args: list[str], cwd: Path) -> str:
    out = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def make_pipeline_repo(tmp_path: Path, root: Path, *, finetune: bool) -> Path:
    """A git + DVC repo like a clone of this project: dvc.yaml, params.yaml, the sources."""
    repo = tmp_path / "repo"
    copy_pipeline(repo)
    (repo / "params.yaml").write_text(
        PARAMS.format(root=root, store=tmp_path / "sp", finetune=str(finetune).lower())
    )
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@localhost"],
                ["git", "config", "user.name", "t"], [str(BIN / "dvc"), "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline"]):  # fmt: skip
        _run(cmd, repo)
    return repo


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("finetune", [True, False])
def test_alseg_run_and_dvc_repro_agree_byte_for_byte(synthetic_root, tmp_path, finetune):
    repo = make_pipeline_repo(tmp_path, synthetic_root, finetune=finetune)
    out = _run([str(BIN / "dvc"), "repro"], repo)
    assert "Running stage 'train@r2'" in out
    _run([str(BIN / "alseg"), "--no-progress", "run"], repo)
    dvc, run = RoundLayout(str(repo / DVC_BASE)), RoundLayout(str(repo / "data/runs/al"))
    miou = []
    for k in (0, 1, 2):
        assert Path(dvc.selection(k)).read_bytes() == Path(run.selection(k)).read_bytes()
        labelled = _files(Path(dvc.labelled(k)))
        assert labelled and labelled == _files(Path(run.labelled(k)))
        metrics = json.loads(Path(dvc.metrics(k)).read_text())
        assert metrics == json.loads(Path(run.metrics(k)).read_text())
        assert Path(dvc.curve(k)).read_bytes() == Path(run.curve(k)).read_bytes()
        # Same training data, same start: the same weights (the files differ only in the
        # run identity, which names the labelled set's folder).
        a, b = load_checkpoint(dvc.model(k)), load_checkpoint(run.model(k))
        assert a["model_state"].keys() == b["model_state"].keys()
        assert all(torch.equal(a["model_state"][n], b["model_state"][n]) for n in a["model_state"])
        miou.append(metrics["mIoU"])
    states = [json.loads(Path(dvc.labelled(k), "state.json").read_text()) for k in (0, 1, 2)]
    assert states[0]["total_cost"] < states[1]["total_cost"] < states[2]["total_cost"]

    # The schedule really differs: round 2 fine-tuned from round 1's weights or not.
    lock = (repo / "dvc.lock").read_text()
    assert "data/rounds/r1/model.pt" in lock.split("train@r2:")[1].split("outs:")[0]
    if finetune:
        _check_code_dependencies(repo)


def _check_code_dependencies(repo: Path) -> None:
    """Touching the selection code changes the select stages, not score or train."""
    status = json.loads(_run([str(BIN / "dvc"), "status", "--json"], repo) or "{}")
    assert status == {}, status
    selection = repo / "alseg_core" / "active" / "selection.py"
    selection.write_text(selection.read_text() + "\n# touched\n")
    status = json.loads(_run([str(BIN / "dvc"), "status", "--json"], repo))
    assert set(status) == {"seed_select", "select@r1", "select@r2"}, status
    for stage, changes in status.items():
        assert {"changed deps": {"alseg_core/active/selection.py": "modified"}} in changes, stage
    # Re-running runs the select stages and, their outputs being the same, nothing else.
    out = _run([str(BIN / "dvc"), "repro"], repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"seed_select", "select@r1", "select@r2"}, out


def test_dvc_metrics_and_plots_after_the_seed_round_alone(synthetic_root, tmp_path):
    """Two listed rounds not run yet: no warning; a small headline; offline plots."""
    repo = make_pipeline_repo(tmp_path, synthetic_root, finetune=True)
    _run([str(BIN / "dvc"), "repro", "seed_publish"], repo)
    assert not (repo / DVC_BASE / "r1").exists()
    dvc = [str(BIN / "dvc")]
    shown = subprocess.run([*dvc, "metrics", "show"], cwd=repo, env=_env(),
                           capture_output=True, text=True)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "WARNING" not in shown.stdout + shown.stderr and "failed" not in shown.stderr
    header, row = shown.stdout.strip().splitlines()[:2]
    assert header.split() == ["Path", "full_cost", "labelled_cost", "mIoU", "n_images",
                              "n_regions", "pct_full_cost", "round"]  # fmt: skip
    headline = json.loads((repo / DVC_BASE / "metrics.json").read_text())
    assert headline["round"] == 0 and f"{headline['mIoU']:g}" in row.split()
    per_class = json.loads((repo / DVC_BASE / "per_class_iou.json").read_text())
    assert len(per_class) == 20 and "traffic sign" in per_class  # round + 19 classes
    plots = subprocess.run([*dvc, "plots", "show"], cwd=repo, env=_env(),
                           capture_output=True, text=True)  # fmt: skip
    assert plots.returncode == 0, plots.stderr
    assert "WARNING" not in plots.stdout + plots.stderr
    html = (repo / "dvc_plots" / "index.html").read_text()
    assert "<img" in html and "learning_curve.png" in html
    assert "http://" not in html and "https://" not in html  # renders offline
