"""Beyond one machine: the per-image steps on a Dask cluster give the executor-free bytes.

A ``distributed.LocalCluster`` of 2 single-threaded workers on 127.0.0.1, started once
for the module (after the moto server, so its workers see the S3 settings) and stopped
at the end; a second, throwaway cluster for the test that kills a worker.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from alseg_core import storage
from alseg_core.content import content_key
from alseg_core.datasets import cityscapes
from alseg_core.executors import Executor, parse_executor, resolve_executor, shards
from alseg_core.pipeline.pool import Pool
from alseg_core.pipeline.steps.score import score_step
from alseg_core.superpixels import SuperpixelParams, SuperpixelStore, compute_regions

pytestmark = pytest.mark.scale_out
PARAMS = SuperpixelParams(n_regions=30, compactness=0.01)


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as c:
        yield c.scheduler_address  # tcp://127.0.0.1:<port>


def _store_files(url: str) -> dict[str, bytes]:
    return {u.rsplit("/", 1)[-1]: storage.read_bytes(u)
            for u in storage.glob(storage.join(url, "part-*.parquet"))}  # fmt: skip


def _pairs(root: str, n: int | None = None) -> list[tuple[str, str]]:
    samples = cityscapes.list_samples(root, "train")[:n]
    return [(s.image_id, s.image_url) for s in samples]


def test_executor_specs_parse_and_bad_ones_are_named(monkeypatch):
    assert parse_executor("local") == Executor("local")
    assert parse_executor("local:3").processes == 3
    assert parse_executor("dask://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert parse_executor("dask-local:2").n_workers == 2
    for bad in ("dask", "local:0", "dask://host", "spark://x:1", "dask-local:x"):
        with pytest.raises(ValueError, match=f"compute.executor: '{bad}' is not an executor"):
            parse_executor(bad)
    monkeypatch.setenv("ALSEG_EXECUTOR", "dask-local:4")
    assert resolve_executor("local") == Executor("dask", n_workers=4)  # the environment wins
    monkeypatch.setenv("ALSEG_EXECUTOR", "nope")
    with pytest.raises(ValueError, match="ALSEG_EXECUTOR: 'nope'"):
        resolve_executor("local")
    assert [len(s) for s in shards(list(range(10)), 4)] == [4, 4, 2]


def test_superpixels_through_the_cluster_are_byte_identical(synthetic_root, tmp_path, cluster):
    pairs = _pairs(str(synthetic_root))
    local = SuperpixelStore(str(tmp_path / "local"), PARAMS)
    assert local.update(pairs, workers=2, shard_size=5) == 24
    dask = SuperpixelStore(str(tmp_path / "dask"), PARAMS)
    assert dask.update(pairs, executor=f"dask://{cluster[len('tcp://') :]}", shard_size=5) == 24
    files = _store_files(local.url)
    assert len(files) == 5 and files == _store_files(dask.url)  # 24 images in shards of 5
    # ... and a serial local run writes the same bytes too.
    serial = SuperpixelStore(str(tmp_path / "serial"), PARAMS)
    serial.update(pairs, workers=1, shard_size=5)
    assert _store_files(serial.url) == files


def test_superpixels_and_scores_on_s3_through_the_cluster(synthetic_root, s3_bucket, cluster,
                                                          tmp_path):  # fmt: skip
    # The images themselves in the bucket too: the workers read and write S3 directly.
    pairs = []
    for image_id, url in _pairs(str(synthetic_root), 10):
        target = f"{s3_bucket}/images/{image_id}.png"
        storage.write_bytes(target, storage.read_bytes(url))
        pairs.append((image_id, target))
    stores = {}
    for name, executor in (("local", "local"), ("dask", cluster)):
        store = SuperpixelStore(f"{s3_bucket}/sp-{name}", PARAMS)
        assert store.update(pairs, executor=executor, shard_size=4, workers=1) == 10
        stores[name] = store
    assert _store_files(stores["local"].url) == _store_files(stores["dask"].url)
    assert content_key(pairs[0][1]).startswith("etag:")  # S3: no download to key

    checkpoint = _checkpoint(tmp_path)
    pool = Pool.list(str(synthetic_root), "train", "val")
    s3_checkpoint = f"{s3_bucket}/model.pt"
    storage.write_bytes(s3_checkpoint, Path(checkpoint).read_bytes())
    out = {}
    for name, executor in (("local", "local"), ("dask", cluster)):
        url = f"{s3_bucket}/scores-{name}.parquet"
        n = _score(s3_checkpoint, pool, stores["local"], url, executor, pairs=pairs)
        assert n == 10
        out[name] = storage.read_bytes(url)
    assert out["local"] == out["dask"]


def _checkpoint(tmp_path: Path) -> str:
    from alseg_core.models import build_model
    from alseg_core.training import checkpoint_state

    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", num_classes=19)
    path = str(tmp_path / "model.pt")
    storage.save_checkpoint(path, checkpoint_state(model, dropout=0.5, epoch=1))
    return path


def _score(checkpoint, pool, store, out, executor, *, pairs=None, shard_size=4) -> int:
    if pairs is not None:  # score just these images (their URLs may be in the bucket)
        from dataclasses import replace

        urls = dict(pairs)
        samples = {i: replace(pool.samples[i], image_url=urls[i]) for i in urls}
        pool = replace(pool, samples=samples)
    return score_step(
        checkpoint, pool, store, None, out, strategy="mc_variance", mc_passes=3,
        heat_stride=4, seed=0, batch_size=2, device="cpu", executor=executor,
        shard_size=shard_size,
    )  # fmt: skip


def test_scores_through_the_cluster_are_byte_identical(synthetic_root, tmp_path, cluster):
    pool = Pool.list(str(synthetic_root), "train", "val")
    store = SuperpixelStore(str(tmp_path / "sp"), PARAMS)
    store.update(_pairs(str(synthetic_root)), workers=1)
    checkpoint = _checkpoint(tmp_path)
    runs = {}
    for name, executor, size in (("whole", "local", 64), ("local", "local", 6),
                                 ("dask", cluster, 6), ("dask-odd", cluster, 5)):  # fmt: skip
        url = str(tmp_path / f"{name}.parquet")
        assert _score(checkpoint, pool, store, url, executor, shard_size=size) == 24
        runs[name] = Path(url).read_bytes()
    # One shard or four, here or on the cluster (a shard size of 5 rounds up to whole
    # batches of 2): the same file.
    assert runs["whole"] == runs["local"] == runs["dask"] == runs["dask-odd"]


def test_a_worker_killed_mid_step_costs_its_shard_and_a_rerun_gives_the_same_bytes(
    synthetic_root, tmp_path
):
    from distributed import Client, LocalCluster

    from alseg_core import faults

    pairs = _pairs(str(synthetic_root))
    reference = SuperpixelStore(str(tmp_path / "reference"), PARAMS)
    reference.update(pairs, workers=1, shard_size=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as c, Client(c) as client:  # fmt: skip
        victim = sorted(client.scheduler_info()["workers"])[0]
        # The victim SIGKILLs itself inside its second part write (after one shard).
        client.run(faults.arm, 2, workers=[victim])
        store = SuperpixelStore(str(tmp_path / "store"), PARAMS)
        errors: list[BaseException] = []

        def first_run() -> None:
            try:
                store.update(pairs, executor=c.scheduler_address, shard_size=3)
            except Exception as err:  # noqa: BLE001 - the step may fail with its worker
                errors.append(err)

        thread = threading.Thread(target=first_run)
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert victim not in client.scheduler_info()["workers"]  # it really died
        # The killed write left no partial part: every part file is a whole table (the
        # write died under a hidden temporary name, which the store never reads).
        parts = list(Path(store.url).glob("part-*.parquet"))
        for part in parts:
            storage.read_parquet(str(part))
        # Dask ran the lost shard again on the surviving worker, so the step finished;
        # had it failed, the re-run below would compute the shards not written.
        assert errors == [] and len(parts) == 8  # 24 images in shards of 3
        rerun = SuperpixelStore(str(tmp_path / "store"), PARAMS)
        assert rerun.update(pairs, executor=c.scheduler_address, shard_size=3) == 0
        from alseg_core.executors import close_clients

        close_clients()
    assert _store_files(str(tmp_path / "store")) == _store_files(reference.url)


def test_an_image_regenerated_in_place_gets_new_superpixels_and_only_it(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    pairs = _pairs(str(root), 6)
    store = SuperpixelStore(str(tmp_path / "sp"), PARAMS)
    assert store.update(pairs, workers=1, shard_size=4) == 6
    before = {i: store.read(i) for i, _ in pairs}
    keys = store.contents()
    # Regenerate one image in place (another picture under the same name and path).
    changed_id, changed_url = pairs[4]
    image = storage.read_rgb(changed_url)
    storage.write_png(changed_url, np.ascontiguousarray(image[:, ::-1]))
    assert SuperpixelStore(str(tmp_path / "sp"), PARAMS).update(pairs, workers=1) == 1
    after = SuperpixelStore(str(tmp_path / "sp"), PARAMS)
    np.testing.assert_array_equal(
        after.read(changed_id), compute_regions(storage.read_rgb(changed_url), PARAMS)
    )
    assert not np.array_equal(after.read(changed_id), before[changed_id])
    for image_id, _ in pairs:
        if image_id != changed_id:
            np.testing.assert_array_equal(after.read(image_id), before[image_id])
            assert after.contents()[image_id] == keys[image_id]
    assert after.contents()[changed_id] != keys[changed_id]
    assert sorted(after.index()) == sorted(i for i, _ in pairs)  # one row per image
    assert after.update(pairs, workers=1) == 0  # and nothing more to do


def test_a_step_killed_mid_way_resumes_with_the_shards_not_written(synthetic_root, tmp_path):
    """The local executor: ``alseg superpixels`` killed in its 4th part write; the re-run
    computes only the shards missing and the store matches an uninterrupted run's."""
    import os
    import subprocess
    import sys

    params = tmp_path / "params.yaml"
    params.write_text(
        f"data: {{root: {synthetic_root}}}\n"
        f"superpixels: {{n_regions: 30, compactness: 0.01, store: {tmp_path / 'sp'}, workers: 1}}\n"
        "compute: {executor: local, shard_size: 3}\n"
    )
    cmd = [str(Path(sys.executable).with_name("alseg")), "--params", str(params),
           "--no-progress", "superpixels"]  # fmt: skip
    env = {**os.environ, "ALSEG_TEST_KILL_AT_WRITE": "superpixels:4"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert killed.returncode == -9
    assert len(list((tmp_path / "sp").glob("part-*.parquet"))) == 3  # 3 shards written
    env.pop("ALSEG_TEST_KILL_AT_WRITE")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "15 images computed (new or changed), 9 already stored" in again.stdout
    reference = SuperpixelStore(str(tmp_path / "reference"), PARAMS)
    reference.update(_pairs(str(synthetic_root)), workers=1, shard_size=3)
    assert _store_files(str(tmp_path / "sp")) == _store_files(reference.url)


def _train_cmd(tmp_path: Path, root: Path, out: str, *extra: str) -> list[str]:
    import sys

    params = tmp_path / "train-params.yaml"
    params.write_text(
        f"data: {{root: {root}}}\n"
        "model: {name: lraspp_mobilenet_v3_large, dropout: 0.0}\n"
        "train: {epochs: 3, batch_size: 4, lr: 0.001, seed: 0, scale_range: null,"
        " hflip: false, device: cpu}\n"
    )
    return [str(Path(sys.executable).with_name("alseg")), "--params", str(params),
            "--no-progress", "train", "--limit", "8", "--out", str(tmp_path / out),
            *extra]  # fmt: skip


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = storage.load_checkpoint(str(path))["model_state"]
    return {k: v.float() for k, v in state.items() if v.is_floating_point() and "running_" not in k}


def _update(weights: dict, init: dict) -> torch.Tensor:
    return torch.cat([(weights[k] - init[k]).flatten() for k in sorted(init)])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_ddp_two_gloo_processes_train_like_one_and_resume_after_a_kill(synthetic_root, tmp_path):
    import os
    import subprocess

    def run(out: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = _train_cmd(tmp_path, synthetic_root, out, *extra)
        return subprocess.run(cmd, capture_output=True, text=True, env=env or dict(os.environ))

    for out, extra in (("one.pt", ()), ("ddp.pt", ("--nproc", "2")),
                       ("half.pt", ("--batch-size", "2"))):  # fmt: skip
        done = run(out, *extra)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "2 data-parallel processes" in run("ddp.pt", "--nproc", "2").stdout
    assert storage.load_checkpoint(str(tmp_path / "ddp.pt"))["extra"]["processes"] == 2
    from alseg_core.models import build_model

    torch.manual_seed(0)
    init = {k: v.float() for k, v in
            build_model("lraspp_mobilenet_v3_large", num_classes=19, dropout=0.0)
            .state_dict().items() if v.is_floating_point() and "running_" not in k}  # fmt: skip
    one, ddp, half = (_weights(tmp_path / n) for n in ("one.pt", "ddp.pt", "half.pt"))
    # The same global batches, BatchNorm over the global batch and the global mean
    # gradient: DDP moves the weights as one process does. Not bit for bit: splitting a
    # batch changes float sums (gradients agree to ~0.2 %), and AdamW's first steps move
    # every weight by about lr x sign(gradient), so near-zero gradients flip sign. The
    # update directions agree (cosine 0.98 measured); one process on half batches
    # (twice the steps, what unsynchronised ranks would do) does not (0.27).
    moved = {n: _update(w, init) for n, w in (("one", one), ("ddp", ddp), ("half", half))}
    assert _cosine(moved["ddp"], moved["one"]) > 0.95
    assert _cosine(moved["half"], moved["one"]) < 0.6

    # Killed in rank 0's second checkpoint write (epoch 2), then run again: resumes
    # after epoch 1 and ends with the uninterrupted run's weights.
    killed = run("again.pt", "--nproc", "2",
                 env={**os.environ, "ALSEG_TEST_KILL_AT_WRITE": "train:2"})  # fmt: skip
    assert killed.returncode != 0 and not (tmp_path / "again.pt").exists()
    assert storage.load_checkpoint(str(tmp_path / "again.pt.partial"))["epoch"] == 1
    resumed = run("again.pt", "--nproc", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed after epoch 1" in resumed.stdout
    again = _weights(tmp_path / "again.pt")
    assert all(torch.equal(again[k], ddp[k]) for k in ddp)  # bit for bit
