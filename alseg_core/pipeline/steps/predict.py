"""Step: Cityscapes-format predictions (one label-id PNG per image, named after it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alseg_core import storage
from alseg_core.datasets.cityscapes import Sample


@dataclass(frozen=True)
class PredictShard:
    """One shard of images to predict; its worker writes the PNGs itself."""

    checkpoint: str
    samples: tuple[Sample, ...]
    out_dir: str
    model_name: str | None
    num_classes: int | None
    batch_size: int
    device: str
    threads: int = 0
    checkpoint_key: str = ""  # the checkpoint's content key, hashed once by the driver


def predict_shard(shard: PredictShard) -> int:
    """Predict one shard and write its PNGs (run on any worker); returns the count."""
    from alseg_core.datasets.labels import train_ids_to_label_ids
    from alseg_core.evaluation import prediction_url
    from alseg_core.executors import torch_threads
    from alseg_core.inference import predict
    from alseg_core.pipeline.steps.score import load_model_cached

    model = load_model_cached(
        shard.checkpoint, shard.model_name, shard.num_classes, shard.checkpoint_key
    )
    n = 0
    with torch_threads(shard.threads):
        for sample, pred in predict(
            model, list(shard.samples), batch_size=shard.batch_size, device=shard.device
        ):
            storage.write_png(
                prediction_url(shard.out_dir, sample.image_id), train_ids_to_label_ids(pred)
            )
            n += 1
    return n


def predict_step(
    checkpoint: str,
    samples: Sequence[Sample],
    out_dir: str,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
    executor: str = "local",
    shard_size: int = 64,
    threads: int = 0,
) -> int:
    """Write ``<out_dir>/<image_id>.png`` label ids for every sample; returns the count.

    executor, shard_size, threads : where the shards run and with how many torch CPU
    threads (``compute``; ``ALSEG_EXECUTOR`` wins; 0 threads = this process's).
    """
    import torch

    from alseg_core.content import content_key
    from alseg_core.executors import map_shards, resolve_executor, shards

    threads = threads or torch.get_num_threads()
    key = content_key(checkpoint)
    jobs = [
        PredictShard(checkpoint, tuple(part), out_dir, model_name, num_classes, batch_size,
                     device, threads, key)
        for part in shards(list(samples), shard_size)
    ]  # fmt: skip
    counts = map_shards(
        predict_shard, jobs, resolve_executor(executor), workers=1,
        progress="predict" if progress else None, sizes=[len(j.samples) for j in jobs],
    )  # fmt: skip
    return sum(counts)
