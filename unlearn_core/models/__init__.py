"""Model registry; every model is a `LensModel` with named probe layers."""

from . import dkvb, resnet, small_cnn, timm_models, torchvision_models, user_module, vit  # noqa: F401  (registration)
from .base import LOGITS, LensModel
from .registry import ModelInfo, build_model, list_models, register_model

__all__ = ["LOGITS", "LensModel", "ModelInfo", "build_model", "list_models", "register_model"]
