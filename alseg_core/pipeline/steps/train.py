"""Step: train a round's model on its labelled set (from the previous round's weights)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from alseg_core import storage
from alseg_core.datasets.cityscapes import Sample
from alseg_core.labels import load_state, mask_url, state_url
from alseg_core.pipeline.pool import Pool
from alseg_core.training_spec import TrainConfig, TrainItem

if TYPE_CHECKING:
    from alseg_core.config import ALConfig, ModelConfig
    from alseg_core.training import TrainResult

    _Fit = Callable[[str, str | None], TrainResult]  # train to url from init's weights


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
    """Train each round until val mIoU stops improving (al.plateau_chunks, al.plateau_tol,
    al.plateau_patience).

    After the round's first chunk (``train_steps`` steps, at least ``train_epochs``
    epochs), up to ``chunks`` more chunks as long run, each from the previous chunk's
    weights (poly learning rate restarted); the round stops once ``patience`` chunks in a
    row each gain less than ``tol`` mIoU on the validation split over the best before
    them (early stopping's patience: one flat chunk of a noisy val curve is not yet a
    plateau) and keeps the best checkpoint. The same rule for every strategy, so a curve
    is not limited by the optimiser steps its strategy happened to be given.
    """

    chunks: int = 0
    tol: float = 0.005
    patience: int = 1

    @classmethod
    def of(cls, al: ALConfig) -> Plateau:
        """The rule params.yaml's ``al`` section sets."""
        return cls(al.plateau_chunks, al.plateau_tol, al.plateau_patience)

    def reached(self, curve: Sequence[float]) -> bool:
        """Whether ``curve`` (val mIoU before the chunks, then after each) ends in
        ``patience`` chunks that each gained less than ``tol`` over the best before it."""
        start = len(curve) - self.patience
        return start >= 1 and all(
            curve[i] - max(curve[:i]) < self.tol for i in range(start, len(curve))
        )


@dataclass(frozen=True)
class SelfTraining:
    """Self-training on the pixels nobody paid for (al.pseudo_threshold, al.pseudo_chunks).

    Once the round's model is trained (and the plateau rule has run), the best checkpoint
    labels every unlabelled pixel of the pool where its softmax confidence is at least
    ``threshold``: the pseudo-labels of pseudo-labelling (Lee, ICML-W 2013), which
    semi-supervised active learning for segmentation adds to each round (Rangnekar et al.,
    WACV 2023, "Semantic Segmentation with Active Semi-Supervised Learning"). Training
    goes on from that checkpoint on the paid labels plus the pseudo-labels (the round's
    schedule over the pool's images), in up to ``chunks`` chunks, stopping as the plateau
    rule does; the round keeps the best checkpoint by val mIoU, the one before
    pseudo-labels included. Paid labels always win over pseudo-labels; pseudo-labels live
    in a scratch folder, so the labelled set and what a round is charged never change.
    ``threshold`` 0: off.
    """

    threshold: float = 0.0
    chunks: int = 2


def pseudo_label_items(
    pool: Pool, labelled: str, checkpoint: str, folder: str, threshold: float, *,
    model_name: str, batch_size: int = 8, device: str = "auto",
) -> list[TrainItem]:  # fmt: skip
    """Training items for every pool image: its paid labels (``labelled``), and where
    none, ``checkpoint``'s prediction if its softmax confidence is >= ``threshold``
    (IGNORE_INDEX elsewhere). Masks go to ``folder``; images left with no label skipped."""
    import numpy as np

    from alseg_core.inference import predict
    from alseg_core.labels import read_mask
    from alseg_core.training import load_model
    from alseg_core.types import IGNORE_INDEX

    if not 0 < threshold <= 1:
        raise ValueError(f"al.pseudo_threshold must be in (0, 1], got {threshold}")
    paid = load_state(labelled).images
    net = load_model(checkpoint, model_name=model_name)
    samples = [pool.samples[i] for i in pool.ids]
    items = []
    for sample, mask in predict(
        net, samples, batch_size=batch_size, device=device, min_confidence=threshold
    ):
        if sample.image_id in paid:
            own = read_mask(labelled, sample.image_id)
            mask = np.where(own != IGNORE_INDEX, own, mask).astype(np.uint8)
        if (mask == IGNORE_INDEX).all():
            continue
        url = storage.join(folder, f"{sample.image_id}.png")
        storage.write_png(url, mask)
        items.append(TrainItem(sample.image_id, sample.image_url, url, "train_ids"))
    return items


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
    self_training: SelfTraining | None = None,
) -> TrainResult:
    """Train on ``labelled`` for ``train_steps`` steps (at least ``min_epochs`` epochs over
    its images, al.train_epochs); the checkpoint goes to ``out``.

    previous_model : the previous round's checkpoint; training starts from its weights
    when ``finetune`` (al.finetune), from scratch otherwise.
    plateau : go on in chunks until val mIoU stops improving (:class:`Plateau`).
    self_training : then go on with pseudo-labels on the unlabelled pixels
    (:class:`SelfTraining`).

    With a plateau rule the result's ``val_curve`` holds the val mIoU after each chunk.
    """
    from alseg_core.training import TrainResult
    from alseg_core.training import train as run_training

    items = labelled_items(pool, labelled)
    if not items:
        raise ValueError(f"{labelled}: the labelled set is empty")
    schedule = round_schedule(train, len(items), train_steps, min_epochs)
    fingerprint = hashlib.sha256(storage.read_bytes(state_url(labelled))).hexdigest()

    def fitter(on: list[TrainItem], cfg: TrainConfig, data: str) -> _Fit:
        def fit(url: str, init: str | None) -> TrainResult:
            return run_training(
                on, model_name=model.name, checkpoint_url=url, cfg=cfg,
                num_classes=model.num_classes, dropout=model.dropout, init_from=init,
                pretrained=model.pretrained,
                learning_loss=loss_prediction, progress=progress, log=log,
                data_fingerprint=data,
            )  # fmt: skip

        return fit

    fit = fitter(items, schedule, fingerprint)

    init = previous_model if finetune else None
    chunks = 0 if plateau is None else plateau.chunks
    self_training_on = self_training is not None and self_training.threshold > 0
    if chunks < 1 and not self_training_on:
        return fit(out, init)
    from alseg_core.distributed import Distributed

    if Distributed.from_environment() is not None:
        raise ValueError(
            "al.plateau_chunks and al.pseudo_threshold are not supported data parallel "
            "(--nproc): set them 0"
        )
    if not pool.val:
        raise ValueError("al.plateau_chunks and al.pseudo_threshold need a validation split "
                         "(data.val_split)")  # fmt: skip
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
        run = _Chunks(url, val_miou(url), first)
        rule = plateau or Plateau()
        run.go_on(fit, chunks, rule, val_miou, f"{scratch}/chunk")
        plain = len(run.curve)
        if self_training_on:
            pseudo = pseudo_label_items(
                pool, labelled, run.best_url, f"{scratch}/pseudo", self_training.threshold,
                model_name=model.name, batch_size=eval_batch_size, device=train.device,
            )  # fmt: skip
            fit_pseudo = fitter(
                pseudo, round_schedule(train, len(pseudo), train_steps, min_epochs),
                f"{fingerprint}+pseudo{self_training.threshold}",
            )  # fmt: skip
            # From the best checkpoint so far: pseudo-labels of a worse model would teach
            # its mistakes.
            run.url = run.best_url
            run.go_on(fit_pseudo, self_training.chunks, rule, val_miou, f"{scratch}/pseudo-chunk")
        storage.write_bytes(out, storage.read_bytes(run.best_url))
    return TrainResult(
        out, run.epochs, first.resumed_from_epoch, run.loss, run.seconds, tuple(run.curve),
        self_training_chunks=len(run.curve) - plain,
    )  # fmt: skip


class _Chunks:
    """A round's chunks so far: the val curve and the best checkpoint."""

    def __init__(self, url: str, miou: float, first: TrainResult) -> None:
        self.url, self.curve = url, [miou]
        self.best, self.best_url, self.loss = miou, url, first.final_loss
        self.epochs, self.seconds = first.epochs_run, first.seconds

    def go_on(
        self, fit: _Fit, chunks: int, rule: Plateau,
        val_miou: Callable[[str], float], prefix: str,
    ) -> None:  # fmt: skip
        """Up to ``chunks`` chunks, each from the previous one's weights, until ``rule``
        says the plateau is reached (each chunk judged against the best before it)."""
        judged = [self.best]
        for n in range(1, chunks + 1):
            nxt = f"{prefix}-{n}.pt"
            result = fit(nxt, self.url)
            self.epochs += result.epochs_run
            self.seconds += result.seconds
            self.url = nxt
            self.curve.append(val_miou(nxt))
            judged.append(self.curve[-1])
            if self.curve[-1] > self.best:
                self.best, self.best_url, self.loss = self.curve[-1], nxt, result.final_loss
            if rule.reached(judged):
                break


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
        pretrained=model.pretrained,
        resume=resume,
        progress=progress,
    )
