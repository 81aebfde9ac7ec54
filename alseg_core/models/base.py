"""One interface for every segmentation model: ``trunk`` then ``head``.

``trunk(images)`` returns a tuple of feature maps and is deterministic in eval mode.
``head(features, size)`` applies dropout (p=0.5 by default) and 1x1 classifiers to each
feature map, sums them at the resolution of the first, and upsamples to ``size``.
MC dropout runs the trunk once per batch and the head D times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from alseg_core.types import MODEL_NAMES


class DropoutHead(nn.Module):
    """Dropout + 1x1 classifier per feature map, summed, upsampled to the input size."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)

    def forward(self, features: tuple[torch.Tensor, ...], size: tuple[int, int]) -> torch.Tensor:
        if len(features) != len(self.classifiers):
            raise ValueError(
                f"head expects {len(self.classifiers)} feature maps, got {len(features)}"
            )
        base = features[0].shape[-2:]
        logits = None
        for feat, classifier in zip(features, self.classifiers, strict=True):
            out = classifier(self.dropout(feat))
            if out.shape[-2:] != base:
                out = F.interpolate(out, size=base, mode="bilinear", align_corners=False)
            logits = out if logits is None else logits + out
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """``forward(images) = head(trunk(images), images.shape[-2:])`` -> (N, C, H, W) logits."""

    def __init__(self, name: str, trunk: nn.Module, head: DropoutHead, num_classes: int) -> None:
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.trunk = trunk
        self.head = head
        self.loss_module: nn.Module | None = None
        self.loss_taps: tuple[str, ...] = ()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images), tuple(images.shape[-2:]))

    def forward_with_loss_prediction(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, (N,) predicted loss) — needs a model built with ``learning_loss=True``."""
        from alseg_core.models.learning_loss import TapRecorder

        if self.loss_module is None:
            raise ValueError(f"model {self.name!r} was built without a loss-prediction module")
        recorder = TapRecorder(self.trunk, self.loss_taps) if self.loss_taps else None
        try:
            features = self.trunk(images)
            taps = recorder.take() if recorder else list(features)
        finally:
            for handle in recorder.handles if recorder else ():
                handle.remove()
        logits = self.head(features, tuple(images.shape[-2:]))
        return logits, self.loss_module(taps)

    def eval_trunk_train_head(self) -> SegmentationModel:
        """BatchNorm frozen (eval) everywhere, dropout active in the head: MC-dropout mode."""
        self.eval()
        self.head.dropout.train()
        return self


ModelBuilder = Callable[..., SegmentationModel]
MODEL_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder to the registry; duplicate names are refused."""

    def deco(fn: ModelBuilder) -> ModelBuilder:
        if name in MODEL_REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        if name not in MODEL_NAMES:
            raise ValueError(f"model {name!r} must also be listed in alseg_core.types.MODEL_NAMES")
        MODEL_REGISTRY[name] = fn
        return fn

    return deco


def build_model(
    name: str, *, num_classes: int = 19, dropout: float = 0.5, learning_loss: bool = False
) -> SegmentationModel:
    """Build a registered model with random weights (nothing is downloaded).

    learning_loss : attach a loss-prediction module (Yoo & Kweon 2019) to the trunk.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODEL_REGISTRY)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = MODEL_REGISTRY[name](num_classes=num_classes, dropout=dropout)
    if learning_loss:
        from alseg_core.models.learning_loss import LOSS_TAPS, LossPredictionModule, TapRecorder

        model.loss_taps = LOSS_TAPS.get(name, ())
        recorder = TapRecorder(model.trunk, model.loss_taps) if model.loss_taps else None
        was_training = model.training
        model.eval()
        with torch.no_grad():
            features = model.trunk(torch.zeros(1, 3, 64, 64))
        taps = recorder.take() if recorder else list(features)
        for handle in recorder.handles if recorder else ():
            handle.remove()
        model.train(was_training)
        model.loss_module = LossPredictionModule([t.shape[1] for t in taps])
    return model
