"""Uncertainty scorers (higher = more informative) and streaming MC dropout.

A scorer is a pure function ``PixelStats -> (N, H, W)`` pixel scores; shapes follow
``alseg_core.types``. MC dropout runs the trunk once per batch and the dropout head D
times, keeping running sums Σp, Σp² and ΣH(p) only, so memory does not grow with D.
Dropout masks come from a ``torch.Generator`` passed in, never from global state.

Resolution. Dropout acts on the feature map (1/8 of the image for DRN-D-22): the
default ``resolution="feature"`` accumulates the statistics there and the caller
upsamples the per-pixel *scores* once (``upsample_scores``). ``"full"`` upsamples every
head pass to the image size before its softmax, as a naive implementation would; a
pixel between feature-grid points then mixes independent dropout draws, which shows as
a grid of lower variance every output-stride pixels (and costs D full-size softmaxes).
Head passes run several at a time, chunked so their working memory stays under
``pass_memory_mb``.

- softmax entropy  H(p) of one deterministic pass
- MC entropy       H(mean_d p_d), the entropy of the mean softmax
- MC variance      mean over classes of Var_d[p_d(c)] (the reference's best strategy)
- BALD             H(mean_d p_d) - mean_d H(p_d), the mutual information
- RIPU             region impurity x prediction uncertainty (Xie et al., CVPR 2022)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from alseg_core.models.base import class_map

EPS = 1e-12
__all__ = [
    "MCAccumulator",
    "PixelStats",
    "bald",
    "class_balanced_mc_variance",
    "entropy",
    "feature_embedding",
    "mc_dropout_scores",
    "mc_entropy",
    "mc_statistics",
    "mc_variance",
    "rarity_weighted_mc_variance",
    "region_impurity",
    "ripu",
    "softmax_entropy",
    "upsample_scores",
]

RESOLUTIONS = ("feature", "full")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) probabilities -> (N, H, W) entropy in nats."""
    return -(probs * torch.log(probs.clamp_min(EPS))).sum(dim=1)


@dataclass(frozen=True)
class PixelStats:
    """What a scorer sees for a batch: the deterministic pass and the MC moments.

    logits        : (N, C, H, W) of the deterministic pass (None if not run)
    mean_probs    : (N, C, H, W) mean softmax over the D dropout passes
    mean_sq_probs : (N, C, H, W) mean squared softmax
    mean_entropy  : (N, H, W) mean entropy of the passes
    passes        : D
    """

    logits: torch.Tensor | None
    mean_probs: torch.Tensor
    mean_sq_probs: torch.Tensor
    mean_entropy: torch.Tensor
    passes: int
    class_weights: torch.Tensor | None = None  # (C,) rarity weights of the labelled set
    embedding: torch.Tensor | None = None  # (N, k, h, w) projected trunk features

    @classmethod
    def from_samples(cls, probs: Any, *, logits: Any = None) -> PixelStats:
        """Statistics of D softmax samples ``probs`` (D, N, C, H, W), numpy or torch."""
        p = torch.as_tensor(probs)
        if p.ndim != 5:
            raise ValueError(f"probs must be (D, N, C, H, W), got shape {tuple(p.shape)}")
        acc = MCAccumulator()
        for sample in p:
            acc.update(sample)
        return acc.stats(None if logits is None else torch.as_tensor(logits))


def softmax_entropy(stats: PixelStats) -> torch.Tensor:
    """Entropy of the deterministic pass's softmax (of the MC mean without one)."""
    if stats.logits is None:
        return entropy(stats.mean_probs)
    return entropy(torch.softmax(stats.logits, dim=1))


def mc_entropy(stats: PixelStats) -> torch.Tensor:
    """Entropy of the mean softmax over the D passes."""
    return entropy(stats.mean_probs)


def mc_variance(stats: PixelStats) -> torch.Tensor:
    """Mean over classes of the per-class variance E[p²] - E[p]²."""
    return (stats.mean_sq_probs - stats.mean_probs**2).clamp_min(0.0).mean(dim=1)


def class_balanced_mc_variance(stats: PixelStats) -> torch.Tensor:
    """MC variance x the weight of each pixel's predicted class (``class_weights``).

    Rare classes in the labelled set weigh more, so the budget goes to the classes the
    model has seen least (small classes stay at 0 IoU otherwise). Without weights this
    is MC variance.
    """
    score = mc_variance(stats)
    if stats.class_weights is None:
        return score
    source = stats.logits if stats.logits is not None else stats.mean_probs
    weights = stats.class_weights.to(score.device, score.dtype)
    return score * weights[class_map(source)]


def rarity_weighted_mc_variance(stats: PixelStats) -> torch.Tensor:
    """Mean over classes of Var[p(c)] x the rarity weight of class c (``class_weights``).

    Unlike ``class_balanced_mc_variance`` (the weight of the *predicted* class), each
    class's own variance is weighted: a person the model still calls building, but whose
    person probability varies from pass to pass, scores by the person's rarity. Classes
    the model never predicts are the ones that stay at 0 IoU. Without weights this is
    MC variance.
    """
    var = (stats.mean_sq_probs - stats.mean_probs**2).clamp_min(0.0)
    if stats.class_weights is None:
        return var.mean(dim=1)
    weights = stats.class_weights.to(var.device, var.dtype)
    return (var * weights[None, :, None, None]).mean(dim=1)


#: Side of the square window, in score-map cells, over which ``region_impurity`` counts
#: the predicted classes: 3x3 cells, 24x24 image pixels at output stride 8.
IMPURITY_WINDOW = 3


def region_impurity(stats: PixelStats, window: int = IMPURITY_WINDOW) -> torch.Tensor:
    """(N, H, W) entropy of the predicted classes in each pixel's ``window`` x ``window``
    neighbourhood (cells outside the map not counted): 0 inside one class, high where
    several classes meet, as at the edges and the insides of small objects."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"region_impurity: window must be an odd number >= 1, got {window}")
    source = stats.logits if stats.logits is not None else stats.mean_probs
    predicted = F.one_hot(class_map(source), source.shape[1]).permute(0, 3, 1, 2)
    share = F.avg_pool2d(
        predicted.to(stats.mean_probs.dtype), window, stride=1, padding=window // 2,
        count_include_pad=False,
    )  # fmt: skip
    return entropy(share)


def ripu(stats: PixelStats) -> torch.Tensor:
    """Region impurity x prediction uncertainty (RIPU; Xie et al., CVPR 2022).

    The uncertainty is the entropy of the deterministic pass's softmax, as in the paper
    (of the MC mean without one). A pure region scores 0 however uncertain: the budget
    goes where classes meet, which is where small objects are.
    """
    return region_impurity(stats) * softmax_entropy(stats)


def bald(stats: PixelStats) -> torch.Tensor:
    """Mutual information H(E[p]) - E[H(p)], clamped at 0 for rounding."""
    return (entropy(stats.mean_probs) - stats.mean_entropy).clamp_min(0.0)


class MCAccumulator:
    """Running Σp, Σp², ΣH(p) over stochastic passes; memory independent of D."""

    def __init__(self) -> None:
        self.sum_p: torch.Tensor | None = None
        self.sum_p2: torch.Tensor | None = None
        self.sum_h: torch.Tensor | None = None
        self.passes = 0

    def update(self, probs: torch.Tensor) -> None:
        """Add one pass: (N, C, H, W) probabilities."""
        self.update_many(probs.unsqueeze(0))

    def update_many(self, probs: torch.Tensor) -> None:
        """Add k passes at once: (k, N, C, H, W) probabilities."""
        p = probs.float() if probs.dtype in (torch.float16, torch.bfloat16) else probs
        s_p, s_p2 = p.sum(0), (p * p).sum(0)
        s_h = -(p * torch.log(p.clamp_min(EPS))).sum(2).sum(0)
        if self.sum_p is None:
            self.sum_p, self.sum_p2, self.sum_h = s_p, s_p2, s_h
        else:
            self.sum_p += s_p
            self.sum_p2 += s_p2
            self.sum_h += s_h
        self.passes += p.shape[0]

    def stats(self, logits: torch.Tensor | None = None) -> PixelStats:
        if self.passes == 0 or self.sum_p is None:
            raise ValueError("MCAccumulator: no passes accumulated")
        return PixelStats(
            logits,
            self.sum_p / self.passes,
            self.sum_p2 / self.passes,
            self.sum_h / self.passes,
            self.passes,
        )

    def scores(self) -> dict[str, torch.Tensor]:
        """{'mc_entropy', 'mc_variance', 'bald'} -> (N, H, W) each."""
        stats = self.stats()
        return {
            "mc_entropy": mc_entropy(stats),
            "mc_variance": mc_variance(stats),
            "bald": bald(stats),
        }


def passes_per_chunk(
    features: tuple[torch.Tensor, ...], out_shape: tuple[int, ...], passes: int, cap_mb: float
) -> int:
    """How many head passes to run at once: as few chunks as fit ``cap_mb`` (per pass, the
    dropped copies and masks of the features plus the logits and their softmax), of even
    sizes (10 passes that fit 9 at a time run as 5 + 5, not 9 + 1)."""
    per_pass = sum(2 * f.numel() * f.element_size() for f in features)
    per_pass += 3 * int(torch.Size(out_shape).numel()) * 4
    fit = max(1, min(passes, int(cap_mb * 2**20 // max(1, per_pass))))
    chunks = -(-passes // fit)
    return -(-passes // chunks)


@torch.inference_mode()
def mc_statistics(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    passes: int,
    generator: torch.Generator,
    resolution: str = "feature",
    pass_memory_mb: float = 128.0,
    embed_dim: int = 0,
    workspace: dict[str, Any] | None = None,
) -> PixelStats:
    """One deterministic pass and ``passes`` dropout passes of the head over one trunk pass.

    model      : a SegmentationModel (``trunk`` + ``head``); BatchNorm stays in eval mode.
    images     : (N, 3, H, W) on the model's device; ``generator`` on that device too.
    resolution : "feature" (default): the statistics (and ``logits``) are at the head's
                 own resolution, (N, C, h, w); "full": at the image size (N, C, H, W).
    embed_dim  : > 0: ``embedding`` holds the last feature map projected to that many
                 channels (a fixed random projection, :func:`feature_embedding`), for
                 diversity-aware selection.
    workspace  : a dict the caller keeps across calls (e.g. over the batches of a pool):
                 the head's mask buffers live there and are reused instead of allocated
                 per call (fresh buffers of tens of MB cost page faults on every call,
                 measured ~12 ms of ~25 ms for LR-ASPP's 10 passes at 512x1024 on CPU).
                 None: buffers for this call only.
    """
    if passes < 1:
        raise ValueError(f"MC dropout needs passes >= 1, got {passes}")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    size = tuple(images.shape[-2:]) if resolution == "full" else None
    model.eval()
    features = model.trunk(images)  # once
    logits = model.head(features, size)
    n = images.shape[0]
    chunk = passes_per_chunk(features, tuple(logits.shape), passes, pass_memory_mb)
    acc = MCAccumulator()
    if workspace is None:
        workspace = {}  # the head's mask buffers, reused by each chunk of this call
    workspace["fixed_features"] = features  # unchanged over the chunks (see the head)
    try:
        done = 0
        while done < passes:
            k = min(chunk, passes - done)
            out = model.head(features, size, generator=generator, passes=k, workspace=workspace)
            acc.update_many(torch.softmax(out.float(), dim=1).view(k, n, *out.shape[1:]))
            done += k
    finally:
        for key in ("fixed_features", "cat_of"):  # this call's features: freed with it
            workspace.pop(key, None)
    stats = acc.stats(logits.float())
    if embed_dim > 0:
        stats = replace(stats, embedding=feature_embedding(features[-1], embed_dim))
    return stats


def feature_embedding(feature: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, C, h, w) features -> (N, dim, h, w) through a fixed Gaussian random projection
    (seed 0, scaled by 1/sqrt(dim): distances kept up to a small distortion, Johnson &
    Lindenstrauss), so embeddings of every round and shard are comparable."""
    channels = feature.shape[1]
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(dim, channels, generator=g) / dim**0.5
    flat = feature.float().reshape(feature.shape[0], channels, -1)
    out = torch.matmul(proj.to(feature.device), flat)
    return out.view(feature.shape[0], dim, *feature.shape[-2:])


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) pixel scores -> (N, H, W), bilinear (identity when already that size)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    up = F.interpolate(scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return up.squeeze(1)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def mc_dropout_scores(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    passes: int,
    generator: torch.Generator,
    resolution: str = "feature",
    workspace: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """The built-in pixel scores of a batch and the deterministic 'prediction', each
    (N, H, W) at the image size (computed at ``resolution``, see :func:`mc_statistics`;
    ``workspace`` as there)."""
    stats = mc_statistics(
        model, images, passes=passes, generator=generator, resolution=resolution,
        workspace=workspace,
    )  # fmt: skip
    assert stats.logits is not None
    size = tuple(images.shape[-2:])
    out = {
        name: upsample_scores(fn(stats), size)
        for name, fn in (("softmax_entropy", softmax_entropy), ("mc_entropy", mc_entropy),
                         ("mc_variance", mc_variance), ("bald", bald))
    }  # fmt: skip
    out["prediction"] = class_map(upsample_logits(stats.logits, size))
    return out
