"""A small CNN that trains in seconds on 2 CPU cores (MNIST-sized or 8x8 inputs)."""

from torch import nn

from ..config import ModelSpec
from .base import LOGITS, LensModel, scaled
from .registry import register_model


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_model("small_cnn", description="3 conv blocks + 1 hidden layer; seconds on a CPU",
                min_image_size=8)
def small_cnn(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    c1, c2, c3, hidden = (scaled(c, spec.width) for c in (16, 32, 64, 64))
    return LensModel([
        ("block1", _conv_block(in_channels, c1, pool=True)),
        ("block2", _conv_block(c1, c2, pool=True)),
        ("block3", _conv_block(c2, c3, pool=image_size >= 32)),
        # A 3x3 grid, not a global average: digits are told apart by where strokes are.
        ("embedding", nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                                    nn.Linear(9 * c3, hidden), nn.ReLU())),
        (LOGITS, nn.Linear(hidden, num_classes)),
    ])
