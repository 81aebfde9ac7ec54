"""Where the per-image steps run: a local process pool or a Dask cluster.

An executor spec (``compute.executor`` in params.yaml, or ``ALSEG_EXECUTOR``, which wins
so that a deployment's job variables can point a run at a cluster):

- ``local`` / ``local:N``: a process pool of ``N`` processes on this machine (default:
  ``workers`` as given by the step, 0 = every core);
- ``dask://host:port`` (or ``tcp://host:port``): a running Dask scheduler;
- ``dask-local:N``: a ``distributed.LocalCluster`` of ``N`` single-threaded workers on
  127.0.0.1, started once per process and reused.

Work goes out in shards of many images (``compute.shard_size``): a task costs tens of
milliseconds in any scheduler, so never one per image. Shards are cut from the sorted
list of every image the step covers, the same whatever the executor or the number of
workers; each shard reads its inputs from the store and writes its outputs there
itself, and the driver merges what the shards return in shard order. So the output
bytes do not depend on where the shards ran, and a shard lost with its worker is
simply run again (Dask reschedules it; a re-run of the step skips the shards done).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ENV = "ALSEG_EXECUTOR"
DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class Executor:
    """A parsed executor spec: kind ``local`` or ``dask``; ``processes`` for local
    (0 = the step's default); ``address`` for a scheduler; ``n_workers`` for dask-local."""

    kind: str
    processes: int = 0
    address: str | None = None
    n_workers: int = 0

    @property
    def spec(self) -> str:
        if self.kind == "local":
            return f"local:{self.processes}" if self.processes else "local"
        return self.address or f"dask-local:{self.n_workers}"


def parse_executor(spec: str, *, source: str = "compute.executor") -> Executor:
    """``local``, ``local:N``, ``dask://host:port``, ``tcp://host:port`` or ``dask-local:N``."""
    text = spec.strip()
    try:
        if text == "local":
            return Executor("local")
        if text.startswith("local:"):
            n = int(text.split(":", 1)[1])
            if n >= 1:
                return Executor("local", processes=n)
        elif text.startswith("dask-local:"):
            n = int(text.split(":", 1)[1])
            if n >= 1:
                return Executor("dask", n_workers=n)
        elif text.startswith(("dask://", "tcp://")):
            host_port = text.split("://", 1)[1]
            host, _, port = host_port.rpartition(":")
            if host and int(port) > 0:
                return Executor("dask", address=f"tcp://{host}:{int(port)}")
    except ValueError:
        pass
    raise ValueError(
        f"{source}: {spec!r} is not an executor; expected local, local:N, dask://host:port "
        "or dask-local:N (N >= 1)"
    )


def resolve_executor(configured: str = "local") -> Executor:
    """The executor to use: ``ALSEG_EXECUTOR`` when set, else the configured one."""
    env = os.environ.get(ENV)
    if env:
        return parse_executor(env, source=ENV)
    return parse_executor(configured)


def shards(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive shards of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"compute.shard_size must be >= 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


_CLUSTERS: dict[int, Any] = {}
_CLIENTS: dict[str, Any] = {}


def dask_client(executor: Executor) -> Any:
    """A ``distributed.Client`` for the executor, created once per process and reused."""
    from distributed import Client, LocalCluster

    key = executor.spec
    if key not in _CLIENTS:
        if executor.address:
            _CLIENTS[key] = Client(executor.address, set_as_default=False)
        else:
            cluster = LocalCluster(
                n_workers=executor.n_workers, threads_per_worker=1, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", processes=True,  # None serves 8787 (dask#8136)
            )  # fmt: skip
            _CLUSTERS[executor.n_workers] = cluster
            _CLIENTS[key] = Client(cluster, set_as_default=False)
    return _CLIENTS[key]


def close_clients() -> None:
    """Close the clients and local clusters this process started."""
    for client in _CLIENTS.values():
        client.close()
    for cluster in _CLUSTERS.values():
        cluster.close()
    _CLIENTS.clear()
    _CLUSTERS.clear()


class torch_threads:  # noqa: N801 - used as a context manager
    """``with torch_threads(n):`` torch's CPU threads set to ``n`` (0: left alone), then
    restored. A scoring shard runs with the driver's count wherever it lands, so float
    sums, and the bytes written, do not depend on the worker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.saved = 0

    def __enter__(self) -> None:
        if self.n > 0:
            import torch

            self.saved = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.n > 0:
            import torch

            torch.set_num_threads(self.saved)


def map_shards(
    fn: Callable[[T], R],
    work: Sequence[T],
    executor: Executor,
    *,
    workers: int = 0,
    progress: str | None = None,
    sizes: Sequence[int] | None = None,
) -> list[R]:
    """``[fn(w) for w in work]``, run where ``executor`` says; results in ``work``'s order.

    ``fn`` must be a module-level function (it is pickled to the workers) that reads and
    writes through :mod:`alseg_core.storage` itself. ``workers`` is the local default
    when the spec names no process count (0 = every core). ``progress``: a progress bar
    (:mod:`alseg_core.progress`) of that name counting the ``sizes`` of the shards done
    (images per shard; 1 each by default).
    """
    work = list(work)
    if not work:
        return []
    from alseg_core.progress import progress_bar

    counts = list(sizes) if sizes is not None else [1] * len(work)
    bar = progress_bar(sum(counts), progress or "", enabled=progress is not None)
    try:
        return _map(fn, work, executor, workers, lambda i: bar.update(counts[i]))
    finally:
        bar.close()


def _map(
    fn: Callable[[T], R],
    work: list[T],
    executor: Executor,
    workers: int,
    done: Callable[[int], None],
) -> list[R]:
    """:func:`map_shards` without the bar: ``done(i)`` as shard ``i`` finishes."""
    if executor.kind == "dask":
        client = dask_client(executor)
        # pure=False: a re-run recomputes (the shard's own skip logic decides what is done);
        # a shard whose worker died is rescheduled on another by the scheduler.
        futures = client.map(fn, work, pure=False, retries=2)
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _f, i=i: done(i))
        return client.gather(futures)
    processes = executor.processes or workers or os.cpu_count() or 1
    if processes <= 1 or len(work) == 1:
        results = []
        for i, w in enumerate(work):
            results.append(fn(w))
            done(i)
        return results
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # fork starts fast; once torch is loaded here, spawn (forking torch's threads can hang)
    ctx = get_context("spawn" if "torch" in sys.modules else "fork")
    with ProcessPoolExecutor(max_workers=min(processes, len(work)), mp_context=ctx) as pool:
        futures = [pool.submit(fn, w) for w in work]
        for i, future in enumerate(futures):
            future.result()
            done(i)
        return [f.result() for f in futures]
