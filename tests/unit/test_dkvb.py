"""The DKVB model (models/dkvb.py), its spec (config.py) and how its references are
trained and cached (training.py), on digits with a small bottleneck."""

import copy
import dataclasses

import pytest
import torch

from tests.conftest import tiny_setup
from unlearn_core.config import (BottleneckSpec, DataSpec, ModelSpec, RunSpec, SetupSpec,
                                 TrainSpec)
from unlearn_core.errors import UserError
from unlearn_core.models import build_model
from unlearn_core.models.dkvb import (MAX_TABLE_FLOATS, EmaKMeans, KeyValueBottleneck,
                                      MeanOfValues, bottleneck_of, usage_counts)
from unlearn_core.progress import Progress
from unlearn_core.training import (encoder_setup, get_oracle, get_original, predict, prepare,
                                   reference_key)

SMALL = BottleneckSpec(codebooks=8, keys=32, key_dim=4, kmeans_epochs=2, value_epochs=5)


def dkvb_setup(**changes) -> SetupSpec:
    return tiny_setup(model=ModelSpec("dkvb", bottleneck=SMALL), **changes)


@pytest.fixture(scope="module")
def dkvb_refs(shared_store):
    exp = prepare(dkvb_setup())
    return (exp, get_original(exp, shared_store, Progress()),
            get_oracle(exp, shared_store, Progress()))


# --- the spec -------------------------------------------------------------------------


def test_specs_without_an_encoder_keep_their_dict_and_hash():
    # Values computed with config.py before ModelSpec had `encoder` and `bottleneck`:
    # cached checkpoints and stored runs are found by these hashes.
    assert ModelSpec().to_dict() == {"name": "small_cnn", "width": 1.0}
    assert ModelSpec().hash == "6e0018989db73298"
    assert SetupSpec().hash == "048ff51e0a293d0d"
    assert SetupSpec().original_key == "a8a8c9bb8edab4b8"
    assert SetupSpec(model=ModelSpec("resnet18", 0.5)).hash == "dc0d998eb2944a29"
    assert tiny_setup().hash == "4a51feac7e8fc702"


def test_dkvb_spec_fills_its_defaults_and_round_trips():
    spec = ModelSpec("dkvb")
    assert spec.encoder == "small_cnn" and spec.bottleneck == BottleneckSpec()
    assert ModelSpec("frozen_linear").encoder == "small_cnn"
    assert ModelSpec("frozen_linear").bottleneck is None
    setup = SetupSpec(model=ModelSpec("dkvb", encoder="resnet18",
                                      bottleneck={"codebooks": 256, "keys": 4096, "key_dim": 14}))
    again = RunSpec.from_json(RunSpec(setup).to_json()).setup
    assert again == setup and again.hash == setup.hash
    assert again.model.bottleneck.codebooks == 256
    assert SetupSpec(model=ModelSpec("dkvb", bottleneck=SMALL)).hash != SetupSpec(
        model=ModelSpec("dkvb")).hash


@pytest.mark.parametrize("make, parameter", [
    (lambda: ModelSpec("small_cnn", encoder="resnet18"), "model.encoder"),
    (lambda: ModelSpec("small_cnn", bottleneck=BottleneckSpec()), "model.bottleneck"),
    (lambda: ModelSpec("frozen_linear", bottleneck=BottleneckSpec()), "model.bottleneck"),
    (lambda: ModelSpec("dkvb", encoder="dkvb"), "model.encoder"),
    (lambda: BottleneckSpec(keys=1), "model.bottleneck.keys"),
    (lambda: BottleneckSpec(codebooks=0), "model.bottleneck.codebooks"),
    (lambda: BottleneckSpec(decay=1.0), "model.bottleneck.decay"),
    (lambda: ModelSpec.from_dict({"name": "dkvb", "bottleneck": {"keyz": 3}}), "keyz"),
])
def test_bad_bottleneck_specs_name_the_parameter(make, parameter):
    with pytest.raises(UserError, match=parameter.replace(".", r"\.")):
        make()


def test_value_table_too_large_is_refused_before_allocation(monkeypatch):
    def allocate(*args, **kwargs):
        raise AssertionError("the bottleneck was allocated before the size check")

    monkeypatch.setattr(KeyValueBottleneck, "__init__", allocate)
    huge = ModelSpec("dkvb", bottleneck=BottleneckSpec(codebooks=4096, keys=65536))
    with pytest.raises(UserError, match=r"model\.bottleneck\.keys: the value table .* "
                                        r"4096 x 65536 x 10 = 2,684,354,560 floats"):
        build_model(huge, in_channels=1, num_classes=10, image_size=8)
    # The paper's scale passes at 10 classes (10.5 M floats), and is refused only where
    # its table truly exceeds the limit.
    paper = BottleneckSpec(codebooks=256, keys=4096, key_dim=14)
    assert 256 * 4096 * 128 <= MAX_TABLE_FLOATS < 256 * 4096 * 129
    with pytest.raises(UserError, match="value table"):
        build_model(ModelSpec("dkvb", bottleneck=paper), in_channels=1, num_classes=129,
                    image_size=8)
    with pytest.raises(UserError, match="value table"):
        prepare(tiny_setup(model=huge))


# --- the bottleneck ---------------------------------------------------------------------


def small_bottleneck(seed=0, codebooks=6, keys=16, key_dim=3, values=5) -> KeyValueBottleneck:
    torch.manual_seed(seed)
    b = KeyValueBottleneck(10, codebooks, keys, key_dim, values)
    with torch.no_grad():
        b.values.normal_()
    return b


def brute_force_nearest(b: KeyValueBottleneck, z: torch.Tensor, mask: torch.Tensor):
    out = torch.full(z.shape[:2], -1, dtype=torch.long)
    for c in range(b.codebooks):
        for n in range(len(z)):
            distances = ((z[n, c] - b.keys[c]) ** 2).sum(-1).masked_fill(mask[c], float("inf"))
            if not mask[c].all():
                out[n, c] = int(distances.argmin())
    return out


def test_nearest_key_matches_a_brute_force_search_and_skips_masked_pairs():
    b = small_bottleneck()
    z = b.project(torch.randn(40, 10))
    generator = torch.Generator().manual_seed(1)
    mask = torch.rand(b.codebooks, b.num_keys, generator=generator) < 0.5
    mask[2] = True  # a codebook with every key masked answers no key at all
    selection = b.nearest(z, mask)
    assert torch.equal(selection, brute_force_nearest(b, z, mask))
    chosen = selection >= 0
    assert not mask[torch.arange(b.codebooks).expand_as(selection)[chosen], selection[chosen]].any()
    assert (selection[:, 2] == -1).all() and chosen[:, [0, 1, 3, 4, 5]].all()
    # ... and contributes a zero vector to the fetched values.
    assert torch.equal(b.fetch(selection)[:, 2], torch.zeros(40, b.num_values))


def test_reselect_equals_a_full_search_under_a_larger_mask():
    b = small_bottleneck()
    z = b.project(torch.randn(200, 10))
    small = torch.zeros(b.codebooks, b.num_keys, dtype=torch.bool)
    small[0, :4] = True
    large = small.clone()
    large[:, 4:9] = True
    assert torch.equal(b.reselect(z, b.nearest(z, small), large), b.nearest(z, large))


def test_usage_counts_sum_to_examples_times_codebooks():
    b = small_bottleneck()
    z = b.project(torch.randn(37, 10))
    counts = usage_counts(b.nearest(z), b.num_keys)
    assert counts.shape == (b.codebooks, b.num_keys)
    assert int(counts.sum()) == 37 * b.codebooks
    assert (counts.sum(1) == 37).all()
    mask = torch.zeros_like(b.mask)
    mask[4] = True  # a fully masked codebook selects nothing
    assert int(usage_counts(b.nearest(z, mask), b.num_keys).sum()) == 37 * (b.codebooks - 1)


def test_ema_kmeans_puts_a_key_on_every_cluster():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    points = (centres.repeat(250, 1) + 0.05 * torch.randn(1000, 2)).unsqueeze(1)
    b = KeyValueBottleneck(2, 1, 4, 2, 3)
    # All four keys start in one cluster: EMA updates alone would leave three of them
    # stranded there; dead-key replacement moves them onto the other clusters.
    start = points[:1].repeat(4, 1, 1) + 0.01 * torch.randn(4, 1, 2)
    kmeans = EmaKMeans(b, start, decay=0.95, generator=torch.Generator().manual_seed(0))
    for _ in range(10):
        for batch in torch.randperm(1000).split(100):
            kmeans.update(points[batch])
    distance = torch.cdist(centres, b.keys[0]).min(1).values
    assert (distance < 0.1).all(), distance
    assert kmeans.replaced > 0


# --- the model ------------------------------------------------------------------------


def test_dkvb_model_is_a_lens_model_whose_logits_are_the_mean_of_the_values():
    torch.manual_seed(0)
    model = build_model(ModelSpec("dkvb", bottleneck=SMALL), in_channels=1, num_classes=10,
                        image_size=8).eval()
    assert model.probe_layers == ("block1", "block2", "block3", "embedding", "bottleneck",
                                  "logits")
    assert isinstance(model.classifier, MeanOfValues)
    b = bottleneck_of(model)
    with torch.no_grad():
        b.values.normal_()
        x = torch.randn(16, 1, 8, 8)
        h = model.forward_features(x, ["embedding"])["embedding"]
        expected = b.fetch(b.select(h)).mean(1)
        features = model.forward_features(x, ["bottleneck", "logits"])
    assert features["bottleneck"].shape == (16, SMALL.codebooks * 10)
    torch.testing.assert_close(features["logits"], expected, rtol=0, atol=1e-6)
    assert bottleneck_of(build_model(ModelSpec("small_cnn"), in_channels=1, num_classes=10,
                                     image_size=8)) is None


def test_encoder_stays_frozen_and_in_eval_mode_while_the_values_train():
    torch.manual_seed(0)
    model = build_model(ModelSpec("dkvb", bottleneck=SMALL), in_channels=1, num_classes=10,
                        image_size=8)
    model.train()
    assert all(not model.stages[name].training for name in model.frozen_stages)
    assert model.stages["bottleneck"].training
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["stages.bottleneck.values"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(32, 1, 8, 8)),
                                             torch.randint(0, 10, (32,)))
    loss.backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["stages.bottleneck.values"]  # batch-norm statistics included


def test_masking_is_reversible_bit_for_bit(dkvb_refs):
    exp, original, _ = dkvb_refs
    model = copy.deepcopy(original.model)
    loader = exp.loader("test", batch_size=512)
    before, _ = predict(model, loader)
    b = bottleneck_of(model)
    b.mask[:, : b.num_keys // 2] = True
    masked, _ = predict(model, loader)
    assert not (masked == before).all()
    b.mask.zero_()
    after, _ = predict(model, loader)
    assert (after == before).all()


# --- references: training and cache ------------------------------------------------------


def test_dkvb_original_is_trained_on_the_encoder_models_original_and_cached(dkvb_refs,
                                                                           shared_store):
    exp, original, oracle = dkvb_refs
    encoder_exp = prepare(encoder_setup(exp.spec))
    encoder = get_original(encoder_exp, shared_store, Progress())
    for name in original.model.frozen_stages:
        for key, value in original.model.stages[name].state_dict().items():
            assert torch.equal(value, encoder.model.stages[name].state_dict()[key]), key
    assert original.meta["encoder_key"] == reference_key(encoder_exp.spec, "original")
    # Near the encoder model's own accuracy (digits, a small bottleneck, 5 value epochs).
    assert original.meta["test_accuracy"] > encoder.meta["test_accuracy"] - 0.05
    assert not bottleneck_of(original.model).mask.any()
    # The oracle is a full retrain: its encoder is the encoder model's oracle's trunk.
    encoder_oracle = get_oracle(encoder_exp, shared_store, Progress())
    assert torch.equal(oracle.model.stages["block1"][0].weight,
                       encoder_oracle.model.stages["block1"][0].weight)
    assert not torch.equal(oracle.model.stages["block1"][0].weight,
                           original.model.stages["block1"][0].weight)
    again = get_original(prepare(exp.spec), shared_store, Progress())
    assert again.meta == original.meta
    for key, value in again.model.state_dict().items():
        assert torch.equal(value, original.model.state_dict()[key])


def test_frozen_linear_shares_the_encoder_models_checkpoints(shared_store):
    spec = tiny_setup(model=ModelSpec("frozen_linear"))
    assert reference_key(spec, "original") == reference_key(tiny_setup(), "original")
    assert reference_key(spec, "oracle") == reference_key(tiny_setup(), "oracle")
    model = get_original(prepare(spec), shared_store, Progress()).model
    plain = get_original(prepare(tiny_setup()), shared_store, Progress()).model
    for key, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "stages.logits.weight", "stages.logits.bias"]


def test_dkvb_original_key_follows_the_seed_even_with_an_imported_encoder():
    imported = dataclasses.replace(dkvb_setup(), original="imported:0123456789abcdef")
    assert reference_key(imported, "original") != reference_key(
        dataclasses.replace(imported, seed=1), "original")
    assert reference_key(dkvb_setup(), "original") != reference_key(tiny_setup(), "original")
    assert reference_key(dkvb_setup(train=TrainSpec(epochs=2, batch_size=32)), "original") != \
        reference_key(dkvb_setup(), "original")
    assert DataSpec("digits") == dkvb_setup().data
