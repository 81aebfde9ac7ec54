"""alseg: active learning for semantic segmentation.

The pieces compose from any training loop (torch is imported only when used):

- scorers ``PixelStats -> (N, H, W)``: ``softmax_entropy``, ``mc_entropy``,
  ``mc_variance``, ``bald``; ``PixelStats.from_samples`` / ``mc_statistics`` build
  their input;
- aggregation ``region_means`` and selection ``select_under_budget`` over
  ``Candidate`` units (``candidates_for_image``);
- ``LabelState``, the labelled set as a value;
- registries: ``register_strategy`` / ``get_strategy`` / ``Strategy`` and
  ``register_model`` / ``build_model``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Reproducible CPU sums. MKL, torch's CPU BLAS, may split a small product over its threads
# differently from one call to the next: on Intel Xeon CPUs the input gradient of a 1x1
# convolution over a 1x1 map at batch 1 (a squeeze-excite block of MobileNetV3 on a batch
# of one) took 3 different values in 300 identical calls, so one training run gave other
# weights than the same run repeated. MKL's strict conditional numerical reproducibility
# makes every sum depend on its inputs and the thread count alone. MKL reads this when it
# is first called, so it holds for a process that imports alseg_core before running torch
# code; a value the user set wins. Cost measured on training steps: within noise.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

_EXPORTS = {
    "PixelStats": "alseg_core.active.scorers",
    "bald": "alseg_core.active.scorers",
    "entropy": "alseg_core.active.scorers",
    "mc_entropy": "alseg_core.active.scorers",
    "mc_statistics": "alseg_core.active.scorers",
    "mc_variance": "alseg_core.active.scorers",
    "softmax_entropy": "alseg_core.active.scorers",
    "region_means": "alseg_core.active.regions",
    "Candidate": "alseg_core.active.selection",
    "Chosen": "alseg_core.active.selection",
    "candidates_for_image": "alseg_core.active.selection",
    "select_under_budget": "alseg_core.active.selection",
    "STRATEGY_REGISTRY": "alseg_core.active.strategies",
    "Strategy": "alseg_core.active.strategies",
    "get_strategy": "alseg_core.active.strategies",
    "register_strategy": "alseg_core.active.strategies",
    "estimate_costs": "alseg_core.active.costs",
    "LabelState": "alseg_core.labels",
    "ImageLabels": "alseg_core.labels",
    "MODEL_REGISTRY": "alseg_core.models.registry",
    "register_model": "alseg_core.models.registry",
    "build_model": "alseg_core.models.base",
    "SegmentationModel": "alseg_core.models.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alseg_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
