"""A tiny Vision Transformer for small images (8x8 to 32x32)."""

import torch
from torch import nn

from ..config import ModelSpec
from .base import LOGITS, LensModel, scaled
from .registry import register_model

DEPTH = 4
HEADS = 4


def patch_size_for(image_size: int) -> int:
    """The patch size giving a grid closest to 8x8 patches (4x4 to 8x8 when possible)."""
    divisors = [s for s in (16, 8, 4, 2, 1) if image_size % s == 0]
    return min(divisors, key=lambda s: (not 4 <= image_size // s <= 8, abs(image_size // s - 8)))


class PatchEmbed(nn.Module):
    """Patches -> tokens, with a class token and learned positions."""

    def __init__(self, in_channels: int, dim: int, image_size: int):
        super().__init__()
        patch = patch_size_for(image_size)
        tokens = (image_size // patch) ** 2
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)

    def forward(self, x):
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ClassToken(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x[:, 0])


@register_model("vit_tiny", description="ViT, 4 blocks, dim 64 x width, for small images",
                min_image_size=8)
def vit_tiny(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> LensModel:
    dim = scaled(64, spec.width) // HEADS * HEADS
    stages = [("block1", nn.Sequential(PatchEmbed(in_channels, dim, image_size), Block(dim, HEADS)))]
    stages += [(f"block{i}", Block(dim, HEADS)) for i in range(2, DEPTH + 1)]
    stages += [("embedding", ClassToken(dim)), (LOGITS, nn.Linear(dim, num_classes))]
    return LensModel(stages)
