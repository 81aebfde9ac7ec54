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

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
