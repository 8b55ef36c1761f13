"""torchvision's classifiers by name ("torchvision/resnet18" is torchvision's resnet18),
adapted into LensModels.

Randomly initialised, or from a user's weights file (safetensors or a weights-only torch
file, never unpickled). `width` scales the channel counts (1 = torchvision's model,
whose weights files fit); `small_stem` adapts the ImageNet stem to small images (the
first convolution 3x3 with stride 1, no max-pool; a ViT gets small patches); grayscale
input gets a one-channel first convolution (from a weights file: the RGB kernels summed,
which is exactly the model on the gray image repeated in three channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision.models import convnext, efficientnet, mobilenetv3, resnet, vision_transformer

from ..config import ModelSpec
from ..errors import UserError
from ..io import load_into_model, load_state_dict
from .adapter import adapt_module
from .base import LensModel, scaled
from .registry import register_model
from .user_module import in_spec_terms
from .vit import patch_size_for

RGB = 3


class ScaledResNet(resnet.ResNet):
    """torchvision's ResNet with its stage widths (64, 128, 256, 512) times `width`:
    torchvision's blocks, `_make_layer`, module names and initialisation; at width 1 its
    state dict is torchvision's, key for key and shape for shape."""

    def __init__(self, block, layers: list[int], num_classes: int, width: float):
        nn.Module.__init__(self)
        c1, c2, c3, c4 = (scaled(c, width) for c in (64, 128, 256, 512))
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = c1, 1, 1, 64
        self.conv1 = nn.Conv2d(RGB, c1, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, c1, layers[0])
        self.layer2 = self._make_layer(block, c2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, c3, layers[2], stride=2)
        self.layer4 = self._make_layer(block, c4, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c4 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def _resnet(block, layers):
    return lambda width, num_classes, image_size: ScaledResNet(block, layers, num_classes, width)


def _mobilenet_v3_small(width, num_classes, image_size):
    return mobilenetv3.mobilenet_v3_small(weights=None, width_mult=width, num_classes=num_classes)


def _efficientnet_b0(width, num_classes, image_size):
    setting, last_channel = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=width,
                                                            depth_mult=1.0)
    return efficientnet.EfficientNet(setting, 0.2, last_channel=last_channel,
                                     num_classes=num_classes)


def _convnext_tiny(width, num_classes, image_size):
    c1, c2, c3, c4 = (scaled(c, width) for c in (96, 192, 384, 768))
    setting = [convnext.CNBlockConfig(c1, c2, 3), convnext.CNBlockConfig(c2, c3, 3),
               convnext.CNBlockConfig(c3, c4, 9), convnext.CNBlockConfig(c4, None, 3)]
    return convnext.ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=num_classes)


VIT_HEADS = 12


def _vit_b_16(width, num_classes, image_size, patch_size=16):
    if image_size % patch_size:
        raise UserError(f"model.name: torchvision/vit_b_16 cuts images into {patch_size}x"
                        f"{patch_size} patches; {image_size}x{image_size} images need "
                        f"model.small_stem (smaller patches)")
    dim = scaled(768, width) // VIT_HEADS * VIT_HEADS or VIT_HEADS
    return vision_transformer.VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=12, num_heads=VIT_HEADS,
        hidden_dim=dim, mlp_dim=4 * dim, num_classes=num_classes)


def _resnet_small_stem(model, in_channels, image_size):
    model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _stride_one_stem(model, in_channels, image_size):
    # MobileNet's and EfficientNet's stem is already a 3x3 convolution: only its stride
    # changes, so a weights file's stem still fits.
    model.features[0][0].stride = (1, 1)
    return model


def _convnext_small_stem(model, in_channels, image_size):
    old = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, old.out_channels, 3, 1, 1)
    nn.init.trunc_normal_(model.features[0][0].weight, std=0.02)  # torchvision's init
    nn.init.zeros_(model.features[0][0].bias)
    return model


@dataclass(frozen=True)
class Architecture:
    build: Callable[[float, int, int], nn.Module]  # (width, classes, image size) -> module
    first_conv: str  # the module taking the image: its input channels follow the data
    small_stem: Callable | None  # (model, in_channels, image size) -> model
    probe_layers: tuple[str, ...]  # the default: where the resolution (or stage) changes
    head: str
    min_image_size: int


ARCHITECTURES: dict[str, Architecture] = {
    **{name: Architecture(_resnet(block, layers), "conv1", _resnet_small_stem,
                          ("layer1", "layer2", "layer3", "layer4"), "fc", 8)
       for name, block, layers in (("resnet18", resnet.BasicBlock, [2, 2, 2, 2]),
                                   ("resnet34", resnet.BasicBlock, [3, 4, 6, 3]),
                                   ("resnet50", resnet.Bottleneck, [3, 4, 6, 3]))},
    "mobilenet_v3_small": Architecture(
        _mobilenet_v3_small, "features.0.0", _stride_one_stem,
        ("features.1", "features.3", "features.8", "features.11", "features.12"),
        "classifier.3", 8),
    "efficientnet_b0": Architecture(
        _efficientnet_b0, "features.0.0", _stride_one_stem,
        tuple(f"features.{i}" for i in range(1, 9)), "classifier.1", 8),
    "convnext_tiny": Architecture(
        _convnext_tiny, "features.0.0", _convnext_small_stem,
        ("features.1", "features.3", "features.5", "features.7"), "classifier.2", 8),
    "vit_b_16": Architecture(
        _vit_b_16, "conv_proj", None,
        tuple(f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 11)), "heads.head", 8),
}


def _set_input_channels(model: nn.Module, path: str, in_channels: int, from_file: bool) -> None:
    """The first convolution takes `in_channels`. Grayscale: its RGB kernels summed, which
    is exactly torchvision's model on the gray image repeated in three channels (from a
    weights file as from a random initialisation). Other counts: a fresh convolution."""
    parent_name, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old: nn.Conv2d = getattr(parent, child)
    if old.in_channels == in_channels:
        return
    if from_file and in_channels != 1:
        raise UserError(f"model.weights: the file's first convolution takes {old.in_channels} "
                        f"channels and this data has {in_channels}; only grayscale (1) can "
                        f"reuse RGB weights")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None)
    if in_channels == 1:
        with torch.no_grad():
            new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    setattr(parent, child, new)


# PyTorch's default. torchvision's MobileNetV3 uses 0.01, made for ImageNet-length training:
# after the few hundred steps of a lens recipe its running statistics are still far from
# the data's (measured on mnist5k, width 0.25, 3 epochs: 10.5% test accuracy in eval mode,
# 69% with batch statistics). Momentum is not in the state dict: weights files still fit.
BATCHNORM_MOMENTUM = 0.1


def _with_default_batchnorm_momentum(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BATCHNORM_MOMENTUM


def _load_weights(model: nn.Module, arch: Architecture, spec: ModelSpec) -> None:
    """The file's tensors, strictly; the classifier alone may differ in its number of
    classes (a file trained on ImageNet): it then keeps its fresh initialisation."""
    try:
        state = load_state_dict(spec.weights)
        head = model.get_submodule(arch.head).state_dict()
        if any(f"{arch.head}.{k}" in state and state[f"{arch.head}.{k}"].shape != v.shape
               for k, v in head.items()):
            state.update({f"{arch.head}.{k}": v for k, v in head.items()})
        load_into_model(model, state, spec.weights)
    except UserError as misfit:
        raise UserError(f"model.weights: {misfit}") from None


def build_torchvision(name: str, spec: ModelSpec, in_channels: int, num_classes: int,
                      image_size: int) -> LensModel:
    arch = ARCHITECTURES[name]
    if name == "vit_b_16" and spec.small_stem:
        if spec.weights is not None:
            raise UserError("model.small_stem: a vit_b_16 weights file is for 16x16 patches; "
                            "small patches cannot reuse it (leave small_stem off)")
        model = _vit_b_16(spec.width, num_classes, image_size, patch_size_for(image_size))
    else:
        model = arch.build(spec.width, num_classes, image_size)
    if spec.weights is not None:
        _load_weights(model, arch, spec)
    if spec.small_stem and arch.small_stem is not None:
        model = arch.small_stem(model, in_channels, image_size)
    _set_input_channels(model, arch.first_conv, in_channels, from_file=spec.weights is not None)
    _with_default_batchnorm_momentum(model)
    try:
        return adapt_module(model, probe_layers=spec.probe_layers or arch.probe_layers,
                            head=spec.head or arch.head)
    except UserError as error:
        raise in_spec_terms(error) from None


def _register(name: str, arch: Architecture) -> None:
    @register_model(f"torchvision/{name}", min_image_size=arch.min_image_size,
                    description=f"torchvision's {name} (width multiplier; small_stem for "
                                f"small images; a weights file)")
    def builder(spec, in_channels, num_classes, image_size):
        return build_torchvision(name, spec, in_channels, num_classes, image_size)


for _name, _arch in ARCHITECTURES.items():
    _register(_name, _arch)
