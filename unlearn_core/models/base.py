"""The model shape every view relies on: a chain of named stages.

A `LensModel` is a sequence of stages; the output of each stage is a probe layer (the
points where activations are read for CKA, probes, EC heads and the LAU split), and
the last stage is the linear classifier whose output is "logits". Running the stages
explicitly, rather than through forward hooks, avoids two classic traps: in-place
ReLUs overwriting a hooked output and a shared ReLU firing twice per forward.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ..errors import UserError

LOGITS = "logits"


class LensModel(nn.Module):
    def __init__(self, stages: Sequence[tuple[str, nn.Module]]):
        super().__init__()
        names = [name for name, _ in stages]
        if not names or names[-1] != LOGITS or len(set(names)) != len(names):
            raise ValueError(f"stages must have unique names and end with {LOGITS!r}: {names}")
        self.stages = nn.ModuleDict(stages)
        if not isinstance(self.stages[LOGITS], nn.Linear):
            raise ValueError("the last stage must be the nn.Linear classifier")

    @property
    def probe_layers(self) -> tuple[str, ...]:
        """Every named stage output, shallowest first, ending with "logits"."""
        return tuple(self.stages.keys())

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """Probe layers before the classifier."""
        return self.probe_layers[:-1]

    @property
    def classifier(self) -> nn.Linear:
        return self.stages[LOGITS]

    @property
    def embedding_dim(self) -> int:
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages.values():
            x = stage(x)
        return x

    def forward_features(self, x: torch.Tensor,
                         layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Outputs of the requested probe layers (all by default), computing only as
        deep as the deepest one requested."""
        wanted = set(self.probe_layers if layers is None else layers)
        self._check_layers(wanted)
        out: dict[str, torch.Tensor] = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out

    def forward_from(self, layer: str, h: torch.Tensor) -> torch.Tensor:
        """Logits from the output `h` of probe layer `layer` (the rest of the network)."""
        self._check_layers({layer})
        names = self.probe_layers
        for name in names[names.index(layer) + 1:]:
            h = self.stages[name](h)
        return h

    def stage_parameters(self, layer: str) -> list[nn.Parameter]:
        self._check_layers({layer})
        return list(self.stages[layer].parameters())

    def _check_layers(self, layers: Iterable[str]) -> None:
        unknown = sorted(set(layers) - set(self.probe_layers))
        if unknown:
            raise UserError(f"layer: unknown probe layer(s) {unknown}; "
                            f"this model has {list(self.probe_layers)}")


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 4)."""
    return max(4, int(round(channels * width)))
