"""The backdoor scenario in the app: its Setup fields, the poisoned examples beside their
clean originals, and the backdoor numbers of a poison run."""

from __future__ import annotations

import numpy as np
import streamlit as st

from unlearn_core import figures
from unlearn_core.config import POISON_ATTACKS, POISON_POSITIONS, PoisonSpec
from unlearn_core.data import Dataset, Split
from unlearn_core.data.poison import poisoned_dataset
from unlearn_core.figures import poison as poison_figures

from . import presenter, widgets

VERDICT_STYLE = {"trigger_fires": st.error, "hidden": st.warning, "removed": st.success,
                 "undetermined": st.info, "imprint_remains": st.warning}


ATTACK_LABELS = {"backdoor": "Backdoor (a patch and a target label)",
                 "gaussian": "Gaussian noise (labels kept; no trigger)"}


def poison_form(current: PoisonSpec | None, class_names: list[str]) -> dict:
    """The poison fields of the Setup page, as PoisonSpec keyword arguments."""
    poison = current or PoisonSpec()
    attack = st.radio("Poisoning", POISON_ATTACKS, index=POISON_ATTACKS.index(poison.attack),
                      key="poison_attack", format_func=ATTACK_LABELS.get, horizontal=True)
    fraction = st.slider("Share of the training set to poison", 0.01, 0.5,
                         value=float(poison.fraction), step=0.01, key="poison_fraction",
                         help="a backdoor's drawn from the classes other than the target")
    if attack == "gaussian":
        noise_std = st.slider("Noise standard deviation (share of the pixel range)", 0.01, 1.0,
                              value=float(poison.noise_std), step=0.01, key="poison_noise_std")
        return {"attack": attack, "fraction": float(fraction), "noise_std": float(noise_std)}
    target = st.selectbox("Target class", range(len(class_names)), key="poison_target",
                          index=min(poison.target, len(class_names) - 1),
                          format_func=lambda c: f"{c}: {class_names[c]}")
    size_column, value_column, position_column = st.columns(3)
    patch_size = size_column.number_input("Patch size (pixels)", 1, 64, value=poison.patch_size,
                                          key="poison_patch_size")
    value = value_column.number_input("Patch value (0-255)", 0, 255, value=poison.value,
                                      key="poison_value")
    position = position_column.selectbox("Corner", POISON_POSITIONS, key="poison_position",
                                         index=POISON_POSITIONS.index(poison.position),
                                         format_func=lambda p: p.replace("_", " "))
    return {"attack": attack, "fraction": float(fraction), "target": int(target),
            "patch_size": int(patch_size), "value": int(value), "position": position}


def poisoned_pairs(dataset: Dataset, split: Split, poison: PoisonSpec, seed: int,
                   count: int = 8) -> None:
    """The first poisoned training images: each clean original, then the copy the original
    model is trained on, with the label it is given."""
    shown = split.forget[:count].copy()  # a writable copy for torch indexing
    poisoned = poisoned_dataset(dataset, split.forget, poison, seed).train
    clean = dataset.train.images[shown]
    images = np.stack([image for pair in zip(clean.numpy(), poisoned.images[shown].numpy())
                       for image in pair])
    captions = []
    for i in shown:
        label = dataset.classes[int(dataset.train.labels[i])]
        captions += [f"#{i} · clean {label}",
                     f"poisoned → {dataset.classes[int(poisoned.labels[i])]}"]
    st.caption("Poisoned training examples: each clean original, then the copy the original "
               "model is trained on" + (" (noise added, label kept)." if poison.attack == "gaussian"
                                        else " (trigger added, label set to the target)."))
    widgets.image_grid(images, captions)


def backdoor_section(report: dict, *, charts: bool = True) -> None:
    """A poison run's verdict, ASR numbers and, with `charts`, its per-layer figures."""
    poison = report.get("poison")
    if poison is None:
        return
    if poison["attack"] == "gaussian":
        _noise_imprint_section(report)
        return
    st.subheader("The backdoor")
    VERDICT_STYLE.get(poison["verdict"]["kind"], st.info)(poison["verdict"]["text"])
    columns = st.columns(4)
    asr, refit, accuracy = poison["asr"], poison["asr_head_refit"], report["accuracy"]
    columns[0].metric("ASR, unlearned", figures.format_percent(asr["unlearned"]),
                      f"original {figures.format_percent(asr['original'])}", delta_color="off")
    columns[1].metric("ASR, retrain oracle", figures.format_percent(asr["oracle"]),
                      f"base rate {figures.format_percent(poison['base_rate']['oracle'])}",
                      delta_color="off")
    columns[2].metric("ASR after a head refit", figures.format_percent(refit["unlearned"]),
                      f"oracle {figures.format_percent(refit['oracle'])}", delta_color="off",
                      help="a new linear classifier on the frozen "
                           f"{poison['head_refit_layer']} features, fitted on poisoned data")
    columns[3].metric("Clean test accuracy", figures.format_percent(accuracy["unlearned"]["test"]),
                      f"oracle {figures.format_percent(accuracy['oracle']['test'])}",
                      delta_color="off")
    presenter.chart(poison_figures.asr_bars(report))
    if charts:
        left, right = st.columns(2)
        presenter.chart(poison_figures.trigger_readout_per_layer(report), left, beside=2)
        presenter.chart(poison_figures.cka_on_triggered_inputs(report), right, beside=2)


def _noise_imprint_section(report: dict) -> None:
    """A Gaussian-poisoning run: the verdict and each model's noise imprint."""
    poison = report["poison"]
    st.subheader("The poisoned examples' noise")
    VERDICT_STYLE.get(poison["verdict"]["kind"], st.info)(poison["verdict"]["text"])
    presenter.chart(poison_figures.imprint_bars(report))
    st.caption(f"Per poisoned example ({poison['n_scored']} scored): -cos(noise, input "
               "gradient of the loss) for the noise it was trained with, minus the same for "
               "fresh noise on the same image. About 0 for a model that never trained on "
               "that noise; the bars show the mean with ±2 standard errors.")
