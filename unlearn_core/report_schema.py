"""The run report's types, its schema version and the upgrade of older reports.

`metrics.report.evaluate` writes a `Report` and `pipeline.compute_run` completes it;
docs/report-schema.md describes every field (tests/unit/test_report_schema.py holds the
two to the same field names). A stored report is read through `upgrade` in one place
(`runs.RunStore`), so every page, figure, export and benchmark sees the current schema.

Version history:
  1  no `schema_version` field (every report stored before issue 20)
  2  `schema_version`; `average_gap` (SalUn's average gap of the unlearned model and of
     the original); `mia.gap_to_oracle` (per attack, unlearned minus oracle). Both are
     derived from numbers version 1 already stored, so a version-1 report is upgraded
     in memory by computing them.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypedDict

from .errors import UserError
from .vocabulary import ORACLE, ORIGINAL, ROLES, UNLEARNED

SCHEMA_VERSION = 2
# A report without the field was stored before versions existed.
UNVERSIONED = 1

Fraction = float | None  # a share in [0, 1]; None where it does not exist for a setup
Role = Literal["unlearned", "original", "oracle"]


class RoleAccuracy(TypedDict):
    forget_train: Fraction
    retain_train: Fraction
    test_forget: Fraction
    test_retain: Fraction
    test: Fraction
    per_class_test: list[Fraction]


class OracleSection(TypedDict):
    init: str
    seed: int
    key: str | None


class CostSection(TypedDict, total=False):
    seconds: float
    oracle_seconds: float | None
    speedup: float | None
    device: str
    torch_threads: int
    evaluate_seconds: float
    evaluate_parts: dict[str, float]
    ran_elsewhere: bool


class MethodSection(TypedDict):
    name: str
    title: str
    params: dict[str, Any]
    info: dict[str, Any]
    curves: dict[str, list[float]]


class Verdict(TypedDict):
    kind: str
    text: str
    mean_depth: float | None


class LayersSection(TypedDict, total=False):
    names: list[str]
    parts: list[str]
    probe_sizes: dict[str, int]
    cka: dict[str, dict[str, list[float | None]]]
    cka_band: dict[str, dict[str, dict[str, list[float | None]]]]
    depth: dict[str, list[float | None]]
    depth_floor: float
    cka_excess: dict[str, dict[str, list[float | None]]]
    cka_matrix: dict[str, Any]
    seed_noise: dict[str, list[float | None]]
    probe_layers: list[str]
    probes: dict[str, list[Fraction]] | None
    probes_retain: dict[str, list[Fraction]] | None
    head_refit: dict[str, Any] | None
    verdict: Verdict
    not_estimable: dict[str, str]


class MiaSection(TypedDict):
    efficacy: dict[str, dict[str, Fraction]]
    gap_to_oracle: dict[str, float | None]
    headline: str
    distinguishability: dict[str, dict[str, float | None]]
    features: list[str]
    n_members: int
    n_nonmembers: int
    n_forget: int
    not_estimable: dict[str, str]


class PoisonSection(TypedDict, total=False):
    attack: Literal["backdoor", "gaussian"]
    spec: dict[str, Any]
    # backdoor
    target: int
    n_triggered: int
    n_probe_retain: int
    n_probe_poisoned: int
    n_probe_triggered: int
    asr: dict[str, Fraction]
    base_rate: dict[str, Fraction]
    readout_layers: list[str]
    readout: dict[str, list[Fraction]]
    head_refit_layer: str
    asr_head_refit: dict[str, Fraction]
    cka_triggered: dict[str, Any]
    # gaussian
    n_scored: int
    imprint: dict[str, float]
    imprint_se: dict[str, float | None]
    verdict: dict[str, Any]


class AverageGap(TypedDict):
    unlearned: float | None
    original: float | None


class Report(TypedDict, total=False):
    schema_version: int
    oracle: OracleSection
    accuracy: dict[str, RoleAccuracy]
    gap_to_oracle: dict[str, float | None]
    average_gap: AverageGap
    cost: CostSection
    split: dict[str, int]
    classes: list[str]
    forget_classes: list[int]
    method: MethodSection  # added by pipeline.compute_run
    run_spec_hash: str  # added by pipeline.compute_run
    layers: LayersSection
    mia: MiaSection
    poison: PoisonSection  # forget kind "poison" only
    not_estimable: dict[str, str]


# The accuracies whose |gap| to the oracle SalUn's average gap averages, with MIA efficacy.
AVERAGE_GAP_KEYS = ("forget_train", "retain_train", "test")
# The MIA feature SalUn's average gap uses.
AVERAGE_GAP_ATTACK = "confidence"


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def average_gap(report: Mapping, role: str = UNLEARNED) -> float | None:
    """SalUn's average gap: the mean |role − oracle| over forget, retain and test accuracy
    and MIA efficacy (confidence), from the report's accuracy and mia sections; None where
    one of them is not known."""
    accuracy, efficacy = report["accuracy"], report["mia"]["efficacy"]
    pairs = [(accuracy[role][k], accuracy[ORACLE][k]) for k in AVERAGE_GAP_KEYS]
    pairs.append((efficacy[role][AVERAGE_GAP_ATTACK], efficacy[ORACLE][AVERAGE_GAP_ATTACK]))
    gaps = [_difference(a, b) for a, b in pairs]
    return None if None in gaps else sum(abs(g) for g in gaps) / len(gaps)


def average_gaps(report: Mapping) -> AverageGap:
    """The report's `average_gap`: of the unlearned model and of the original."""
    return {"unlearned": average_gap(report, UNLEARNED), "original": average_gap(report, ORIGINAL)}


def mia_gaps_to_oracle(efficacy: Mapping) -> dict[str, float | None]:
    """The report's `mia.gap_to_oracle`: unlearned minus oracle efficacy per attack."""
    return {attack: _difference(value, efficacy[ORACLE][attack])
            for attack, value in efficacy[UNLEARNED].items()}


def schema_version(report: Mapping) -> int:
    return report.get("schema_version", UNVERSIONED)


def _evaluated(report: Mapping) -> bool:
    """Whether `report` holds the numbers of an evaluated run that version 2 derives from."""
    try:
        return all(role in report["accuracy"] and role in report["mia"]["efficacy"]
                   for role in ROLES)
    except (KeyError, TypeError):
        return False


def upgrade(report: dict, run_id: str) -> Report:
    """`report` at the current SCHEMA_VERSION: a version-1 report gets the fields version 2
    added, computed from the numbers it stores (a copy; the stored file is left as it is).
    A report from a newer version than this code knows is refused with what to do. A
    report that is not an evaluated run's (the store keeps any JSON object) is returned
    as it is."""
    version = schema_version(report)
    if not isinstance(version, int):
        raise UserError(f"run {run_id}: its report's schema_version {version!r} is not a "
                        "version number; the report was edited by hand or is damaged")
    if version > SCHEMA_VERSION:
        raise UserError(f"run {run_id}: its report has schema_version {version!r}, newer than "
                        f"this code reads ({SCHEMA_VERSION}); update Unlearning Lens to open it")
    if version == SCHEMA_VERSION or not _evaluated(report):
        return report  # type: ignore[return-value]
    return {**report, "schema_version": SCHEMA_VERSION,  # type: ignore[typeddict-item]
            "average_gap": average_gaps(report),
            "mia": {**report["mia"], "gap_to_oracle": mia_gaps_to_oracle(report["mia"]["efficacy"])}}
