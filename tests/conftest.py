"""Shared fixtures: a real S3 API (moto server on 127.0.0.1) and tiny datasets."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (`make test`): one compute thread each, for the worker and the
    # processes it starts (alseg under DVC, DDP ranks); two workers' OpenMP pools on the
    # same cores slowed the training tests ~1.8x. Set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-do-not-log",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server bound to loopback for the whole session; stopped at the end."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*DUMMY_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(DUMMY_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh empty bucket; returns its ``s3://`` URL."""
    import boto3

    name = (
        "t-"
        + request.node.name.lower().replace("_", "-")[:40].strip("-")
        + "-"
        + os.urandom(3).hex()
    )
    name = "".join(c for c in name if c.isalnum() or c == "-")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


# ----------------------------------------------------------------------------- pipeline repos

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def copy_pipeline(repo: Path) -> None:
    """Make ``repo`` hold what a clone of the project holds for the pipeline: dvc.yaml,
    the ignore files and the library sources its stages depend on."""
    import shutil

    repo.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    shutil.copytree(
        PROJECT_ROOT / "alseg_core", repo / "alseg_core",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip


# ----------------------------------------------------------------------------- datasets

#: A hand-made 4x10 label-id map holding every id of the Cityscapes table (0..33).
ALL_LABEL_IDS = np.array(list(range(34)) + [7] * 6, dtype=np.uint8).reshape(4, 10)
#: Train ids the official table gives to ids 0..33, written out independently of the code.
OFFICIAL_TRAIN_IDS = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10,
                      11, 12, 13, 14, 15, 255, 255, 16, 17, 18]  # fmt: skip


def write_tiny_cityscapes(root: str, *, split: str = "train", n: int = 2) -> list[str]:
    """n images of 4x10 whose label map holds every label id; returns the image ids."""
    from alseg_core import storage
    from alseg_core.datasets import cityscapes

    ids = []
    for i in range(n):
        city = "testcity"
        image_id = f"{city}_{i:06d}_000019"
        rng = np.random.default_rng(i)
        image = rng.integers(0, 255, (4, 10, 3), dtype=np.uint8)
        storage.write_png(cityscapes.image_url(root, split, city, image_id), image)
        storage.write_png(cityscapes.label_url(root, split, city, image_id), ALL_LABEL_IDS)
        inst = ALL_LABEL_IDS.astype(np.int32)
        inst[0, 4] = 24 * 1000 + 1
        storage.write_png(cityscapes.instance_url(root, split, city, image_id), inst)
        ids.append(image_id)
    return ids


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (24 train, 8 val, 64x128) shared by the session."""
    from alseg_core.datasets.synthetic import SyntheticSpec, make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(str(root), SyntheticSpec(n_train=24, n_val=8, height=64, width=128, seed=3))
    return root
