"""DRN-D-22: dilated residual network, output stride 8 (Yu, Koltun, Funkhouser, CVPR 2017).

Follows the reference implementation (fyu/drn): DRN-D replaces the max-pooling stem
with convolutions, uses dilation 2 and 4 in levels 5 and 6 instead of striding, and
ends with two degridding levels (7, 8) of plain dilated convolutions without residuals.
Channels (16, 32, 64, 128, 256, 512, 512, 512), blocks (1, 1, 2, 2, 2, 2, 1, 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from alseg_core.models.base import DropoutHead, SegmentationModel
from alseg_core.models.registry import register_model


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


def _conv_layers(cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            _conv3x3(cin if i == 0 else cout, cout, stride if i == 0 else 1, dilation),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _res_layer(
    cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1, new_level: bool = True
) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )
    first_dil = (dilation // 2 if new_level else dilation, dilation) if dilation > 1 else (1, 1)
    blocks = [BasicBlock(cin, cout, stride, downsample, first_dil)]
    blocks += [BasicBlock(cout, cout, dilation=(dilation, dilation)) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class DRNDTrunk(nn.Module):
    """DRN-D feature extractor: (N, 3, H, W) -> ((N, 512, H/8, W/8),)."""

    out_channels = 512

    def __init__(self, layers: tuple[int, ...] = (1, 1, 2, 2, 2, 2, 1, 1)) -> None:
        super().__init__()
        ch = (16, 32, 64, 128, 256, 512, 512, 512)
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, ch[0], 7, padding=3, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(True)
        )
        self.layer1 = _conv_layers(ch[0], ch[0], layers[0])
        self.layer2 = _conv_layers(ch[0], ch[1], layers[1], stride=2)
        self.layer3 = _res_layer(ch[1], ch[2], layers[2], stride=2)
        self.layer4 = _res_layer(ch[2], ch[3], layers[3], stride=2)
        self.layer5 = _res_layer(ch[3], ch[4], layers[4], dilation=2, new_level=False)
        self.layer6 = _res_layer(ch[4], ch[5], layers[5], dilation=4, new_level=False)
        self.layer7 = _conv_layers(ch[5], ch[6], layers[6], dilation=2)
        self.layer8 = _conv_layers(ch[6], ch[7], layers[7], dilation=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        for i in range(9):
            x = getattr(self, f"layer{i}")(x)
        return (x,)


@register_model("drn_d_22")
def drn_d_22(*, num_classes: int, dropout: float) -> SegmentationModel:
    trunk = DRNDTrunk()
    head = DropoutHead([DRNDTrunk.out_channels], num_classes, dropout=dropout)
    return SegmentationModel("drn_d_22", trunk, head, num_classes)
