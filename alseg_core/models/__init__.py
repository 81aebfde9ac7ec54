"""Segmentation models split into a trunk (features) and a dropout head (classifier).

Build them by name: ``build_model("drn_d_22", num_classes=19, dropout=0.5)``.
"""

from alseg_core.models import drn as _drn  # noqa: F401  (registers drn_d_22)
from alseg_core.models import tv as _tv  # noqa: F401  (registers torchvision models)
from alseg_core.models.base import (
    MODEL_REGISTRY,
    DropoutHead,
    SegmentationModel,
    build_model,
    register_model,
)

__all__ = [
    "MODEL_REGISTRY",
    "DropoutHead",
    "SegmentationModel",
    "build_model",
    "register_model",
]
