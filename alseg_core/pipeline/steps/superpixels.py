"""Step: superpixels of every pool image into the Parquet store, and the pool manifest."""

from __future__ import annotations

from dataclasses import replace

from alseg_core.pipeline.pool import Pool
from alseg_core.superpixels import SuperpixelStore


def superpixels_step(
    samples: list,
    store: SuperpixelStore,
    *,
    workers: int = 0,
    progress: bool = False,
    executor: str = "local",
    shard_size: int = 64,
) -> tuple[int, int]:
    """Compute the region maps the store lacks (or holds for changed images); returns
    (computed now, images).

    samples : the images (``cityscapes.Sample``) whose superpixels are needed.
    executor, shard_size : where the shards run (``compute``; ``ALSEG_EXECUTOR`` wins).
    """
    added = store.update(
        [(s.image_id, s.image_url) for s in samples], workers=workers, progress=progress,
        executor=executor, shard_size=shard_size,
    )  # fmt: skip
    return added, len(samples)


def write_pool_manifest(pool: Pool, store: SuperpixelStore, url: str) -> None:
    """The pool listing plus the store it was segmented into (later steps read this)."""
    settings = {"store": store.url, **store.params.__dict__}
    replace(pool, superpixels=settings).write(url)
