"""The model registry: name -> builder, open to user code, torch-free to consult.

Built-in models are listed by import path (``"module:function"``) so that checking a
name (params validation, ``alseg --help``) does not import torch; the builder module is
imported on first use, and its ``@register_model`` decorator puts the function in place
of the path. User code registers builders directly:

    @register_model("my_net")
    def my_net(*, num_classes: int, dropout: float) -> SegmentationModel: ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alseg_core.models.base import SegmentationModel

ModelBuilder = Callable[..., "SegmentationModel"]

MODEL_REGISTRY: dict[str, ModelBuilder | str] = {
    "drn_d_22": "alseg_core.models.drn:drn_d_22",
    "lraspp_mobilenet_v3_large": "alseg_core.models.tv:lraspp",
    "deeplabv3_mobilenet_v3_large": "alseg_core.models.tv:deeplab",
}


def _path_of(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '')}:{getattr(fn, '__name__', '')}"


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder ``(*, num_classes, dropout) -> SegmentationModel``.

    A name already registered is refused (a built-in's own module filling its lazy
    entry is not a duplicate).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def deco(fn: ModelBuilder) -> ModelBuilder:
        held = MODEL_REGISTRY.get(name)
        if held is not None and held != _path_of(fn):
            raise ValueError(f"model {name!r} is already registered")
        MODEL_REGISTRY[name] = fn
        return fn

    return deco


def model_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; ValueError naming the known models otherwise."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODEL_REGISTRY)}")
    entry = MODEL_REGISTRY[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        builder = getattr(importlib.import_module(module), attr)
        MODEL_REGISTRY[name] = builder
        return builder
    return entry
