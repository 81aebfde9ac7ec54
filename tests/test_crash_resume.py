"""Crash and resume at every stage of a round, through DVC, with the data on S3 (moto).

For each stage a process is SIGKILLed inside it, at a point drawn from a seeded RNG:
``ALSEG_TEST_KILL_AT_WRITE=<command>:<n>`` makes the ``alseg`` process of that stage kill
itself inside its n-th write (after the bytes reach a temporary file, before the rename,
or before an S3 upload); training is killed from outside, while it runs, as soon as its
first epoch is saved. The round is then re-run the documented way, ``dvc repro``. The
superpixels and the round's other stages are killed in turn in one fresh repo, each
re-run being killed inside the next stage. Each time:

- the round completes, and the stages that had finished before the crash are not run
  again (counted from DVC's "Running stage" lines);
- every output (labelled set, checkpoint, scores, metrics ...) has the same hash in
  ``dvc.lock`` as in an uninterrupted run;
- training resumes after its last saved epoch, not from zero;
- no temporary or partial file is left in the workspace or in the bucket.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import copy_pipeline

from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic
from alseg_core.pipeline.layout import ROUND_STEPS, SEED_STEPS, stage_name
from alseg_core.workspace import stale_temporaries

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _params(bucket: str, store: str) -> str:
    """The project's params.yaml (DVC needs every key) shrunk to a tiny round."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"]["root"] = f"{bucket}/cs"
    params["superpixels"].update(n_regions=20, compactness=0.02, store=f"{bucket}/{store}")
    params["superpixels"]["workers"] = 1
    params["model"]["name"] = "drn_d_22"
    params["train"].update(batch_size=8, device="cpu", scale_range=None)
    params["al"].update(unit="superpixel", strategy="mc_variance", initial_images=2,
                        budget_per_round=15, mc_passes=2, train_steps=4)  # fmt: skip
    params["rounds"] = {"r1": {"prev": "r0"}}
    return yaml.safe_dump(params, sort_keys=False)


# stage -> (alseg step, writes the stage surely makes: the kill point is drawn in 1..n)
STAGES = {
    "superpixels": ("superpixels", 2),
    "score@r1": ("score", 1),
    "select@r1": ("select", 1),
    "request@r1": ("request", 4),
    "annotate@r1": ("annotate", 2),
    "merge@r1": ("merge", 2),
    "evaluate@r1": ("evaluate", 1),
    "publish@r1": ("publish", 3),
}
ROUND = [stage_name(step, 1) for step in ROUND_STEPS]
SEED = ["superpixels", *(stage_name(step, 0) for step in SEED_STEPS)]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("ALSEG_TEST_KILL_AT_WRITE", None)
    env.update(extra)
    return env


def _repro(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dvc"), "repro", *args], cwd=repo, env=_env(**env),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _ran(out: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out.stdout)


def _lock(repo: Path) -> dict[str, dict[str, str]]:
    """stage -> {path: md5} of its outputs and metrics, from dvc.lock."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        name: {o["path"]: o.get("md5") for o in stage.get("outs", [])}
        for name, stage in lock["stages"].items()
    }


def _leftovers(repo: Path, bucket: str) -> list[str]:
    import s3fs

    found = [str(p) for p in stale_temporaries([repo / "data"])]
    found += [str(p) for p in (repo / "data").rglob("*.partial")]
    fs = s3fs.S3FileSystem()
    keys = fs.find(bucket.removeprefix("s3://"))
    found += [k for k in keys if k.endswith((".tmp", ".partial")) or "/." in k]
    return found


@pytest.fixture(scope="module")
def template(tmp_path_factory, s3_endpoint):
    """A fresh pipeline repo whose dataset is in a moto bucket; and the baseline lock."""
    import boto3

    bucket_name = f"crash-{os.urandom(3).hex()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket_name)
    bucket = f"s3://{bucket_name}"
    make_synthetic(f"{bucket}/cs", SyntheticSpec(n_train=8, n_val=2, height=48, width=96))
    fresh = tmp_path_factory.mktemp("crash") / "fresh"
    fresh.mkdir()
    copy_pipeline(fresh)  # the stages depend on the code they run
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=fresh, check=True, env=_env())

    def repo_for(name: str, store: str) -> Path:
        repo = fresh.parent / name
        shutil.copytree(fresh, repo)
        (repo / "params.yaml").write_text(_params(bucket, store))
        return repo

    baseline = repo_for("baseline", "sp-baseline")
    out = _repro(baseline)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert set(_ran(out)) == set(SEED + ROUND)
    # Later cases start from a repo whose seed round is done (and share its store).
    seeded = repo_for("seeded", "sp-seeded")
    out = _repro(seeded, "seed_publish")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"bucket": bucket, "baseline": _lock(baseline), "fresh": repo_for, "seeded": seeded}


def _outputs_equal(repo: Path, baseline: dict) -> None:
    lock = _lock(repo)
    for stage in ["superpixels", *ROUND]:
        for path, md5 in baseline[stage].items():
            if path.endswith("pool.json"):
                continue  # names the store, which differs per case
            assert lock[stage][path] == md5, f"{stage}: {path} differs from the clean run"


def _round_is_clean(repo: Path, template: dict) -> None:
    """After the re-runs: the clean run's outputs, no leftovers, nothing more to run."""
    _outputs_equal(repo, template["baseline"])
    assert _leftovers(repo, template["bucket"]) == []
    assert _ran(_repro(repo)) == []


def test_kill_inside_training_then_dvc_repro_resumes_after_the_saved_epoch(template, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(template["seeded"], repo)
    # From outside: SIGKILL the whole `dvc repro` once training has saved an epoch.
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"], cwd=repo, env=_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    partial = repo / "data" / "rounds" / "r1" / "model.pt.partial"
    deadline = time.time() + 300
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert partial.exists(), "training never saved an epoch"
    os.killpg(proc.pid, signal.SIGKILL)
    first_ran = re.findall(r"Running stage '([^']+)'", proc.communicate()[0])
    assert first_ran[-1] == "train@r1"

    second = _repro(repo)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # The crashed stage runs again, first; the ones that had finished do not.
    assert _ran(second) == ROUND[ROUND.index("train@r1") :]
    assert re.search(r"resumed after epoch [1-9]", second.stdout), second.stdout[-3000:]
    _round_is_clean(repo, template)


def test_a_kill_inside_each_stage_in_turn_then_dvc_repro_completes_the_round(template):
    """One fresh repo, one kill per stage (the superpixels, then the round's stages): each
    `dvc repro` is killed inside the next stage and the one after resumes there (a repo
    per stage cost ~40 s each on 2 cores)."""
    repo = template["fresh"](f"case-chain-{os.urandom(2).hex()}", "sp-crash")
    order = SEED + ROUND
    rng = random.Random("crash-chain")
    crashed: str | None = None  # the stage the previous `dvc repro` was killed in
    for stage in [*STAGES, None]:
        env = {}
        if stage is not None:
            command, n_writes = STAGES[stage]
            env["ALSEG_TEST_KILL_AT_WRITE"] = f"{command}:{rng.randint(1, n_writes)}"
        out = _repro(repo, **env)
        # The crashed stage runs again, first; the ones that had finished do not.
        start = order.index(crashed) if crashed else 0
        end = order.index(stage) + 1 if stage else len(order)
        assert _ran(out) == order[start:end], (stage, out.stdout[-2000:], out.stderr[-2000:])
        if stage is None:
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        else:
            assert out.returncode != 0, f"{stage} was not killed: {env}"
        crashed = stage
    _round_is_clean(repo, template)


def test_bad_delivery_under_dvc_changes_neither_lock_nor_labels(template, tmp_path):
    """A human delivery that fails validation stops `dvc repro` at annotate with a
    message naming the file; dvc.lock and every labelled set stay as they were."""
    repo = tmp_path / "repo"
    shutil.copytree(template["seeded"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["al"]["annotator"] = "human"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _repro(repo, "request@r1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    request = yaml.safe_load((repo / "data/rounds/r1/request/request.json").read_text())
    inbox = repo / "deliveries" / "r1"
    inbox.mkdir(parents=True)
    for item in request["items"]:
        (inbox / f"{item['image_id']}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    lock_before = (repo / "dvc.lock").read_bytes()
    labelled = repo / "data" / "rounds" / "r0" / "labelled"
    before = {p: p.read_bytes() for p in labelled.rglob("*") if p.is_file()}

    failed = _repro(repo)
    assert failed.returncode != 0 and _ran(failed) == ["annotate@r1"]
    assert re.search(r"deliveries/r1/\w+\.png: not a readable image", failed.stderr + failed.stdout)
    assert (repo / "dvc.lock").read_bytes() == lock_before
    assert {p: p.read_bytes() for p in labelled.rglob("*") if p.is_file()} == before
    assert not (repo / "data" / "rounds" / "r1" / "labelled").exists()
    assert stale_temporaries([repo / "data" / "rounds" / "r1" / "delivery"]) == []
