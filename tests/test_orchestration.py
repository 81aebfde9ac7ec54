"""Orchestration end to end: a real Prefect API, a real DVC repo, a real S3 API (moto).

The deployment al-cycle/cityscapes is served by ``alseg-flows serve`` in a subprocess;
rounds are triggered through the Prefect API; the dataset, the superpixel store, the
request exports and the DVC remote all live in a moto S3 bucket on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_pipeline

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.orchestration

TINY_PARAMS = """\
data: {{root: {root}, pool_split: train, val_split: val}}
synthetic: {{n_train: 12, n_val: 3, height: 48, width: 96, seed: 1}}
superpixels: {{method: watershed, n_regions: 30, compactness: 0.01, store: {store}, workers: 1}}
model: {{name: drn_d_22, dropout: 0.5, num_classes: 19}}
train: {{epochs: 1, batch_size: 4, lr: 0.001, weight_decay: 0.0001, seed: 0, crop: null,
        scale_range: null, hflip: true, num_workers: 0, device: cpu}}
eval: {{batch_size: 8}}
al: {{unit: superpixel, strategy: mc_variance, rounds: 1, initial_images: 2,
     budget_per_round: 20, mc_passes: 2, train_steps: 2, train_epochs: 0, finetune: true,
     seed: 0, heat_stride: 4, out: data/runs/al, annotator: {annotator}, label_format: train_ids,
     export: {export}, export_formats: [label-studio, cvat], image_url_prefix: null,
     score_resolution: feature, score_batch_pixels: 2097152, plateau_chunks: 0,
     plateau_tol: 0.005, plateau_patience: 1, pseudo_threshold: 0.0, pseudo_chunks: 2,
     seed_unit: image, seed_budget: 0}}
rounds:
  r1: {{prev: r0}}
"""


SLOT_WAIT = "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as patch:
        # A run held by the deployment's concurrency limit retries after this many
        # seconds (30 by default): the test server's setting, read when it starts.
        patch.setenv(SLOT_WAIT, "2")
        with prefect_test_harness(server_startup_timeout=90):
            from prefect.settings import PREFECT_API_URL

            yield PREFECT_API_URL.value()


def _env(api_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        ALSEG_PROGRESS_EVERY="0",  # a progress line per item: the tiny stages show some
        PREFECT_RUNNER_POLL_FREQUENCY="1",  # `serve` looks for runs every second, not 10
    )
    return env


def _run(args, cwd, env, check=True):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def make_repo(tmp_path: Path, bucket: str, endpoint: str, env: dict, *, annotator: str) -> Path:
    root, store, export = f"{bucket}/cityscapes", f"{bucket}/superpixels", f"{bucket}/exports"
    make_synthetic(root, SyntheticSpec(n_train=12, n_val=3, height=48, width=96, seed=1))
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_pipeline(repo)  # a clone of the project: the stages depend on the code they run
    (repo / "params.yaml").write_text(
        TINY_PARAMS.format(root=root, store=store, export=export, annotator=annotator)
    )
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@localhost"],
        ["git", "config", "user.name", "test"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "remote", "add", "-d", "store", f"{bucket}/dvc"],
        [str(BIN / "dvc"), "remote", "modify", "store", "endpointurl", endpoint],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "pipeline"],
    ):
        _run(cmd, repo, env)
    return repo


class Server:
    """``alseg-flows serve`` in a subprocess; stopped by the test."""

    def __init__(self, repo: Path, env: dict, limit: int) -> None:
        self.repo = repo
        self.log = open(repo.parent / "serve.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "alseg-flows"), "serve", "--repo", str(repo), "--no-schedule",
             "--limit", str(limit)],
            cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_deployment()

    def wait_for_deployment(self) -> None:
        """Until the deployment exists and points at this test's repo (the API outlives
        a test, so an earlier test's registration may still be there)."""
        from prefect.client.orchestration import get_client

        deadline = time.time() + 120
        with get_client(sync_client=True) as client:
            while time.time() < deadline:
                try:
                    deployment = client.read_deployment_by_name("al-cycle/cityscapes")
                    if deployment.parameters.get("repo") == str(self.repo):
                        return
                except Exception:
                    pass
                assert self.proc.poll() is None, self.tail()
                time.sleep(1)
        raise AssertionError("deployment never appeared:\n" + self.tail())

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def trigger(env: dict) -> str:
    """The README's command: ``prefect deployment run al-cycle/cityscapes``."""
    out = _run([str(BIN / "prefect"), "deployment", "run", "al-cycle/cityscapes"], REPO_ROOT, env)
    for line in out.stdout.splitlines():
        if "UUID" in line:
            return line.split("UUID:")[1].strip()
    raise AssertionError(f"no flow run id in:\n{out.stdout}")


def wait_for(run_id: str, server: Server, *, until: str = "final", timeout: float = 900):
    from prefect.client.orchestration import get_client

    deadline = time.time() + timeout
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            run = client.read_flow_run(run_id)
            state = run.state
            if until == "paused" and state is not None and state.is_paused():
                return run
            if state is not None and state.is_final():
                return run
            assert server.proc.poll() is None, server.tail()
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish:\n{server.tail()}")


@pytest.fixture
def served(tmp_path, s3_bucket, s3_endpoint, prefect_api, request):
    env = _env(prefect_api)
    repo = make_repo(tmp_path, s3_bucket, s3_endpoint, env, annotator=request.param)
    server = Server(repo, env, limit=2)
    try:
        yield repo, env, server, s3_bucket
    finally:
        server.stop()


def _lock_outs(repo: Path, stage: str) -> dict:
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


@pytest.mark.parametrize("served", ["oracle"], indirect=True)
def test_two_rounds_through_the_deployment(served, tmp_path):
    repo, env, server, bucket = served
    # Two triggers at once: the deployment's concurrency limit makes the second wait,
    # although the serving process could run two flow runs side by side (--limit 2).
    first, second = trigger(env), trigger(env)
    runs = [wait_for(first, server), wait_for(second, server)]
    for run in runs:
        assert run.state.is_completed(), f"{run.state}\n{server.tail()}"
    a, b = sorted(runs, key=lambda r: r.start_time)
    assert b.start_time >= a.end_time, "the two rounds ran side by side"

    tags = _run(["git", "tag", "--list"], repo, env).stdout.split()
    assert tags == ["round-1", "round-2"]
    params = (repo / "params.yaml").read_text()
    assert "r2: {prev: r1}" in params  # the second run added its round

    # nothing changed since: a second `dvc repro` runs nothing
    out = _run([str(BIN / "dvc"), "repro"], repo, env).stdout
    assert "Running stage" not in out and "up to date" in out

    # a fresh clone gets each round's labelled set and checkpoint from the S3 remote
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    _run([str(BIN / "dvc"), "pull"], clone, env)
    for k in (1, 2):
        for path in (f"data/rounds/r{k}/labelled/state.json", f"data/rounds/r{k}/model.pt"):
            assert (clone / path).read_bytes() == (repo / path).read_bytes()
    # ... and the headline metrics are in git: `dvc metrics show` in the clone, no warning
    shown = _run([str(BIN / "dvc"), "metrics", "show"], clone, env)
    assert "WARNING" not in shown.stdout + shown.stderr
    assert json.loads((clone / "data/rounds/metrics.json").read_text())["round"] == 2
    s1 = json.loads((clone / "data/rounds/r1/labelled/state.json").read_text())
    s2 = json.loads((clone / "data/rounds/r2/labelled/state.json").read_text())
    assert s2["total_cost"] > s1["total_cost"]
    for image_id, entry in s1["images"].items():
        assert set(entry["regions"]) <= set(s2["images"][image_id]["regions"])
        assert set(entry["instance_keys"]) <= set(s2["images"][image_id]["instance_keys"])
    assert len(s2["history"]) == len(s1["history"]) + 1

    # `dvc repro` of round 1 in a clean clone recomputes it and gets the same labelled set
    fresh = tmp_path / "fresh"
    _run(["git", "clone", "-q", str(repo), str(fresh)], tmp_path, env)
    _run(["git", "checkout", "-q", "round-1"], fresh, env)
    before = _lock_outs(fresh, "merge@r1")
    out = _run([str(BIN / "dvc"), "repro", "merge@r1"], fresh, env).stdout
    assert "Running stage 'seed_train'" in out and "Running stage 'merge@r1'" in out  # recomputed
    assert _lock_outs(fresh, "merge@r1") == before

    # artifacts: the round's metrics table and request paths
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts()
    assert {"al-round-1", "al-round-2"} <= {a.key for a in arts}
    md = next(a for a in arts if a.key == "al-round-2").data
    assert "| round | labelled_cost" in md and "request.csv" in md
    assert re.search(r"round 2: selected \d+ images / \d+ regions .* estimated cost", md)
    # The curve as an image the UI shows, and the scoring progress, one key per round.
    plot = next(a for a in arts if a.key == "al-learning-curve-plot")
    assert plot.type == "image" and plot.data.startswith("data:image/png;base64,iVBOR")
    scoring = {a.key: a for a in arts if a.key.startswith("al-scoring-")}
    assert set(scoring) == {"al-scoring-score-r1", "al-scoring-score-r2"}, set(scoring)
    assert all(a.type == "progress" and float(a.data) == 100.0 for a in scoring.values())
    # The learning curve: one key, a version per round, each the curve so far.
    curves = sorted((a for a in arts if a.key == "al-learning-curve"), key=lambda a: a.created)
    assert len(curves) == 2, [a.key for a in arts]
    tables = [json.loads(a.data) if isinstance(a.data, str) else a.data for a in curves]
    assert [len(t) for t in tables] == [2, 3]  # rounds 0-1, then 0-2
    assert [r["round"] for r in tables[1]] == ["0", "1", "2"] and "mIoU" in tables[1][0]

    # Each stage's task log ends with what it did and how long it took.
    messages = _all_log_messages()
    assert any(re.fullmatch(r"train@r1: ran train@r1 in \d+\.\d s", m) for m in messages)
    assert any(m.startswith("round 1: trained drn_d_22 from round 0") for m in messages)
    assert any(re.fullmatch(r"round 2: mIoU \d\.\d{4} on 3 val images", m) for m in messages)
    assert any(m.startswith("round 2: merged, charged ") for m in messages)
    # Progress lines reach the log while a stage runs (every item here: ALSEG_PROGRESS_EVERY=0).
    assert any(re.match(r"score: \d+/\d+ img \[\d+s", m) for m in messages)
    assert any(re.match(r"train: \d+/\d+ epoch \[\d+s", m) for m in messages)

    _assert_no_credentials(repo, server, bucket, [a.data for a in arts])


def _all_log_messages() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    out: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(log_filter=LogFilter(), limit=200, offset=len(out))
            if not page:
                return out
            out += [log.message for log in page]


def _assert_no_credentials(repo: Path, server: Server, bucket: str, artifacts: list) -> None:
    """The dummy AWS key id and secret appear nowhere: repo files (DVC lock, params,
    config, outputs, git history), the flow logs, the artifacts and the bucket."""
    import boto3
    from conftest import DUMMY_ENV
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    secrets = [DUMMY_ENV["AWS_SECRET_ACCESS_KEY"], DUMMY_ENV["AWS_ACCESS_KEY_ID"]]
    # The credentials were there to leak: every process of the round had them.
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == secrets[0]
    blobs: dict[str, bytes] = {
        str(p): p.read_bytes() for p in repo.rglob("*") if p.is_file() and not p.is_symlink()
    }
    history = _run(["git", "log", "-p", "--all"], repo, dict(os.environ)).stdout
    blobs["git log -p"] = history.encode()
    blobs["serve log"] = server.tail().encode() + Path(server.log.name).read_bytes()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(), limit=200)
    blobs["flow run logs"] = "\n".join(log.message for log in logs).encode()
    blobs["artifacts"] = json.dumps(artifacts, default=str).encode()
    s3 = boto3.client("s3")
    name = bucket.removeprefix("s3://")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            blobs[f"{bucket}/{obj['Key']}"] = s3.get_object(Bucket=name, Key=obj["Key"])[
                "Body"
            ].read()
    assert len(blobs) > 50 and any(k.endswith("dvc.lock") for k in blobs)
    for where, data in blobs.items():
        for secret in secrets:
            assert secret.encode() not in data, f"credential found in {where}"


def _brushes(mask: np.ndarray, inst: np.ndarray) -> list[dict]:
    """Label Studio brush results: one per object instance, one per stuff class."""
    from alseg_core.annotation.formats.brush_rle import mask_to_rle
    from alseg_core.datasets.labels import TRAIN_CLASS_NAMES

    inst = np.where(mask != 255, inst, 0)
    parts = [(inst == v, int(mask[inst == v][0])) for v in np.unique(inst[inst >= 1000])]
    parts += [
        ((mask == c) & (inst < 1000), int(c))
        for c in np.unique(mask[(mask != 255) & (inst < 1000)])
    ]
    h, w = mask.shape
    return [{"id": f"r{n}", "type": "brushlabels", "from_name": "tag", "to_name": "image",
             "original_width": w, "original_height": h,
             "value": {"format": "rle", "rle": mask_to_rle(px),
                       "brushlabels": [TRAIN_CLASS_NAMES[c]]}}
            for n, (px, c) in enumerate(parts)]  # fmt: skip


@pytest.mark.parametrize("served", ["human"], indirect=True)
def test_human_round_suspends_and_resumes_on_delivery(served, tmp_path):
    from alseg_core.annotation import load_request, oracle_answer
    from alseg_core.config import load_config
    from alseg_core.labels import LabelState
    from alseg_core.pipeline.pool import Pool

    repo, env, server, bucket = served
    run_id = trigger(env)
    run = wait_for(run_id, server, until="paused")
    assert run.state.is_paused(), f"{run.state}\n{server.tail()}"
    exported = f"{bucket}/exports/round-1/request"
    assert storage.exists(f"{exported}/request.csv") and storage.exists(f"{exported}/request.json")
    # The annotation tools' files are exported beside the CSV.
    assert storage.exists(f"{exported}/cvat/segmentation-mask-1.1.zip")
    tasks = json.loads(storage.read_bytes(f"{exported}/label-studio/tasks.json"))
    assert storage.exists(f"{exported}/label-studio/labeling_config.xml")

    # An annotator labels the tasks in Label Studio (here: what the oracle reveals, one
    # brush per object instance and per stuff class) and uploads its JSON export to S3.
    request = load_request(exported)
    cfg = load_config(str(repo / "params.yaml"))
    store = cfg.superpixels.open_store()
    maps = {i.image_id: store.read(i.image_id) for i in request.items}
    pool = Pool.read(str(repo / "data/rounds/pool.json"))
    answer = oracle_answer(request, pool.samples, maps, LabelState())
    assert [t["data"]["image_id"] for t in tasks] == [
        i.image_id for i in sorted(request.items, key=lambda i: (-i.score, i.image_id))
    ]
    for task in tasks:
        img = next(i for i in answer.images if i.labels.image_id == task["data"]["image_id"])
        inst = cityscapes.read_instances(pool.samples[img.labels.image_id])
        task["annotations"] = [{"id": 1, "result": _brushes(img.mask, inst)}]
    delivered = f"{bucket}/delivered/round-1/label-studio-export.json"
    storage.write_bytes(delivered, json.dumps(tasks).encode())

    out = _run([str(BIN / "alseg-flows"), "deliver", run_id, delivered, "--format",
                "label-studio"], REPO_ROOT, env)  # fmt: skip
    assert "delivered" in out.stdout
    run = wait_for(run_id, server)
    assert run.state.is_completed(), f"{run.state}\n{server.tail()}"
    state = json.loads((repo / "data/rounds/r1/labelled/state.json").read_text())
    last = state["history"][-1]
    assert last["delivery_id"].startswith("human-")
    assert last["cost"] == answer.cost  # one unit per object instance, as the oracle
    assert set(state["images"]) >= {img.labels.image_id for img in answer.images}
    first = answer.images[0]
    merged = storage.read_image(
        str(repo / "data/rounds/r1/labelled/masks" / f"{first.labels.image_id}.png")
    )
    given = first.mask != 255
    assert np.array_equal(merged[given], first.mask[given])  # the delivered labels are in
    tags = _run(["git", "tag", "--list"], repo, env).stdout.split()
    assert tags == ["round-1"]
    assert (repo / "deliveries" / "r1" / "import.json").is_file()
