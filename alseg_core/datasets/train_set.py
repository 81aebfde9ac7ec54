"""What training reads: labelled items decoded (once, while the cache has room) and
augmented, seeded by (seed, epoch, index)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alseg_core import storage
from alseg_core.datasets import cityscapes
from alseg_core.datasets.labels import label_ids_to_train_ids
from alseg_core.datasets.transforms import (
    hflip_pair,
    random_crop_pair,
    random_scale_pair,
    to_tensor,
)
from alseg_core.training_spec import TrainConfig, TrainItem


def items_from_samples(samples: Sequence[cityscapes.Sample]) -> list[TrainItem]:
    return [TrainItem(s.image_id, s.image_url, s.label_url) for s in samples if s.label_url]


class SegmentationTrainSet(torch.utils.data.Dataset):
    """Reads and augments items; augmentation is seeded by (seed, epoch, index)."""

    def __init__(self, items: Sequence[TrainItem], cfg: TrainConfig) -> None:
        self.items = list(items)
        self.cfg = cfg
        self.epoch = 0
        # Decoded (image, label) pairs, read-only, until decode_cache_mb is full: a round
        # trains many epochs over a few images, and PNG decoding was ~7 % of its time.
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_room = int(cfg.decode_cache_mb * 2**20)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's (image, train-id label), decoded once while the cache has room."""
        if index in self._decoded:
            return self._decoded[index]
        image, label = self._decode(index)
        size = image.nbytes + label.nbytes
        if size <= self._cache_room:
            image.flags.writeable = label.flags.writeable = False  # augmentations copy
            self._decoded[index] = (image, label)
            self._cache_room -= size
        return image, label

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.items[index]
        image = storage.read_rgb(item.image_url)
        raw = storage.read_image(item.label_url)
        if raw.ndim != 2:
            raise ValueError(
                f"{item.label_url}: expected a single-channel label PNG, got shape {raw.shape}"
            )
        if raw.shape != image.shape[:2]:
            raise ValueError(
                f"{item.label_url}: mask size {raw.shape[::-1]} differs from its image "
                f"{item.image_url} size {image.shape[1::-1]}"
            )
        if item.label_format == "label_ids":
            label = label_ids_to_train_ids(raw, source=item.label_url)
        else:
            label = raw.astype(np.uint8)
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load(index)
        rng = np.random.default_rng([self.cfg.seed, self.epoch, index])
        if self.cfg.scale_range is not None:
            image, label = random_scale_pair(image, label, self.cfg.scale_range, rng)
        if self.cfg.hflip and rng.random() < 0.5:
            image, label = hflip_pair(image, label)
        crop = self.cfg.crop or tuple(self._native_size())
        image, label = random_crop_pair(image, label, crop, rng)
        return to_tensor(image), torch.from_numpy(np.array(label, dtype=np.int64))

    def _native_size(self) -> tuple[int, int]:
        if not hasattr(self, "_size"):
            self._size = tuple(self.load(0)[0].shape[:2])  # decoded once, kept if it fits
        return self._size
