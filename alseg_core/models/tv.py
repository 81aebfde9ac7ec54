"""torchvision segmentation models (``weights=None``) behind the trunk/head interface."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    lraspp_mobilenet_v3_large,
)

from alseg_core.models.base import DropoutHead, SegmentationModel
from alseg_core.models.registry import register_model


class LRASPPTrunk(nn.Module):
    """MobileNetV3-Large + LR-ASPP attention branch -> (low, attended high) features.

    The LR-ASPP classifiers move to the dropout head; everything before them is here.
    """

    def __init__(self) -> None:
        super().__init__()
        ref = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=1)
        self.backbone = ref.backbone
        self.cbr = ref.classifier.cbr
        self.scale = ref.classifier.scale
        self.low_channels = ref.classifier.low_classifier.in_channels
        self.high_channels = ref.classifier.high_classifier.in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(x)
        low, high = feats["low"], feats["high"]
        attended = self.cbr(high) * self.scale(high)
        attended = F.interpolate(
            attended, size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return low, attended


class DeepLabTrunk(nn.Module):
    """MobileNetV3-Large (dilated) + ASPP + 3x3 conv block -> (256-channel features,)."""

    out_channels = 256

    def __init__(self) -> None:
        super().__init__()
        ref = deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=1, aux_loss=False
        )
        self.backbone = ref.backbone
        # DeepLabHead = ASPP, conv3x3, BN, ReLU, conv1x1: keep all but the classifier.
        self.neck = nn.Sequential(*list(ref.classifier.children())[:-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.neck(self.backbone(x)["out"]),)


def _standard_bn_momentum(module: nn.Module) -> nn.Module:
    # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for ImageNet-length
    # schedules; trained from scratch for a few hundred steps, the running statistics
    # lag far behind the weights and eval-mode accuracy collapses. 0.1 tracks them.
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return module


@register_model("lraspp_mobilenet_v3_large")
def lraspp(*, num_classes: int, dropout: float) -> SegmentationModel:
    trunk = _standard_bn_momentum(LRASPPTrunk())
    head = DropoutHead([trunk.low_channels, trunk.high_channels], num_classes, dropout=dropout)
    return SegmentationModel("lraspp_mobilenet_v3_large", trunk, head, num_classes)


@register_model("deeplabv3_mobilenet_v3_large")
def deeplab(*, num_classes: int, dropout: float) -> SegmentationModel:
    trunk = _standard_bn_momentum(DeepLabTrunk())
    head = DropoutHead([DeepLabTrunk.out_channels], num_classes, dropout=dropout)
    return SegmentationModel("deeplabv3_mobilenet_v3_large", trunk, head, num_classes)
