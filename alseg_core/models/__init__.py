"""Segmentation models split into a trunk (features) and a dropout head (classifier).

Build them by name: ``build_model("drn_d_22", num_classes=19, dropout=0.5)``; add your
own with ``@register_model("name")`` (see ``alseg_core.models.registry``). The registry
is torch-free; the model classes import torch on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from alseg_core.models.registry import MODEL_REGISTRY, register_model

_TORCH = {"DropoutHead", "SegmentationModel", "build_model", "class_map"}

__all__ = ["MODEL_REGISTRY", "register_model", *sorted(_TORCH)]


def __getattr__(name: str) -> Any:
    if name in _TORCH:
        return getattr(importlib.import_module("alseg_core.models.base"), name)
    raise AttributeError(f"module 'alseg_core.models' has no attribute {name!r}")
