"""Step: train a round's model on its labelled set (from the previous round's weights)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from alseg_core import storage
from alseg_core.datasets.cityscapes import Sample
from alseg_core.labels import load_state, mask_url, state_url
from alseg_core.pipeline.pool import Pool
from alseg_core.training_spec import TrainConfig, TrainItem

if TYPE_CHECKING:
    from alseg_core.config import ModelConfig
    from alseg_core.training import TrainResult


def labelled_items(pool: Pool, labelled: str) -> list[TrainItem]:
    """Training items of a labelled set: each labelled image with its partial mask."""
    state = load_state(labelled)
    return [
        TrainItem(
            image_id, pool.sample(image_id).image_url, mask_url(labelled, image_id), "train_ids"
        )
        for image_id in sorted(state.images)
    ]


def round_schedule(
    train: TrainConfig, n_images: int, train_steps: int, min_epochs: int = 0
) -> TrainConfig:
    """``train_steps`` optimiser steps as whole epochs over ``n_images`` (at least one),
    and at least ``min_epochs`` epochs (al.train_epochs).

    With steps alone, a labelled set spread over many images (superpixels: a few regions
    in each of 270 images) is passed over far fewer times than one of a few whole images
    (100 images: 2.7x the passes over each labelled pixel for the same steps); a floor in
    epochs over the labelled images gives every labelled pixel as many passes, whatever
    the unit.
    """
    steps_per_epoch = -(-n_images // train.batch_size)
    return replace(train, epochs=max(1, min_epochs, round(train_steps / steps_per_epoch)))


@dataclass(frozen=True)
class Plateau:
    """Train each round until val mIoU stops improving (al.plateau_chunks, al.plateau_tol).

    After the round's first chunk (``train_steps`` steps, at least ``train_epochs``
    epochs), up to ``chunks`` more chunks as long run, each from the previous chunk's
    weights (poly learning rate restarted); the round stops at the first chunk that
    gains less than ``tol`` mIoU on the validation split and keeps the best checkpoint.
    The same rule for every strategy, so a curve is not
    limited by the optimiser steps its strategy happened to be given.
    """

    chunks: int = 0
    tol: float = 0.005


def train_step(
    pool: Pool,
    labelled: str,
    out: str,
    *,
    previous_model: str | None,
    finetune: bool,
    model: ModelConfig,
    train: TrainConfig,
    train_steps: int,
    min_epochs: int = 0,
    loss_prediction: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    plateau: Plateau | None = None,
    eval_batch_size: int = 8,
) -> TrainResult:
    """Train on ``labelled`` for ``train_steps`` steps (at least ``min_epochs`` epochs over
    its images, al.train_epochs); the checkpoint goes to ``out``.

    previous_model : the previous round's checkpoint; training starts from its weights
    when ``finetune`` (al.finetune), from scratch otherwise.
    plateau : go on in chunks until val mIoU stops improving (:class:`Plateau`).

    With a plateau rule the result's ``val_curve`` holds the val mIoU after each chunk.
    """
    from alseg_core.training import TrainResult
    from alseg_core.training import train as run_training

    items = labelled_items(pool, labelled)
    if not items:
        raise ValueError(f"{labelled}: the labelled set is empty")
    schedule = round_schedule(train, len(items), train_steps, min_epochs)
    fingerprint = hashlib.sha256(storage.read_bytes(state_url(labelled))).hexdigest()

    def fit(url: str, init: str | None) -> TrainResult:
        return run_training(
            items, model_name=model.name, checkpoint_url=url, cfg=schedule,
            num_classes=model.num_classes, dropout=model.dropout, init_from=init,
            learning_loss=loss_prediction, progress=progress, log=log,
            data_fingerprint=fingerprint,
        )  # fmt: skip

    init = previous_model if finetune else None
    if plateau is None or plateau.chunks < 1:
        return fit(out, init)
    from alseg_core.distributed import Distributed

    if Distributed.from_environment() is not None:
        raise ValueError("al.plateau_chunks is not supported data parallel (--nproc): set it 0")
    if not pool.val:
        raise ValueError("al.plateau_chunks needs a validation split (data.val_split)")
    from alseg_core.pipeline.steps.evaluate import evaluate_step

    def val_miou(url: str) -> float:
        return evaluate_step(
            url, pool.val, model_name=model.name, num_classes=model.num_classes,
            batch_size=eval_batch_size, device=train.device,
        )["mIoU"]  # fmt: skip

    # Chunks live in a local scratch folder; only the best reaches ``out`` (atomically).
    with tempfile.TemporaryDirectory(prefix="alseg-plateau-") as scratch:
        url = f"{scratch}/chunk-0.pt"
        first = fit(url, init)
        curve = [val_miou(url)]
        best, best_url, loss = curve[0], url, first.final_loss
        epochs, seconds = first.epochs_run, first.seconds
        for n in range(1, plateau.chunks + 1):
            nxt = f"{scratch}/chunk-{n}.pt"
            result = fit(nxt, url)
            epochs, seconds, url = epochs + result.epochs_run, seconds + result.seconds, nxt
            curve.append(val_miou(nxt))
            gain = curve[-1] - best
            if curve[-1] > best:
                best, best_url, loss = curve[-1], nxt, result.final_loss
            if gain < plateau.tol:
                break
        storage.write_bytes(out, storage.read_bytes(best_url))
    return TrainResult(out, epochs, first.resumed_from_epoch, loss, seconds, tuple(curve))


def train_on_split(
    samples: list[Sample],
    out: str,
    *,
    model: ModelConfig,
    train: TrainConfig,
    init_from: str | None = None,
    resume: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Full supervision: train on every labelled image of ``samples`` (``train.epochs``)."""
    from alseg_core.training import items_from_samples
    from alseg_core.training import train as run_training

    return run_training(
        items_from_samples(samples),
        model_name=model.name,
        checkpoint_url=out,
        cfg=train,
        num_classes=model.num_classes,
        dropout=model.dropout,
        init_from=init_from,
        resume=resume,
        progress=progress,
    )
