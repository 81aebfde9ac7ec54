"""Step: train a round's model on its labelled set (from the previous round's weights)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
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


def round_schedule(train: TrainConfig, n_images: int, train_steps: int) -> TrainConfig:
    """``train_steps`` optimiser steps as whole epochs over ``n_images`` (at least one)."""
    steps_per_epoch = -(-n_images // train.batch_size)
    return replace(train, epochs=max(1, round(train_steps / steps_per_epoch)))


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
    loss_prediction: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on ``labelled`` for ``train_steps`` steps; the checkpoint goes to ``out``.

    previous_model : the previous round's checkpoint; training starts from its weights
    when ``finetune`` (al.finetune), from scratch otherwise.
    """
    from alseg_core.training import train as run_training

    items = labelled_items(pool, labelled)
    if not items:
        raise ValueError(f"{labelled}: the labelled set is empty")
    return run_training(
        items,
        model_name=model.name,
        checkpoint_url=out,
        cfg=round_schedule(train, len(items), train_steps),
        num_classes=model.num_classes,
        dropout=model.dropout,
        init_from=previous_model if finetune else None,
        learning_loss=loss_prediction,
        progress=progress,
        log=log,
        data_fingerprint=hashlib.sha256(storage.read_bytes(state_url(labelled))).hexdigest(),
    )


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
