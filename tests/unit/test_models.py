import pytest
import torch

from unlearn_core.config import ModelSpec
from unlearn_core.errors import UserError
from unlearn_core.models import LOGITS, build_model, list_models
from unlearn_core.data.registry import register_dataset
from unlearn_core.methods.base import Method
from unlearn_core.methods.registry import register_method, register_plugin
from unlearn_core.models.registry import register_model

EXPECTED = {
    # (model, channels, image size): {probe layer: shape of one example's activation}
    ("small_cnn", 1, 28): {"block1": (16, 14, 14), "block2": (32, 7, 7), "block3": (64, 7, 7),
                           "embedding": (64,), LOGITS: (10,)},
    ("small_cnn", 1, 8): {"block1": (16, 4, 4), "block2": (32, 2, 2), "block3": (64, 2, 2),
                          "embedding": (64,), LOGITS: (10,)},
    ("resnet18", 3, 32): {"layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8),
                          "layer4": (512, 4, 4), "embedding": (512,), LOGITS: (10,)},
    ("vit_tiny", 1, 28): {"block1": (50, 64), "block2": (50, 64), "block3": (50, 64),
                          "block4": (50, 64), "embedding": (64,), LOGITS: (10,)},
}


@pytest.mark.parametrize("name, channels, size", list(EXPECTED))
def test_probe_layers_exist_with_expected_shapes(name, channels, size):
    model = build_model(ModelSpec(name), in_channels=channels, num_classes=10, image_size=size).eval()
    x = torch.randn(2, channels, size, size)
    features = model.forward_features(x)
    assert model.probe_layers == tuple(EXPECTED[(name, channels, size)])
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == EXPECTED[(name, channels, size)]
    assert torch.allclose(model(x), features[LOGITS], atol=1e-6)


def test_width_multiplier_scales_channels():
    narrow = build_model(ModelSpec("resnet18", 0.25), in_channels=3, num_classes=10, image_size=32)
    assert narrow.forward_features(torch.randn(1, 3, 32, 32), ["layer1"])["layer1"].shape[1] == 16


def test_features_are_not_overwritten_by_later_stages():
    """Stage outputs are read directly, so an in-place op downstream cannot alter them."""
    model = build_model(ModelSpec("resnet18", 0.25), in_channels=3, num_classes=10, image_size=16).eval()
    x = torch.randn(2, 3, 16, 16)
    early = model.forward_features(x, ["layer1"])["layer1"].clone()
    everything = model.forward_features(x)
    assert torch.equal(everything["layer1"], early)


def test_forward_from_a_probe_layer_continues_the_network():
    model = build_model(ModelSpec("small_cnn"), in_channels=1, num_classes=10, image_size=28).eval()
    x = torch.randn(3, 1, 28, 28)
    f = model.forward_features(x)
    for layer in model.feature_layers:
        assert torch.allclose(model.forward_from(layer, f[layer]), f[LOGITS], atol=1e-5)


def test_unknown_names_are_clear_errors():
    with pytest.raises(UserError, match="model.name.*allowed"):
        build_model(ModelSpec("vgg99"), in_channels=1, num_classes=10, image_size=28)
    model = build_model(ModelSpec("small_cnn"), in_channels=1, num_classes=10, image_size=28)
    with pytest.raises(UserError, match="unknown probe layer"):
        model.forward_features(torch.randn(1, 1, 28, 28), ["conv9"])


def test_registry_lists_the_shipped_models():
    assert {m.name for m in list_models()} >= {"small_cnn", "resnet18", "vit_tiny"}


@pytest.mark.parametrize("register, name", [
    (lambda name: register_model(name, description="again")(lambda *a: None), "small_cnn"),
    (lambda name: register_dataset(name, embedded=True, needs_root=False,
                                   description="again")(lambda *a: None),
     "digits"),
    (lambda name: register_method(type("Again", (Method,), {"name": name})), "finetune"),
    (lambda name: register_plugin(name, lambda base: base), "ec"),
])
def test_every_registry_refuses_a_second_entry_under_a_name(register, name):
    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
        register(name)
