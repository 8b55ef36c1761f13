"""The library API for notebooks: a setup, its runs, their reports and figures.

    lens = Lens("small_cnn", forget=0, epochs=1)          # the embedded mnist5k
    lens = Lens("small_cnn", train_set, test_set, forget=[3])  # any torch Dataset
    run = lens.unlearn("salun", epochs=2)               # a registered method
    run = lens.unlearn(my_unlearn, lr=0.01)              # your function (methods/user.py)
    run = lens.import_checkpoint("unlearned.safetensors")  # weights unlearned elsewhere
    run.report()                                         # the full report (a dict)
    run.figures.layers()                                 # the app's plotly figures

Everything goes through the pipeline the CLI and the app use (`run_unlearning`,
`import_run`) into the same run store (default: the app's, $LENS_STORE or
~/.unlearning-lens/store), so the app lists these runs too. Progress prints a line per
10%; Ctrl-C (the notebook's interrupt) stops a run and records it as cancelled, nothing
half-written. A user's own data is kept in the store's cache (data/user.py) so that the
app can compute on it as well.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from . import array_keys, figures
from .config import (USER_MODULE, DataSpec, ForgetSpec, MethodSpec, ModelSpec, RunSpec,
                     SetupSpec, TrainSpec)
from .data import user as user_data
from .errors import UserError
from .figures import localization as localization_figures
from .methods.user import method_from_object, source_hash
from .models import LensModel
from .pipeline import (References, embedding_of_run, import_run, run_unlearning,
                       train_references, unlearned_model)
from .progress import ConsoleProgress, Progress
from .runs import RunStore
from .training import import_reference


def _forget_spec(forget: Any) -> ForgetSpec:
    if isinstance(forget, ForgetSpec):
        return forget
    if isinstance(forget, Mapping):
        return ForgetSpec.from_dict(forget)
    if isinstance(forget, int) and not isinstance(forget, bool):
        return ForgetSpec("classes", (forget,))
    if isinstance(forget, (list, tuple)):
        return ForgetSpec("classes", tuple(forget))
    raise UserError(f"forget: expected a class index, a list of class indices, a ForgetSpec "
                    f"or a dict such as {{'kind': 'indices', 'indices': [...]}}, got {forget!r}")


def _model_spec(model: Any) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        # "module:function" names the user's builder (models/user_module.py).
        return ModelSpec(USER_MODULE, entry_point=model) if ":" in model else ModelSpec(model)
    if isinstance(model, torch.nn.Module):
        # The instance stands for its class: every model of the setup (original, oracle,
        # the unlearned ones rebuilt from weights) is built by calling it, and adapted.
        cls = type(model)
        if "<locals>" in cls.__qualname__:
            raise UserError(f"model: class {cls.__qualname__} is defined inside a function, so "
                            f"it cannot be built again; define it at the top level of a "
                            f"module or a notebook cell")
        return ModelSpec(USER_MODULE, entry_point=f"{cls.__module__}:{cls.__qualname__}",
                         source_hash=source_hash(cls))
    raise UserError(f"model: expected a registered model name (see `python -m unlearn_core "
                    f"list models`), 'module:function' returning your nn.Module, an "
                    f"nn.Module, or a ModelSpec; got {type(model).__name__}")


class Lens:
    """A setup (data, model, forget set, recipe, seed) and the run store its runs go to.

    `model`: a registered name ("small_cnn", "resnet18", "torchvision/resnet18", ...), an
    entry point "module:function" returning your nn.Module, an nn.Module (standing for its
    class, which is called to build every model of the setup: with num_classes,
    in_channels and image_size where its constructor takes them; its weights are not
    used: pass them as `original_checkpoint` to make them the original), or a ModelSpec.
    `original_checkpoint`: a weights file to use as the original instead of training it;
    `oracle_checkpoint` the same for the retrain oracle (trained without the forget set).
    `train_set`, `test_set`: any torch Datasets of (image, label) (PIL images, tensors or
    arrays; raw intensities, not normalised; square images); without them, the registered
    dataset `data` (default the embedded mnist5k). `forget`: a class, a list of classes, a
    ForgetSpec or its dict. `epochs` and `train` (a TrainSpec or its dict) give the recipe
    of the original and the oracle. `store`: a folder (default: the app's store).
    """

    def __init__(self, model: Any = "small_cnn", train_set=None, test_set=None, *,
                 forget: Any = 0, data: str | DataSpec = "mnist5k", classes: Sequence[str] | None = None,
                 epochs: int | None = None, train: TrainSpec | Mapping | None = None,
                 seed: int = 0, device: str = "auto", store: str | Path | RunStore | None = None,
                 original_checkpoint: str | Path | None = None,
                 oracle_checkpoint: str | Path | None = None, progress: bool = True):
        if (train_set is None) != (test_set is None):
            raise UserError("test_set: give both train_set and test_set, or neither (then "
                            "`data` names a registered dataset)")
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        if train_set is not None:
            data_spec = user_data.from_torch(train_set, test_set, classes)
            user_data.keep(data_spec, self.store)
        else:
            data_spec = data if isinstance(data, DataSpec) else DataSpec(data)
        recipe = train if isinstance(train, TrainSpec) else TrainSpec.from_dict(train or {})
        if epochs is not None:
            recipe = TrainSpec.from_dict({**recipe.to_dict(), "epochs": epochs})
        self.setup = SetupSpec(data=data_spec, forget=_forget_spec(forget),
                               model=_model_spec(model), train=recipe, seed=seed, device=device)
        for role, checkpoint in (("original", original_checkpoint), ("oracle", oracle_checkpoint)):
            if checkpoint is not None:
                self.setup = import_reference(self.setup, self.store, str(checkpoint), role)
        self.quiet = not progress
        self._references: References | None = None

    def _progress(self) -> Progress:
        return Progress(ConsoleProgress(self.quiet, sys.stdout))

    def references(self) -> References:
        """The original and the oracle (trained now, or loaded from the store's cache)."""
        if self._references is None:
            self._references = train_references(self.setup, self.store, self._progress())
        return self._references

    @property
    def original(self) -> LensModel:
        return self.references().original.model

    @property
    def oracle(self) -> LensModel:
        return self.references().oracle.model

    def loader(self, part: str = "retain", *, batch_size: int | None = None,
               shuffle: bool = False, seed: int | None = None):
        """Normalised (x, y) batches of a part of the data ("forget", "retain", "train",
        "test", "test_forget", "test_retain") on the setup's device: what the models take,
        for your own training loops."""
        return self.references().experiment.loader(part, batch_size=batch_size,
                                                   shuffle=shuffle, seed=seed)

    def unlearn(self, method: str | Callable | Any, **params) -> "LensRun":
        """Run a method on this setup and store the run. `method`: a registered name
        ("salun", "finetune+ec"), an entry point "module:function", or your function /
        Method subclass itself (see unlearn_core.methods.user); `params` its
        hyperparameters."""
        if isinstance(method, str):
            run_id = run_unlearning(RunSpec(self.setup, MethodSpec(method, params)),
                                    self.store, self._progress())
        else:
            user = method_from_object(method)
            run_id = run_unlearning(RunSpec(self.setup, MethodSpec(user.name, params)),
                                    self.store, self._progress(), user)
        return LensRun(self.store, run_id)

    def import_checkpoint(self, weights: str | Path | Mapping[str, torch.Tensor] | torch.nn.Module,
                          *, seconds: float | None = None) -> "LensRun":
        """Weights unlearned elsewhere (a safetensors or weights-only torch file, a state
        dict, or the module itself) as a run of this setup, with the full report.
        `seconds`: how long that unlearning took, if known."""
        if isinstance(weights, torch.nn.Module):
            weights = weights.state_dict()
        return LensRun(self.store, import_run(self.setup, weights, self.store, self._progress(),
                                              seconds=seconds))

    def runs(self) -> list["LensRun"]:
        """The finished runs of this setup in the store, newest first."""
        return [LensRun(self.store, r.id) for r in self.store.list(kind="unlearn", status="done")
                if RunSpec.from_dict(r.spec).setup.hash == self.setup.hash]


class Report(dict):
    """A run's report (docs/report-schema.md): a plain dict that shows as a short summary
    (accuracies next to the original and the oracle, the verdict) in a notebook."""

    def summary(self) -> str:
        from .cli import accuracy_table
        verdict = self.get("layers", {}).get("verdict", {}).get("text", "")
        return f"{self['method']['title']}\n{accuracy_table(self)}\n{verdict}".rstrip()

    def _repr_markdown_(self) -> str:
        return f"```\n{self.summary()}\n```"


class LensRun:
    """A finished run in the store: its report, arrays, unlearned model and figures."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.id = store, run_id
        self.record = store.get(run_id)
        if self.record.status != "done":
            raise UserError(f"run {run_id} is {self.record.status}; only a finished run has a "
                            f"report")

    def __repr__(self) -> str:
        return f"LensRun({self.id!r}: {self.record.label})"

    def report(self) -> Report:
        return Report(self.record.report)

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        return self.store.load_arrays(self.id)

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(self.record.spec)

    def model(self) -> LensModel:
        """The unlearned model, rebuilt from the stored weights."""
        refs = train_references(self.spec.setup, self.store)
        return unlearned_model(self.store, self.id, refs.experiment)

    @property
    def figures(self) -> "RunFigures":
        return RunFigures(self.record.report, self.arrays, self.store, self.id)


class RunFigures:
    """The app's figures of one run (the same functions its pages draw)."""

    def __init__(self, report: dict, arrays: dict[str, np.ndarray], store: RunStore,
                 run_id: str):
        self.report, self.arrays = report, arrays
        self._store, self._run_id = store, run_id

    def accuracy(self) -> go.Figure:
        return figures.accuracy_overview(self.report)

    def per_class(self) -> go.Figure:
        return figures.per_class_accuracy(self.report)

    def layers(self, parts: Sequence[str] = ("forget_train",), reference: str = "original",
               band: bool = True) -> go.Figure:
        """CKA per layer against `reference` ("original" or "oracle"), with the oracle's
        reference curve (the Layers page's first chart)."""
        return figures.cka_per_layer(self.report, tuple(parts), reference, band)

    def depth(self, part: str = "forget_train") -> go.Figure:
        return figures.forgetting_depth_bars(self.report, part)

    def probes(self) -> go.Figure | None:
        return figures.probe_accuracy_per_layer(self.report)

    def cka_matrix(self, pair: str = "unlearned_vs_original") -> go.Figure:
        return figures.cka_heatmap(self.report, pair)

    def privacy(self) -> go.Figure:
        return figures.mia_efficacy_bars(self.report)

    def scores(self, feature: str = "confidence") -> go.Figure:
        return figures.score_histograms(self.arrays, array_keys.SCORE_ARRAY_NAMES[feature])

    def distinguishability(self, feature: str = "confidence",
                           threshold: float | None = None) -> go.Figure:
        return figures.distinguishability_curve(self.arrays, feature, threshold)

    def embeddings(self, layer: str | None = None, moves: bool = False) -> go.Figure:
        """The joint PCA of original | unlearned | oracle at `layer` (default: the deepest
        before the logits); a layer evaluate() did not map is fitted now (a second or two)
        and kept with the run."""
        layer = layer or figures.opening_layer(self.report["layers"]["names"])
        coords = embedding_of_run(self._store, self._run_id, layer, "pca", arrays=self.arrays)
        return figures.embedding_panels(self.report, {**self.arrays, **coords}, layer, "pca",
                                        moves)

    def localization(self) -> go.Figure:
        """Channel x layer criticality with the selected channels (DEL and localized
        runs only)."""
        if self.report["method"]["name"] not in localization_figures.LOCALIZED_METHODS:
            raise UserError(f"localization: only {sorted(localization_figures.LOCALIZED_METHODS)} "
                            f"runs select channels, not {self.report['method']['name']!r}")
        return localization_figures.criticality_heatmap(self.report, self.arrays)
