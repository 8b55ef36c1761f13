"""What the Look-inside issue must show, on the embedded default itself (mnist5k,
small_cnn, forget class 0, the method's default hyperparameters), in numbers from
evaluate(). Trains the original and the oracle on mnist5k: about a minute on 2 cores."""

from unlearn_core.config import MethodSpec, RunSpec, SetupSpec
from unlearn_core.pipeline import run_unlearning

MIDDLE_LAYERS = ("block2", "block3")


def test_random_label_forgets_superficially_where_the_oracle_moved_its_middle_layers(shared_store):
    run_id = run_unlearning(RunSpec(SetupSpec(device="cpu"), MethodSpec("random_label")),
                            shared_store)
    report = shared_store.get(run_id).report
    accuracy = report["accuracy"]["unlearned"]
    assert accuracy["forget_train"] < 0.05 and accuracy["test_forget"] < 0.05
    layers = report["layers"]
    for part in ("forget_train", "forget_test"):
        for layer in MIDDLE_LAYERS:
            i = layers["names"].index(layer)
            unlearned = layers["cka"]["unlearned_vs_original"][part][i]
            oracle = layers["cka"]["oracle_vs_original"][part][i]
            assert unlearned > oracle, (part, layer, unlearned, oracle)
            # Paired bootstrap: the difference is beyond the examples' sampling noise.
            assert layers["cka_excess"][part]["low"][i] > 0, (part, layer)
    assert layers["verdict"]["kind"] == "superficial", layers["verdict"]["text"]
