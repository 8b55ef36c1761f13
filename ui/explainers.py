"""The "What am I looking at?" explainers of the analysis pages, kept in one place: what
each chart shows, how to read it, what good looks like, and the paper it comes from."""

from __future__ import annotations

import streamlit as st

TITLE = "What am I looking at?"

TEXTS = {
    "results": """
**Accuracies** of the unlearned model next to the original (before unlearning) and the
retrain oracle (trained from scratch without the forget set): on the forget training
examples, the retain training examples, and the test set split into the forget classes
and the others. **Gap to oracle** = unlearned − oracle; **per class** shows which classes
paid for the forgetting.

**How to read it:** the oracle is the target on every bar, not 0% and not 100%. For a
forgotten class the oracle's forget accuracy is 0%; for a random forget set it is about
its test accuracy, since a model that never saw those examples still generalises to them.

**What good looks like:** every gap near 0 (the SalUn average gap sums them with the MIA
gap), retain and test accuracy as high as the oracle's, and a speed-up well above 1×:
retraining is the exact answer, an unlearning method must be cheaper.

**From:** the evaluation protocol of *SalUn* (Fan et al., ICLR 2024), shared by the
unlearning literature; the per-method charts come with their papers (e.g. LAU's attack
targets: *Layer Attack Unlearning: Fast and Accurate Machine Unlearning via Layer Level
Attack and Knowledge Distillation*, arXiv 2312.16823).
""",
    "layers": """
**Linear CKA** (centred kernel alignment, Kornblith et al. 2019) compares two models'
representations of the same examples at one layer: 1 means the same representation up
to a rotation and scaling, lower means the layer now encodes the examples differently.
It is computed on a fixed probe subset for each part of the data (forget/retain,
train/test), debiased when a part is small; the band is a 95% bootstrap interval over
examples.

**The dashed reference curve** is the retrain oracle against the original: how much a
model that never saw the forget data differs, layer by layer. Forgetting "at the core"
follows that curve on forget data; forgetting only in the last layers ("superficial")
keeps CKA near 1 everywhere but the head. On retain data every curve should stay high.

**Forgetting depth** per layer = (1 − CKA(unlearned, original)) / (1 − CKA(oracle,
original)), clipped to [0, 1], on forget data: 0 = unchanged from the original, 1 =
moved as far as the oracle did. Layers where the oracle itself moved by less than 0.02
in CKA have no depth: dividing by so little would only amplify noise.

**Closer to the original than the oracle?** CKA(unlearned, original) − CKA(oracle,
original) per layer, with a paired bootstrap 95% interval (both CKAs on the same resampled
examples). Red bars: the interval lies above 0, so that layer stayed significantly closer
to the original than the oracle's did: the signature of superficial forgetting, and the
test the verdict uses where the oracle moved too little for a depth.

**Linear probes** are logistic regressions fitted on frozen activations of each layer
and tested on held-out forget examples. If a probe on the unlearned model still finds the
forget labels where the oracle's probe does not, the information is still there.

**Head refit**: only the classifier is retrained, with forget data included, on top of
the unlearned trunk; the forget accuracy that comes back is what the trunk still knows.

**Other readouts** (computed on request, kept with the run): a few-shot nearest class
mean (the mean of k = 1, 5 or 20 forget examples against the retain classes' means) and
5-nearest neighbours on each layer's frozen features, scored on held-out forget examples,
with their accuracy on held-out retain examples as a dotted baseline. A linear probe fit
on hundreds of forget examples finds the class even in a model that never saw it; a
mean of one or five examples only finds it where the features already gather it.

**Relearning test**: copies of the unlearned model, the oracle and the original are
fine-tuned for a few steps on a few forget examples (mixed with as many retain ones); if
held-out forget accuracy comes back to the unlearned model faster than to the oracle, the
knowledge was hidden, not removed.

**What good looks like:** on forget data the solid curve follows the dashed one, depth
near 1, no red bar, probes and head refit no better than the oracle's; on retain data
every curve stays near 1.

**From:** these checks follow the evaluation of *Erase at the Core: Representation
Unlearning for Machine Unlearning* (Lee, Kim & Kim); CKA from Kornblith et al. (ICML 2019).
""",
    "privacy": """
**MIA efficacy** (the SalUn protocol): an attacker, one RBF support-vector machine per
feature of the softmax output (confidence p_y, correctness, entropy, modified entropy),
learns to tell training members (retain examples) from non-members (test examples). It
is then shown the forget set; the efficacy is the share it calls non-member. **The ideal
is the retrain oracle's value, not 100%**: a model that never trained on the forget
examples still generalises to some of them, and an efficacy far above the oracle's is
itself a sign that something was done to those examples. Confidence is the headline
feature, as in SalUn.

**Distinguishability**: on each forget example, take the unlearned model's and the
oracle's confidence (or entropy) and try to tell the two models apart by a threshold.
The curve shows both error rates per threshold; where FPR + FNR = 1 the attacker is
guessing. ε is the tightest privacy bound over all thresholds (in the spirit of the
NeurIPS 2023 unlearning challenge) and the privacy score is 2^−ε: 1 = indistinguishable.
With a few hundred examples sampling noise alone gives scores around 0.5.

**What good looks like:** the unlearned bars level with the oracle's on every feature,
the two histograms overlapping, the distinguishability curve near the FPR + FNR = 1
diagonal and a privacy score near 1.

**From:** *SalUn* (Fan et al., ICLR 2024) for the MIA efficacy, after Song & Mittal
(2021) for the modified entropy; the NeurIPS 2023 Machine Unlearning Challenge for the
distinguishability from the oracle.
""",
    "embeddings": """
Each point is one example of the probe subset, placed by its activations at the chosen
layer. One map is fitted on the original's, the unlearned model's and the oracle's
activations together, so the three panels share their axes: a point that sits elsewhere
in the middle panel really moved. Colours are classes; **red crosses are forget
examples**.

After forgetting at the core, the forget examples in the unlearned panel look like they
do in the oracle's (for a forgotten class: no separate cluster of its own). If they sit
where they sat in the original, only the last layers changed. The lines link each forget
example's original position to its unlearned one. Hover a point for its index, label and
the class each model predicts; select points (click, box or lasso) to see their images.

**PCA** is linear and shows distances faithfully but crowds classes together; **UMAP**
(McInnes et al. 2018) keeps neighbourhoods, so clusters separate, but distances between
clusters mean little. Both are one joint, seeded fit over the three models.

**What good looks like:** the middle panel's forget crosses placed as in the oracle's
panel, not as in the original's; the other classes unmoved.

**From:** the representation analysis of *Erase at the Core* (Lee, Kim & Kim), whose
point is that forget features can stay in place after superficial unlearning; UMAP from
McInnes et al. (2018).
""",
    "localization": """
A localized method changes only the parameters its **mask** selects, a budget ρ of all
parameters. **DEL** scores every parameter by |w·g| (weight times the gradient of the forget
loss), scores each channel by the mean of its top-k parameter scores and keeps the most
critical channels; **SalLoc** keeps the single parameters with the largest |g|;
**shallowest / deepest** fill the budget from one end of the network; **random** draws as
many channels per layer as another strategy did, the control showing whether *which*
channels matters. Reset + Finetune re-initialises the selected parameters and finetunes
them and the classifier on the retain set; every other parameter stays bit-identical
(batch-norm running statistics are re-estimated during finetuning: they are buffers).

**Selectivity** of a channel: Cohen's d of its mean activation on forget vs retain
examples in the original model; positive = it responds more to the forget set.

**What good looks like:** forget accuracy and MIA at the oracle's line in the budget
sweep with a small ρ, the chosen strategy beating the random control at the same
per-layer counts, and selected channels more forget-selective than the others.

**From:** *Improved Localized Machine Unlearning Through the Lens of Memorization*
(DEL, the mask and Reset + Finetune); SalLoc after *SalUn* (Fan et al., ICLR 2024).
""",
    "keys": """
A **DKVB** model sends the frozen encoder's output into C codebooks; in each, a fixed
random projection picks the nearest of P keys, whose value (one score per class) is
fetched; the prediction is the mean of the C fetched values. Only the values were trained.

**Unlearning** masks (codebook, key) pairs: a masked key drops out of the nearest-key
search, so the examples that chose it fall to their next-nearest key, whose value says
something else. No weight changes and no gradient step: the encoder runs forward over
the forget set (and a retain sample for the sweep), that is all.
*Via Activations* masks the pairs the forget set selects most; *via Examples* every pair
some forget examples select.

**The N sweep** (the paper's Figs. 2-3) chooses how many pairs (Activations) or examples
(Examples) to mask, on data held out from the counting, never the test set: the smallest
N whose held-out forget accuracy reaches the target.

**Key usage** counts how often the training examples select each key, before and after
the masking. A key only the forget classes select is *exclusive*: masking it costs the
retain data nothing. The cost chart puts the run next to the gradient methods run on the
same data, forget set, seed and encoder (e.g. on the `frozen_linear` model: the same
frozen encoder with a linear head).

**What good looks like:** forget accuracy at the target while retain accuracy stays
within about a point of the original's, masked keys mostly exclusive to the forget set,
and a cost a small fraction of any gradient method's.

**From:** *Unlearning via Sparse Representations* (Shah, Träuble et al.), on the
discrete key-value bottleneck.
""",
}


def explain(page: str) -> None:
    """The page's explainer, collapsed."""
    with st.expander(TITLE):
        st.markdown(TEXTS[page])
