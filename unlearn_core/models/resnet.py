"""ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) and a width multiplier."""

from torch import nn

from ..config import ModelSpec
from .base import LOGITS, LensModel, scaled
from .registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        # Separate, non-in-place activations: a stage output must never be overwritten.
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


def _layer(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))


@register_model("resnet18", description="ResNet-18, CIFAR stem, width multiplier",
                min_image_size=8)
def resnet18(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    c1, c2, c3, c4 = (scaled(c, spec.width) for c in (64, 128, 256, 512))
    stem = nn.Sequential(nn.Conv2d(in_channels, c1, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(c1), nn.ReLU())
    return LensModel([
        ("layer1", nn.Sequential(stem, _layer(c1, c1, 1))),
        ("layer2", _layer(c1, c2, 2)),
        ("layer3", _layer(c2, c3, 2)),
        ("layer4", _layer(c3, c4, 2)),
        ("embedding", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        (LOGITS, nn.Linear(c4, num_classes)),
    ])
