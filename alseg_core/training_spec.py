"""What training reads and how it trains (torch-free, so config and steps import it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainItem:
    """One training image and its label PNG (Cityscapes label ids, or train ids)."""

    image_id: str
    image_url: str
    label_url: str
    label_format: str = "label_ids"  # or "train_ids" (partial labels written by alseg)


@dataclass(frozen=True)
class TrainConfig:
    """The training schedule (params.yaml ``train``)."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    crop: tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = (0.75, 1.25)
    hflip: bool = True
    num_workers: int = 0
    device: str = "auto"
    # The resumable checkpoint (<out>.partial) is written after the first epoch, after
    # the last one of a time slice, and otherwise once at least this many seconds have
    # passed since the last write (0: after every epoch). A crash loses at most this much
    # training; small epochs (a round's few labelled images) no longer spend a quarter of
    # their time writing model and optimiser state.
    checkpoint_every_s: float = 30.0
    # Images and masks decoded once and kept, up to this many MiB (0: decode every time).
    decode_cache_mb: float = 1024.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if not self.checkpoint_every_s >= 0:
            raise ValueError(
                f"train.checkpoint_every_s must be >= 0 seconds, got {self.checkpoint_every_s}"
            )
        if not self.decode_cache_mb >= 0:
            raise ValueError(f"train.decode_cache_mb must be >= 0, got {self.decode_cache_mb}")
