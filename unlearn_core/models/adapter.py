"""Bring your own model: the adapter from any `nn.Module` classifier to a LensModel.

`load_entry_point` (from `unlearn_core.entry_points`) is re-exported here: the notebook
API loads a user's model builder and method with it.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import fx, nn

from ..entry_points import entry_point_source_hash, load_entry_point, one_line  # noqa: F401 (re-exported)
from ..errors import UserError
from .base import LOGITS, LensModel

# ---------------------------------------------------------------------------------------
# The adapter: any nn.Module classifier -> a LensModel, a true chain of stages.
#
# The module is traced with torch.fx, the probe layers (and the head) kept as single
# calls. A probe layer can end a stage only where its output is all the rest of the
# network needs (no residual branch, no earlier value used later): then the graph is cut
# there and each stage is the exact piece of the original forward, so `forward_from`
# (LAU, Boundary) and per-stage parameters (EC, DEL's reset) are the original's own.

EMBEDDING = "embedding"
# How far below the top level the default probe layers are looked for.
_DEFAULT_PROBE_DEPTH = 3
# Enough stages for a layer curve; fewer at one level sends the search a level deeper.
_MIN_DEFAULT_PROBES = 3


class _LeafTracer(fx.Tracer):
    """fx's tracer, keeping the named modules, and every nn.Linear (also a library's
    subclass, as timm's), as single calls."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (qualified_name in self.leaves or isinstance(module, nn.Linear)
                or super().is_leaf_module(module, qualified_name))


def _trace(module: nn.Module, leaves: set[str]) -> fx.Graph:
    try:
        return _LeafTracer(leaves).trace(module)
    except Exception as exc:  # fx raises many types for an untraceable forward
        raise UserError(
            f"model: cannot split {type(module).__name__} into stages: torch.fx could not "
            f"trace its forward ({type(exc).__name__}: {one_line(exc)}); the lens needs a "
            f"forward without Python branches on tensor values") from None


class _Cuts:
    """Where a traced graph can be cut: after node n when no value computed before n
    (other than parameters and buffers, which any stage can fetch) is used after it."""

    def __init__(self, graph: fx.Graph):
        self.nodes = [n for n in graph.nodes if n.op != "output"]
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.output = next(n for n in graph.nodes if n.op == "output")
        last_use = [max((self.index.get(u, len(self.nodes)) for u in n.users), default=i)
                    if n.op != "get_attr" else i for i, n in enumerate(self.nodes)]
        # reach[i]: the latest use of any value made before node i.
        self.reach, latest = [], -1
        for i in range(len(self.nodes)):
            self.reach.append(latest)
            latest = max(latest, last_use[i])

    def is_cut(self, node: fx.Node) -> bool:
        return self.reach[self.index[node]] <= self.index[node]

    def module_calls(self, name: str) -> list[fx.Node]:
        return [n for n in self.nodes if n.op == "call_module" and n.target == name]

    def blocker(self, node: fx.Node) -> str:
        """A value made before `node` and used after it: why it is not a cut."""
        i = self.index[node]
        for n in self.nodes[:i]:
            if n.op != "get_attr" and any(self.index.get(u, len(self.nodes)) > i for u in n.users):
                return n.name
        return "?"


def _stage(root: nn.Module, cuts: _Cuts, start: fx.Node | None, end: fx.Node,
           name: str) -> fx.GraphModule:
    """The piece of the graph after `start` (the input when None) up to `end`."""
    graph, env = fx.Graph(), {}
    first = 0 if start is None else cuts.index[start] + 1
    if start is not None:
        env[start] = graph.placeholder("x")

    def value(n: fx.Node) -> fx.Node:
        if n not in env:  # a parameter or buffer fetched before this stage: fetch it again
            env[n] = graph.node_copy(n, value)
        return env[n]

    for n in cuts.nodes[first:cuts.index[end] + 1]:
        env[n] = graph.node_copy(n, value)
    graph.output(env[end])
    return fx.GraphModule(root, graph, class_name=name)


def _stage_name(module_name: str) -> str:
    # Module names are dotted paths; a stage name may not hold a dot.
    return module_name.replace(".", "_")


def _without_inplace_ops(module: nn.Module) -> None:
    """A stage output is read after later stages ran: in-place activations there (as
    torchvision's ReLU(inplace=True)) would overwrite it."""
    for sub in module.modules():
        if isinstance(getattr(sub, "inplace", None), bool):
            sub.inplace = False


def _find_head(module: nn.Module, cuts: _Cuts, head: str | None) -> fx.Node:
    last = cuts.output.args[0]
    final = (last.op == "call_module" and isinstance(module.get_submodule(last.target), nn.Linear)
             if isinstance(last, fx.Node) else False)
    if head is not None:
        if not final or last.target != head:
            what = f"{last.target!r}" if isinstance(last, fx.Node) and last.op == "call_module" \
                else "another operation"
            raise UserError(f"head: {head!r} does not produce the model's output ({what} does); "
                            f"the head must be the nn.Linear whose output is the logits")
        return last
    if not final:
        raise UserError(
            f"head: the output of {type(module).__name__} is not an nn.Linear's output; the "
            f"lens needs the logits to come from a final nn.Linear classifier (a module that "
            f"is not a classifier, or one ending in another operation, cannot be adapted)")
    return last


def _default_probes(module: nn.Module, head: str) -> list[str]:
    """Modules with parameters that end a stage, at the shallowest depth giving at least
    a few (the top-level blocks of most networks; `features.0` ... for torchvision's
    MobileNet, whose blocks sit one level down)."""
    level, best = [name for name, _ in module.named_children()], []
    for _ in range(_DEFAULT_PROBE_DEPTH):
        candidates = [name for name in level
                      if name != head and not head.startswith(name + ".")
                      and any(True for _ in module.get_submodule(name).parameters())]
        cuts = _Cuts(_trace(module, set(candidates) | {head}))
        found = [name for name in candidates
                 if len(calls := cuts.module_calls(name)) == 1 and cuts.is_cut(calls[0])]
        if len(found) > len(best):
            best = found
        if len(best) >= _MIN_DEFAULT_PROBES:
            break
        level = [f"{name}.{child}" for name in level
                 for child, _ in module.get_submodule(name).named_children()]
    return best


def adapt_module(module: nn.Module, *, probe_layers: Sequence[str] | None = None,
                 head: str | None = None, sample: torch.Tensor | None = None) -> LensModel:
    """A LensModel made of `module` (a copy: the module itself is left as it is).

    `probe_layers`: dotted names of the modules whose outputs the lens reads, each the end
    of a stage (default: the top-level blocks with parameters that can end one). `head`:
    the nn.Linear classifier (default: the nn.Linear producing the output). Stages are
    named after the modules, dots made underscores; the stage feeding the head is
    "embedding" unless a probe layer already ends there. `sample`, a batch of inputs,
    checks that the stages compute exactly what the module does."""
    if not isinstance(module, nn.Module):
        raise UserError(f"model: expected a torch.nn.Module, got {type(module).__name__}")
    # Traced in train mode: a `self.training` branch is fixed at trace time, so training
    # keeps its behaviour and a differing eval branch shows in the `sample` check.
    module = copy.deepcopy(module).train()
    _without_inplace_ops(module)
    names = dict(module.named_modules())
    if head is not None and not isinstance(names.get(head), nn.Linear):
        found = "no such module" if head not in names else type(names[head]).__name__
        raise UserError(f"head: expected the name of the model's nn.Linear classifier, got "
                        f"{head!r} ({found}); its nn.Linear modules: "
                        f"{[n for n, m in names.items() if isinstance(m, nn.Linear)]}")
    if head is None:
        head = _find_head(module, _Cuts(_trace(module, set())), None).target
    if probe_layers is None:
        probe_layers = _default_probes(module, head)
    elif isinstance(probe_layers, str) or not all(isinstance(p, str) for p in probe_layers):
        raise UserError(f"probe_layers: expected a list of module names, got {probe_layers!r}")
    probe_layers = list(probe_layers)
    _check_probe_names(probe_layers, names, head)
    cuts = _Cuts(_trace(module, set(probe_layers) | {head}))
    head_node = _find_head(module, cuts, head)
    ends = _probe_nodes(cuts, probe_layers)
    embedding = head_node.args[0]
    if not (isinstance(embedding, fx.Node) and len(head_node.args) == 1 and not head_node.kwargs
            and cuts.is_cut(embedding)):
        raise UserError(f"head: the input of {head!r} is not a single value the rest of the "
                        f"network hands over; cannot split the classifier off")
    if ends and cuts.index[ends[-1][1]] > cuts.index[embedding]:
        raise UserError(f"probe_layers: {ends[-1][0]!r} runs after the head's input is made; "
                        f"probe layers must come before the classifier {head!r}")
    if not ends or ends[-1][1] is not embedding:
        ends.append((EMBEDDING, embedding))
    stages, start = [], None
    for name, end in ends:
        stage_name = name if name == EMBEDDING else _stage_name(name)
        stages.append((stage_name, _stage(module, cuts, start, end, stage_name)))
        start = end
    stages.append((LOGITS, module.get_submodule(head)))
    if len({n for n, _ in stages}) != len(stages):
        raise UserError(f"probe_layers: two layers get the same stage name "
                        f"{[n for n, _ in stages]}; dots become underscores")
    lens = LensModel(stages)
    if sample is not None:
        _check_exact(module, lens, sample)
    return lens


def _check_probe_names(probe_layers: list[str], names: dict[str, nn.Module], head: str) -> None:
    if len(set(probe_layers)) != len(probe_layers):
        raise UserError(f"probe_layers: a layer is listed twice: {probe_layers}")
    for name in probe_layers:
        if name not in names or name == "":
            top = [n for n, _ in names[""].named_children()]
            raise UserError(f"probe_layers: the model has no module {name!r}; its top-level "
                            f"modules: {top} (name deeper ones with dots, e.g. 'features.3')")
        if name == head or head.startswith(name + "."):
            raise UserError(f"probe_layers: {name!r} is (or holds) the classifier {head!r}; "
                            f"probe layers come before it")


def _probe_nodes(cuts: _Cuts, probe_layers: list[str]) -> list[tuple[str, fx.Node]]:
    ends = []
    for name in probe_layers:
        calls = cuts.module_calls(name)
        if len(calls) != 1:
            raise UserError(f"probe_layers: {name!r} runs {len(calls)} times in the forward "
                            f"pass; a probe layer must run exactly once")
        if not cuts.is_cut(calls[0]):
            raise UserError(
                f"probe_layers: cannot split the model after {name!r}: a value computed "
                f"before it ({cuts.blocker(calls[0])}) is still used after it, as in a "
                f"residual connection around it; choose a module that ends a whole block")
        ends.append((name, calls[0]))
    return sorted(ends, key=lambda item: cuts.index[item[1]])


def _check_exact(module: nn.Module, lens: LensModel, sample: torch.Tensor) -> None:
    """The stages compute what the module computes (in eval mode, on copies: a forward
    in train mode would move batch-norm statistics)."""
    reference, adapted = copy.deepcopy(module).eval(), copy.deepcopy(lens).eval()
    with torch.no_grad():
        expected, got = reference(sample), adapted(sample)
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
        raise UserError(f"model: the stages of {type(module).__name__} do not compute what its "
                        f"forward does (a branch fixed when it was traced?); cannot adapt it")
