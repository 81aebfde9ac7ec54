"""Deterministic prediction over full images (dropout off)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from alseg_core.datasets import cityscapes
from alseg_core.datasets.transforms import to_tensor
from alseg_core.models import SegmentationModel, class_map
from alseg_core.types import IGNORE_INDEX

T = TypeVar("T")


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``device`` ('auto', 'cpu', 'cuda', 'cuda:1', 'mps', ...).

    Asking for an accelerator this machine lacks is an error that says so (before any
    work starts), not a traceback from deep inside torch.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a torch device name ({err})") from err
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {device!r} was asked, but this machine has no usable CUDA GPU; "
                "use device 'cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} was asked, but this machine has {count} GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked, but MPS is not available here")
    return dev


def background(iterable: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead: images are
    decoded while the model runs on the previous batch. Errors surface in the caller."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                if stop.is_set():
                    return
                items.put((True, item))
        except BaseException as err:  # handed to the consumer
            items.put((False, err))
        finally:
            items.put((True, done))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def image_batches(
    samples: Sequence[cityscapes.Sample], batch_size: int
) -> Iterator[tuple[list[cityscapes.Sample], list[np.ndarray]]]:
    """Consecutive batches of same-size images (a size change starts a new batch)."""
    batch: list[cityscapes.Sample] = []
    images: list[np.ndarray] = []
    for sample in samples:
        image = cityscapes.read_image(sample)
        if images and (len(batch) == batch_size or image.shape != images[0].shape):
            yield batch, images
            batch, images = [], []
        batch.append(sample)
        images.append(image)
    if batch:
        yield batch, images


@torch.no_grad()
def predict(
    model: SegmentationModel,
    samples: Sequence[cityscapes.Sample],
    *,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = False,
    min_confidence: float = 0.0,
) -> Iterator[tuple[cityscapes.Sample, np.ndarray]]:
    """Yield (sample, (H, W) uint8 train-id prediction) at each image's full size.

    min_confidence : pixels whose largest softmax probability is below it are
                     IGNORE_INDEX (pseudo-labels keep only what the model is sure of).
    """
    from alseg_core.progress import progress_bar

    dev = resolve_device(device)
    model.to(dev).eval()
    bar = progress_bar(len(samples), "predict", enabled=progress)
    for batch, images in background(image_batches(samples, batch_size)):
        x = torch.stack([to_tensor(img) for img in images]).to(dev)
        logits = model(x)
        pred = class_map(logits).to(torch.uint8)
        if min_confidence > 0:
            pred[torch.softmax(logits, 1).amax(1) < min_confidence] = IGNORE_INDEX
        yield from zip(batch, pred.cpu().numpy(), strict=True)
        bar.update(len(batch))
    bar.close()
