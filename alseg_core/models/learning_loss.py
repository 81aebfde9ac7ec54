"""Learning loss for active learning (Yoo & Kweon, CVPR 2019).

A small loss-prediction module reads multi-level trunk features (global average pool,
FC 128, ReLU per level; concatenated; FC 1) and predicts the segmentation loss of each
image. It is trained jointly with the model by the margin ranking loss over pairs of
images in a batch (margin 1); its prediction is an image-level acquisition score.
The features are detached, so the module never changes what the trunk learns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Trunk submodules whose outputs feed the module, per model (default: trunk outputs).
LOSS_TAPS: dict[str, tuple[str, ...]] = {
    "drn_d_22": ("layer4", "layer6", "layer8"),
}


class LossPredictionModule(nn.Module):
    def __init__(self, channels: Sequence[int], hidden: int = 128) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in channels)
        self.out = nn.Linear(hidden * len(channels), 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = [
            F.relu(fc(f.detach().mean(dim=(2, 3))))
            for fc, f in zip(self.fcs, features, strict=True)
        ]
        return self.out(torch.cat(pooled, dim=1)).squeeze(1)


def margin_ranking_loss(
    predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Yoo & Kweon's pairwise loss: first half of the batch against the second half."""
    n = predicted.shape[0] // 2
    if n == 0:
        return predicted.sum() * 0.0
    p_i, p_j = predicted[:n], predicted[n : 2 * n]
    t_i, t_j = target[:n].detach(), target[n : 2 * n].detach()
    sign = torch.sign(t_i - t_j)
    return F.relu(-sign * (p_i - p_j) + margin).mean()


class TapRecorder:
    """Collects the outputs of named trunk submodules during a forward pass."""

    def __init__(self, trunk: nn.Module, names: Sequence[str]) -> None:
        self.features: list[torch.Tensor] = []
        modules = dict(trunk.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"trunk has no submodules {missing} to feed the loss module")
        self.handles = [modules[n].register_forward_hook(self._hook) for n in names]

    def _hook(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.features.append(output)

    def take(self) -> list[torch.Tensor]:
        feats, self.features = self.features, []
        return feats
