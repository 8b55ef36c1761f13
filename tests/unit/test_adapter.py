"""The model adapter: any nn.Module classifier as a chain of stages that computes exactly
what the module does, torchvision's architectures by name, and a clear refusal for every
module or option it cannot serve."""

import pytest
import torch
import torchvision
from torch import nn

from unlearn_core.config import ModelSpec
from unlearn_core.errors import UserError
from unlearn_core.models import LOGITS, build_model
from unlearn_core.models.adapter import adapt_module
from unlearn_core.models.torchvision_models import ARCHITECTURES, ScaledResNet


def _exact(module: nn.Module, lens, x: torch.Tensor) -> None:
    """Every stage boundary is exact: the chain's logits equal the module's, and the rest
    of the network run from any probe layer gives the same logits."""
    module.eval(), lens.eval()
    with torch.no_grad():
        expected = module(x)
        features = lens.forward_features(x)
        torch.testing.assert_close(features[LOGITS], expected, rtol=1e-4, atol=1e-5)
        for layer in lens.feature_layers:
            torch.testing.assert_close(lens.forward_from(layer, features[layer]), expected,
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_torchvision_architecture_builds_small_and_splits(name):
    spec = ModelSpec(f"torchvision/{name}", width=0.0625 if name == "vit_b_16" else 0.125,
                     small_stem=True)
    model = build_model(spec, in_channels=1, num_classes=10, image_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    features = model.forward_features(x)
    assert model.probe_layers[-2:] == ("embedding", LOGITS)
    assert features[LOGITS].shape == (2, 10)
    for layer in model.feature_layers:
        torch.testing.assert_close(model.forward_from(layer, features[layer]), features[LOGITS],
                                   rtol=1e-4, atol=1e-5)


def test_torchvision_modules_split_exactly_at_full_size():
    for module in (torchvision.models.resnet18(num_classes=10),
                   torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.25)):
        _exact(module, adapt_module(module), torch.randn(2, 3, 64, 64))


def test_scaled_resnet_at_width_one_is_torchvisions():
    ours = ScaledResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2], 10, 1.0).state_dict()
    theirs = torchvision.models.resnet18(num_classes=10).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_small_stem_keeps_resolution_and_imagenet_stem_is_torchvisions():
    small = build_model(ModelSpec("torchvision/resnet18", 0.125, small_stem=True),
                        in_channels=3, num_classes=10, image_size=32)
    imagenet = build_model(ModelSpec("torchvision/resnet18", 0.125), in_channels=3,
                           num_classes=10, image_size=32)
    x = torch.randn(1, 3, 32, 32)
    assert small.forward_features(x, ["layer1"])["layer1"].shape[-1] == 32
    assert imagenet.forward_features(x, ["layer1"])["layer1"].shape[-1] == 8  # stride 2 + pool


def test_grayscale_is_the_rgb_model_on_the_repeated_image(tmp_path):
    """One input channel: the RGB kernels summed, so a weights file's model sees a gray
    image as torchvision's model sees it repeated in three channels."""
    from safetensors.torch import save_file
    rgb = ScaledResNet(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2], 10, 0.125).eval()
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(path))
    gray = build_model(ModelSpec("torchvision/resnet18", 0.125, weights=str(path)),
                       in_channels=1, num_classes=10, image_size=32).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


def test_weights_file_for_another_class_count_keeps_the_trunk(tmp_path):
    from safetensors.torch import save_file
    source = torchvision.models.mobilenet_v3_small(num_classes=7, width_mult=0.25)
    path = tmp_path / "mobilenet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    spec = ModelSpec("torchvision/mobilenet_v3_small", 0.25, weights=str(path))
    assert spec.weights_hash and spec.to_dict()["weights_hash"] == spec.weights_hash
    model = build_model(spec, in_channels=3, num_classes=10, image_size=32).eval()
    source.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the features before the new 10-class head are the file's
        torch.testing.assert_close(model.forward_features(x, ["embedding"])["embedding"],
                                   source.classifier[:3](source.avgpool(source.features(x)).flatten(1)))
    assert model.num_classes == 10


def test_a_checkpoint_for_another_architecture_is_refused(tmp_path):
    from safetensors.torch import save_file
    other = torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.25)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(UserError, match=r"^model.weights: checkpoint .*does not fit this model: "
                                        r"missing keys"):
        build_model(ModelSpec("torchvision/resnet18", 0.125, weights=str(path)),
                    in_channels=3, num_classes=10, image_size=32)


def test_stage_outputs_survive_inplace_activations_downstream():
    """torchvision's ReLU(inplace=True) would overwrite a stage output read earlier."""
    module = torchvision.models.resnet18(num_classes=10)
    lens = adapt_module(module).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        alone = lens.forward_features(x, ["layer1"])["layer1"].clone()
        together = lens.forward_features(x)["layer1"]
    torch.testing.assert_close(alone, together)
    assert module.relu.inplace  # the user's module is left as it was


def test_adapted_model_shares_nothing_with_the_users_module():
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 3))
    lens = adapt_module(module)
    with torch.no_grad():
        lens.classifier.weight.add_(1.0)
    assert not torch.equal(lens.classifier.weight, module[4].weight)


def test_default_probe_layers_descend_to_the_blocks():
    lens = adapt_module(torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.25))
    assert lens.feature_layers[:3] == ("features_0", "features_1", "features_2")
    assert lens.feature_layers[-1] == "embedding"


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + self.inner(self.conv(x))


class Net(nn.Module):
    def __init__(self, branch: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Residual()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 3)
        self.branch = branch

    def forward(self, x):
        h = self.pool(self.block(self.stem(x)))
        if self.branch and h.sum() > 0:  # a Python branch on a tensor value: untraceable
            h = h * 2
        return self.fc(h)


class NotAClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.parametrize("module, kwargs, message", [
    ("not a module", {}, r"^model: expected a torch.nn.Module, got str"),
    (NotAClassifier(), {}, r"^head: the output of NotAClassifier is not an nn.Linear's output"),
    (Net(), {"probe_layers": ["nope"]}, r"^probe_layers: the model has no module 'nope'; its "
                                        r"top-level modules: \['stem', 'block', 'pool', 'fc'\]"),
    (Net(), {"probe_layers": ["block.conv"]}, r"^probe_layers: cannot split the model after "
                                              r"'block.conv': a value computed before it"),
    (Net(), {"probe_layers": ["fc"]}, r"^probe_layers: 'fc' is \(or holds\) the classifier"),
    (Net(), {"head": "stem"}, r"^head: expected the name of the model's nn.Linear classifier, "
                              r"got 'stem' \(Conv2d\)"),
    (Net(branch=True), {}, r"^model: cannot split Net into stages: torch.fx could not trace"),
])
def test_what_cannot_be_adapted_says_why(module, kwargs, message):
    with pytest.raises(UserError, match=message) as info:
        adapt_module(module, **kwargs)
    assert "\n" not in str(info.value)


def test_user_probe_layers_and_names():
    lens = adapt_module(Net(), probe_layers=["block", "stem"], sample=torch.randn(2, 1, 8, 8))
    assert lens.probe_layers == ("stem", "block", "embedding", LOGITS)
    module = Net()
    _exact(module, adapt_module(module, probe_layers=["stem", "block"]), torch.randn(2, 1, 8, 8))


def test_vit_needs_small_patches_for_small_images():
    with pytest.raises(UserError, match=r"^model.name: torchvision/vit_b_16 cuts images into "
                                        r"16x16 patches; 28x28 images need model.small_stem"):
        build_model(ModelSpec("torchvision/vit_b_16", 0.0625), in_channels=1, num_classes=10,
                    image_size=28)


@pytest.mark.parametrize("changes, message", [
    ({"name": "small_cnn", "small_stem": True}, r"^model.small_stem: only torchvision/"),
    ({"name": "small_cnn", "probe_layers": ("a",)}, r"^model.probe_layers: only adapted models"),
    ({"name": "torchvision/resnet18", "weights": "/no/such/file.pt"},
     r"^model.weights: file not found"),
    ({"name": "user_module"}, r"^model.entry_point: model 'user_module' needs 'module:function'"),
    ({"name": "small_cnn", "entry_point": "a:b"}, r"^model.entry_point: only model 'user_module'"),
    ({"name": "torchvision/resnet18", "probe_layers": "layer1"},
     r"^model.probe_layers: expected a list of module names"),
])
def test_model_spec_refuses_misplaced_fields(changes, message):
    with pytest.raises(UserError, match=message):
        ModelSpec(**changes)


def test_new_fields_leave_old_hashes_alone():
    assert ModelSpec().to_dict() == {"name": "small_cnn", "width": 1.0}


class FunctionalDropout(nn.Module):
    """Dropout written as F.dropout(training=self.training): fx fixes the flag when it
    traces, so the chain would drop out in eval mode too."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(nn.functional.dropout(self.body(x), 0.5, training=self.training))


def test_a_branch_fixed_at_trace_time_is_caught_by_the_sample_check():
    with pytest.raises(UserError, match=r"^model: the stages of FunctionalDropout do not "
                                        r"compute what its forward does"):
        adapt_module(FunctionalDropout().eval(), sample=torch.randn(4, 1, 8, 8))


def test_timm_models_by_name():
    pytest.importorskip("timm")
    model = build_model(ModelSpec("timm/resnet10t"), in_channels=1, num_classes=10, image_size=28)
    assert model.probe_layers[-4:] == ("layer3", "layer4", "embedding", LOGITS)
    with pytest.raises(UserError, match=r"^model.name: timm has no model 'nope'"):
        build_model(ModelSpec("timm/nope"), in_channels=1, num_classes=10, image_size=28)


def test_model_registry_refuses_a_name_twice():
    from unlearn_core.models.registry import register_model
    with pytest.raises(ValueError, match="already registered"):
        register_model("torchvision/resnet18", description="again")(lambda *a: None)


def test_batchnorm_statistics_follow_the_data_at_pytorchs_default_rate():
    """torchvision's MobileNetV3 sets momentum 0.01: too slow for short recipes."""
    model = build_model(ModelSpec("torchvision/mobilenet_v3_small", 0.25), in_channels=1,
                        num_classes=10, image_size=28)
    momenta = {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
