"""Uncertainty scorers (higher = more informative) and streaming MC-dropout.

Pure functions on probabilities; shapes follow ``alseg_core.types``:
``probs`` (N, C, H, W), pixel scores (N, H, W). MC dropout runs the trunk once per
batch and the dropout head D times, keeping running sums Σp, Σp² and Σ H(p) only, so
memory does not grow with D.

- softmax entropy  H(p) of one deterministic pass
- MC entropy       H(mean_d p_d), the entropy of the mean softmax
- MC variance      mean over classes of Var_d[p_d(c)] (the reference's best strategy)
- BALD             H(mean_d p_d) - mean_d H(p_d), the mutual information
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from alseg_core.types import MC_STRATEGIES, PIXEL_STRATEGIES

EPS = 1e-12
__all__ = ["MC_STRATEGIES", "PIXEL_STRATEGIES", "MCAccumulator", "mc_dropout_scores"]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) probabilities -> (N, H, W) entropy in nats."""
    return -(probs * torch.log(probs.clamp_min(EPS))).sum(dim=1)


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) logits of a deterministic pass -> (N, H, W) entropy."""
    return entropy(torch.softmax(logits, dim=1))


def mc_entropy(mean_probs: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) mean softmax over D passes -> (N, H, W) entropy of the mean."""
    return entropy(mean_probs)


def mc_variance(mean_probs: torch.Tensor, mean_sq_probs: torch.Tensor) -> torch.Tensor:
    """Mean over classes of the per-class variance E[p²] - E[p]² -> (N, H, W)."""
    return (mean_sq_probs - mean_probs**2).clamp_min(0.0).mean(dim=1)


def bald(mean_probs: torch.Tensor, mean_entropy: torch.Tensor) -> torch.Tensor:
    """Mutual information H(E[p]) - E[H(p)] -> (N, H, W), clamped at 0 for rounding."""
    return (entropy(mean_probs) - mean_entropy).clamp_min(0.0)


@dataclass
class MCAccumulator:
    """Running Σp, Σp², ΣH(p) over stochastic passes; memory independent of D."""

    sum_p: torch.Tensor | None = None
    sum_p2: torch.Tensor | None = None
    sum_h: torch.Tensor | None = None
    passes: int = 0
    _: dict = field(default_factory=dict, repr=False)

    def update(self, probs: torch.Tensor) -> None:
        h = entropy(probs)
        if self.sum_p is None:
            self.sum_p, self.sum_p2, self.sum_h = probs.clone(), probs * probs, h
        else:
            self.sum_p += probs
            self.sum_p2 += probs * probs
            self.sum_h += h
        self.passes += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """{'mc_entropy', 'mc_variance', 'bald'} -> (N, H, W) each, and 'mean_probs'."""
        if self.passes == 0 or self.sum_p is None:
            raise ValueError("MCAccumulator: no passes accumulated")
        mean_p = self.sum_p / self.passes
        mean_p2 = self.sum_p2 / self.passes
        mean_h = self.sum_h / self.passes
        return {
            "mc_entropy": mc_entropy(mean_p),
            "mc_variance": mc_variance(mean_p, mean_p2),
            "bald": bald(mean_p, mean_h),
            "mean_probs": mean_p,
        }


@torch.no_grad()
def mc_dropout_scores(
    model: torch.nn.Module, images: torch.Tensor, *, passes: int, generator_seed: int | None = None
) -> dict[str, torch.Tensor]:
    """All pixel scores for a batch: one deterministic pass + ``passes`` dropout passes.

    model  : a SegmentationModel (``trunk`` + ``head``); BatchNorm stays in eval mode.
    images : (N, 3, H, W). Returns softmax_entropy, mc_entropy, mc_variance, bald
    (N, H, W each, float32) and 'prediction' (N, H, W) from the deterministic pass.
    """
    if passes < 1:
        raise ValueError(f"MC dropout needs passes >= 1, got {passes}")
    size = tuple(images.shape[-2:])
    model.eval()
    features = model.trunk(images)  # once
    logits = model.head(features, size)
    out = {"softmax_entropy": softmax_entropy(logits), "prediction": logits.argmax(1)}
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    model.head.dropout.train()
    acc = MCAccumulator()
    try:
        for _ in range(passes):
            acc.update(torch.softmax(model.head(features, size), dim=1))
    finally:
        model.head.dropout.eval()
    scores = acc.scores()
    scores.pop("mean_probs")
    out.update(scores)
    return out
