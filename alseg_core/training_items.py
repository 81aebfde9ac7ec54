"""What training reads: an image and its label PNG (torch-free, so steps import it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainItem:
    """One training image and its label PNG (Cityscapes label ids, or train ids)."""

    image_id: str
    image_url: str
    label_url: str
    label_format: str = "label_ids"  # or "train_ids" (partial labels written by alseg)
