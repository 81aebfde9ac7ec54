"""Segmentation models split into a trunk (features) and a dropout head (classifier).

Build them by name: ``build_model("drn_d_22", num_classes=19, dropout=0.5)``; add your
own with ``@register_model("name")`` (see ``alseg_core.models.registry``).
"""

from alseg_core.models.base import DropoutHead, SegmentationModel, build_model
from alseg_core.models.registry import MODEL_REGISTRY, register_model

__all__ = [
    "MODEL_REGISTRY",
    "DropoutHead",
    "SegmentationModel",
    "build_model",
    "register_model",
]
