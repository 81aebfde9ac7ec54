"""Flaky storage: S3 behind a proxy that fails requests, or goes down mid-round.

The steps run as ``alseg`` processes whose S3 endpoint is the proxy (tests/flaky_proxy.py)
in front of the session's moto server. Transient faults (503 SlowDown, dropped
connections) are retried with backoff and the results equal a run without faults; with
the endpoint down, a step fails cleanly (its own message, exit status 4, no output and
no object written) and succeeds when re-run after the endpoint is back.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from flaky_proxy import FlakyProxy

from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic

pytestmark = pytest.mark.slow

PARAMS = """\
data: {{root: {bucket}/cs}}
superpixels: {{n_regions: 20, compactness: 0.02, store: {bucket}/{store}, workers: 1}}
al: {{initial_images: 3}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alseg(ws: Path, endpoint: str, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
    return subprocess.run(
        [sys.executable, "-m", "alseg_core.cli", "--params", str(ws / "params.yaml"), *argv],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _seed_round(ws: Path, endpoint: str, n: int = 5) -> list[subprocess.CompletedProcess]:
    """The seed round's first ``n`` steps; stops at the first failure."""
    steps = [
        ["--no-progress", "superpixels"],
        ["select", "--round", "0", "--out", "r0/selection.json"],
        ["request", "--selection", "r0/selection.json", "--out", "r0/request"],
        ["annotate", "--request", "r0/request", "--out", "r0/delivery"],
        ["merge", "--request", "r0/request", "--delivery", "r0/delivery", "--out", "r0/labelled"],
    ]
    done = []
    for argv in steps[:n]:
        done.append(_alseg(ws, endpoint, *argv))
        if done[-1].returncode != 0:
            break
    return done


def _files(ws: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(ws)): p.read_bytes()
        for p in sorted((ws / "r0").rglob("*"))
        if p.is_file()
    }


def _keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture
def dataset(s3_bucket: str) -> str:
    make_synthetic(f"{s3_bucket}/cs", SyntheticSpec(n_train=6, n_val=1, height=48, width=96))
    return s3_bucket


def _workspace(tmp_path: Path, name: str, bucket: str, store: str) -> Path:
    ws = tmp_path / name
    ws.mkdir()
    (ws / "params.yaml").write_text(PARAMS.format(bucket=bucket, store=store))
    return ws


def test_transient_faults_are_retried_and_change_nothing(dataset, s3_endpoint, tmp_path):
    clean = _workspace(tmp_path, "clean", dataset, "sp-clean")
    assert all(r.returncode == 0 for r in _seed_round(clean, s3_endpoint))

    proxy = FlakyProxy(s3_endpoint, _port())
    proxy.fail_every = 3  # one request in three fails: a 503 or a dropped connection
    proxy.start()
    try:
        flaky = _workspace(tmp_path, "flaky", dataset, "sp-flaky")
        results = _seed_round(flaky, proxy.url)
    finally:
        proxy.stop()
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert len(results) == 5 and proxy.faults >= 10, (proxy.requests, proxy.faults)
    assert _files(flaky) == _files(clean)
    bucket = dataset.removeprefix("s3://")
    parts = lambda s: [k.rsplit("/", 1)[1] for k in _keys(s3_endpoint, bucket, s)]  # noqa: E731
    assert parts("sp-flaky/") == parts("sp-clean/")


def test_storage_down_mid_round_fails_cleanly_and_resumes(dataset, s3_endpoint, tmp_path):
    proxy = FlakyProxy(s3_endpoint, _port())
    proxy.start()
    ws = _workspace(tmp_path, "ws", dataset, "sp")
    bucket = dataset.removeprefix("s3://")
    try:
        first = _seed_round(ws, proxy.url, n=2)  # superpixels and select
        assert all(r.returncode == 0 for r in first)
        before = _keys(s3_endpoint, bucket, "")
        proxy.stop()  # the endpoint goes away mid-round
        down = _alseg(ws, proxy.url, "request", "--selection", "r0/selection.json",
                      "--out", "r0/request")  # fmt: skip
        assert down.returncode == 4, down.stderr[-3000:]
        assert "storage unreachable" in down.stderr and f"{dataset}/" in down.stderr
        assert "Nothing was changed" in down.stderr
        assert not (ws / "r0" / "request").exists()
        assert [p.name for p in (ws / "r0").iterdir()] == ["selection.json"]
        assert _keys(s3_endpoint, bucket, "") == before  # no object written meanwhile
        proxy.start()  # back up: the same steps complete
        rest = _seed_round(ws, proxy.url)
    finally:
        proxy.stop()
    assert all(r.returncode == 0 for r in rest), rest[-1].stderr[-3000:]
    clean = _workspace(tmp_path, "clean", dataset, "sp")
    assert all(r.returncode == 0 for r in _seed_round(clean, s3_endpoint))
    assert _files(ws) == _files(clean)
