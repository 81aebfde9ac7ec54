"""Training on full or partial labels (IGNORE_INDEX = not labelled), seeded and resumable.

A checkpoint is written atomically after the first epoch and then at most every
``train.checkpoint_every_s`` seconds (and always at the end); a run that finds a checkpoint of
the same configuration at its output path resumes from the epoch after it, with the
same data order and augmentation it would have had without the interruption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from alseg_core import storage
from alseg_core.datasets.train_set import (  # re-exported: callers import them from here
    SegmentationTrainSet,
    items_from_samples,  # noqa: F401
)
from alseg_core.distributed import Distributed
from alseg_core.inference import resolve_device
from alseg_core.models import SegmentationModel, build_model
from alseg_core.models.pretrained import load_pretrained
from alseg_core.progress import progress_bar
from alseg_core.training_spec import TrainConfig, TrainItem
from alseg_core.types import IGNORE_INDEX

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainResult:
    checkpoint: str
    epochs_run: int
    resumed_from_epoch: int
    final_loss: float
    seconds: float
    val_curve: tuple[float, ...] = ()  # val mIoU after each chunk (al.plateau_chunks)
    self_training_chunks: int = 0  # how many of them (the last) trained on pseudo-labels


def checkpoint_state(
    model: SegmentationModel,
    *,
    dropout: float,
    epoch: int,
    cfg: TrainConfig | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_name": model.name,
        "num_classes": model.num_classes,
        "dropout": dropout,
        "learning_loss": model.loss_module is not None,
        "epoch": epoch,
        "train_config": _config_dict(cfg) if cfg else None,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer else None,
        "extra": extra or {},
    }


def _run_identity(
    items: Sequence[TrainItem],
    model_name: str,
    cfg: TrainConfig,
    init_from: str | None,
    learning_loss: bool,
    data_fingerprint: str,
) -> str:
    """Hash of everything that decides a training run's result (bar the device)."""
    payload = json.dumps(
        [
            [dataclasses.astuple(i) for i in items],
            model_name,
            _config_dict(cfg),
            init_from,
            learning_loss,
            data_fingerprint,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    for key in ("device", "num_workers", "checkpoint_every_s", "decode_cache_mb"):
        d.pop(key)  # how it runs, not what it computes
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def load_model(
    url: str, *, model_name: str | None = None, num_classes: int | None = None
) -> SegmentationModel:
    """Build the model a checkpoint describes and load its weights.

    ``model_name`` / ``num_classes``, when given, must match the checkpoint.
    """
    state = storage.load_checkpoint(url)
    name, classes = state.get("model_name"), state.get("num_classes")
    if model_name is not None and name != model_name:
        raise ValueError(f"{url}: checkpoint is for model {name!r}, expected {model_name!r}")
    if num_classes is not None and classes != num_classes:
        raise ValueError(f"{url}: checkpoint has {classes} classes, expected {num_classes}")
    model = build_model(
        name,
        num_classes=classes,
        dropout=float(state.get("dropout", 0.5)),
        learning_loss=bool(state.get("learning_loss", False)),
    )
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as err:
        raise ValueError(f"{url}: weights do not fit model {name!r} ({err})") from err
    return model


def _loss(
    model: SegmentationModel, x: torch.Tensor, y: torch.Tensor, dist: Distributed | None = None
) -> torch.Tensor:
    """Cross-entropy over labelled pixels (+ the learning-loss ranking term when present).

    Data parallel (``dist``): this rank's share of the global batch's mean, scaled so
    that the gradients DDP averages over ranks are the global batch's mean gradient
    (the labelled-pixel count is summed over ranks first).
    """
    if dist is not None:
        pixel_sum = F.cross_entropy(dist.net(x), y, ignore_index=IGNORE_INDEX, reduction="sum")
        labelled = (y != IGNORE_INDEX).sum().to(torch.float64)
        torch.distributed.all_reduce(labelled)
        if labelled.item() == 0:
            return pixel_sum * float("nan")  # every rank skips this batch alike
        return pixel_sum * (dist.world / labelled.item())
    if model.loss_module is None:
        return F.cross_entropy(model(x), y, ignore_index=IGNORE_INDEX)
    from alseg_core.models.learning_loss import margin_ranking_loss

    logits, predicted = model.forward_with_loss_prediction(x)
    pixel = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="none")
    labelled = (y != IGNORE_INDEX).float()
    per_image = (pixel * labelled).sum((1, 2)) / labelled.sum((1, 2)).clamp_min(1.0)
    segmentation = (pixel * labelled).sum() / labelled.sum()
    return segmentation + margin_ranking_loss(predicted, per_image)


def _log(message: str) -> None:
    print(message, flush=True)


def train(
    items: Sequence[TrainItem],
    *,
    model_name: str,
    checkpoint_url: str,
    cfg: TrainConfig,
    num_classes: int = 19,
    dropout: float = 0.5,
    init_from: str | None = None,
    pretrained: str | None = None,
    learning_loss: bool = False,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = _log,
    max_epochs_this_run: int | None = None,
    data_fingerprint: str = "",
) -> TrainResult:
    """Train ``model_name`` on ``items``; the checkpoint at ``checkpoint_url`` is the result.

    init_from : checkpoint whose weights start training (e.g. the previous round's).
    pretrained : without ``init_from``, weights to start from instead of random ones
                (``model.pretrained``: :mod:`alseg_core.models.pretrained`).
    resume    : a finished checkpoint of the same configuration and data at
                ``checkpoint_url`` is returned as is; otherwise training continues from
                ``<checkpoint_url>.partial`` (see ``train.checkpoint_every_s``; removed once the
                result is written) when it holds the same run. Pipelines that delete a
                stage's output before re-running it (``dvc repro``) still resume.
    data_fingerprint : identifies the training data beyond ``items`` (e.g. a hash of
                the labelled set), so a checkpoint of other data is never reused.
    progress  : tqdm bars per epoch; ``log`` gets one summary line per epoch.
    max_epochs_this_run : stop (resumably) after this many epochs, e.g. to time-slice.
    """
    if not items:
        raise ValueError("train: no labelled images to train on")
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    dist = Distributed.from_environment()
    if dist is not None:
        if cfg.batch_size % dist.world:
            raise ValueError(
                f"train.batch_size={cfg.batch_size} (the global batch) must be a multiple of "
                f"the {dist.world} data-parallel processes"
            )
        device = dist.start(device)
        if dist.rank != 0:
            progress, log = False, None
    model = build_model(
        model_name, num_classes=num_classes, dropout=dropout, learning_loss=learning_loss
    )
    start_id = None  # the starting weights by content (the run's identity names them)
    if init_from:
        init = load_model(init_from, model_name=model_name, num_classes=num_classes)
        # strict=False: a loss-prediction module may be present on one side only.
        model.load_state_dict(init.state_dict(), strict=False)
        start_id = hashlib.sha256(storage.read_bytes(init_from)).hexdigest()
    elif pretrained:
        loaded = load_pretrained(model, pretrained)
        start_id = f"pretrained:{loaded.sha256}"
        if log is not None:
            log(loaded.summary())
    model.to(device)
    # The fused kernel: one pass over all parameters per step instead of a loop of small
    # ops (the loop was ~9 % of a CPU round's time; same update rule).
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
        fused=device.type in ("cpu", "cuda") or None,
    )  # fmt: skip
    # The starting weights enter the identity by content, so the same run gives the same
    # checkpoint whatever folder the previous round's checkpoint sits in.
    identity = _run_identity(items, model_name, cfg, start_id, learning_loss, data_fingerprint)
    partial_url = checkpoint_url + ".partial"
    finished = _same_run(checkpoint_url, identity, cfg) if resume else None
    if finished is not None and int(finished["epoch"]) >= cfg.epochs:
        storage.remove(partial_url)
        return TrainResult(checkpoint_url, 0, int(finished["epoch"]), float("nan"), 0.0)
    state = finished or (_same_run(partial_url, identity, cfg) if resume else None)
    first_epoch = 0
    if state is not None:
        model.load_state_dict(state["model_state"])
        if state.get("optimizer_state"):
            optimizer.load_state_dict(state["optimizer_state"])
        first_epoch = int(state["epoch"])
    dataset = SegmentationTrainSet(items, cfg)
    if dist is not None:
        dist.wrap(model, device)
    loss_value = float("nan")
    last_epoch = cfg.epochs
    if max_epochs_this_run is not None:
        last_epoch = min(cfg.epochs, first_epoch + max_epochs_this_run)
    epochs = progress_bar(last_epoch - first_epoch, "train", unit="epoch", enabled=progress)
    saved_at = None  # when the .partial was last written (first epoch: always)
    for epoch in range(first_epoch, last_epoch):
        loss_value = _run_epoch(model, optimizer, dataset, epoch, cfg, device, progress, dist)
        epochs.update(1)
        epochs.set_postfix(loss=f"{loss_value:.4f}")
        if log is not None:
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {loss_value:.4f}")
        done = epoch + 1 == cfg.epochs
        if not _checkpoint_due(done or epoch + 1 == last_epoch, saved_at, cfg, dist):
            continue
        saved_at = time.monotonic()
        if dist is None or dist.rank == 0:  # one writer; the others wait for it
            storage.save_checkpoint(
                checkpoint_url if done else partial_url,
                checkpoint_state(
                    model, dropout=dropout, epoch=epoch + 1, cfg=cfg, optimizer=optimizer,
                    extra={"run": identity, "processes": dist.world if dist else 1},
                ),
            )  # fmt: skip
            if done:
                storage.remove(partial_url)
        if dist is not None:
            dist.barrier()
    epochs.close()
    if dist is not None:
        dist.stop()
    return TrainResult(
        checkpoint=checkpoint_url,
        epochs_run=last_epoch - first_epoch,
        resumed_from_epoch=first_epoch,
        final_loss=loss_value,
        seconds=time.perf_counter() - start,
    )


def _checkpoint_due(
    last: bool, saved_at: float | None, cfg: TrainConfig, dist: Distributed | None
) -> bool:
    """Write a checkpoint after this epoch? The result and a time slice's last epoch
    always; the first epoch of a run; otherwise once ``train.checkpoint_every_s`` has
    passed since the last write. Data parallel: every epoch (the ranks' clocks differ,
    and they must agree on the write that a barrier follows)."""
    if last or saved_at is None or dist is not None:
        return True
    return time.monotonic() - saved_at >= cfg.checkpoint_every_s


def _same_run(url: str, identity: str, cfg: TrainConfig) -> dict | None:
    """The checkpoint at ``url`` if it holds this very run (else None, never an error)."""
    if not storage.exists(url):
        return None
    try:
        state = storage.load_checkpoint(url)
    except ValueError:
        return None  # unreadable (e.g. cut short): start over rather than fail
    same = (state.get("extra") or {}).get("run") == identity
    return state if same and state.get("train_config") == _config_dict(cfg) else None


def _run_epoch(
    model: SegmentationModel,
    optimizer: torch.optim.Optimizer,
    dataset: SegmentationTrainSet,
    epoch: int,
    cfg: TrainConfig,
    device: torch.device,
    progress: bool,
    dist: Distributed | None = None,
) -> float:
    """One epoch (poly learning rate); returns the mean loss over labelled batches.

    Data parallel (``dist``): the same global batches as one process, each split over
    the ranks; dropout masks are drawn per rank.
    """
    dataset.epoch = epoch
    steps_per_epoch = -(-len(dataset) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    # Dropout draws from the global generator: reseed per epoch so a resumed run
    # draws exactly what the uninterrupted one would have.
    torch.manual_seed(cfg.seed * 100_003 + epoch + 1 + (dist.rank * 7919 if dist else 0))
    order = torch.randperm(
        len(dataset), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    )
    if dist is None:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=order.tolist(),
            num_workers=cfg.num_workers, drop_last=False,
        )  # fmt: skip
    else:
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=dist.batches(order.tolist(), cfg.batch_size),
            num_workers=cfg.num_workers,
        )  # fmt: skip
    model.train()
    running, n = 0.0, 0
    # Batches within the epoch: a bar on a terminal only (the epochs report elsewhere).
    bar = progress_bar(
        len(loader), f"train epoch {epoch + 1}/{cfg.epochs}", unit="batch",
        enabled=progress and sys.stderr.isatty(), leave=False,
    )  # fmt: skip
    for step, (x, y) in enumerate(loader):
        bar.update(1)
        global_step = epoch * steps_per_epoch + step
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * (1 - global_step / total_steps) ** 0.9
        x, y = x.to(device), y.to(device)
        loss = _loss(model, x, y, dist)
        if not torch.isfinite(loss):
            # A batch without any labelled pixel gives NaN: skip it, it carries no signal.
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item() * len(x)
        n += len(x)
        bar.set_postfix(loss=f"{running / max(n, 1):.3f}")
    bar.close()
    return running / max(n, 1)
