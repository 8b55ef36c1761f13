"""The report's types, docs/report-schema.md and the upgrade of reports stored before
schema_version, on a real run stored by older code (tests/data)."""

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from unlearn_core import array_keys, report_schema
from unlearn_core.runs import RunStore
from unlearn_core.vocabulary import ROLES

ROOT = Path(__file__).resolve().parents[2]
OLD_STORE = ROOT / "tests" / "data" / "store-report-schema-1"
SECTIONS = {"oracle": report_schema.OracleSection, "cost": report_schema.CostSection,
            "method": report_schema.MethodSection, "layers": report_schema.LayersSection,
            "mia": report_schema.MiaSection, "poison": report_schema.PoisonSection}


def documented_fields() -> dict[str, set[str]]:
    """The report.json block of docs/report-schema.md: top-level keys start a line, a
    section's fields are indented by two spaces."""
    text = (ROOT / "docs" / "report-schema.md").read_text()
    block = text.split("## report.json", 1)[1].split("```", 2)[1]
    fields: dict[str, set[str]] = {"": set()}
    section = ""
    for line in block.splitlines():
        top = re.match(r"([a-z_]+):", line)
        field = re.match(r"  ([a-z_]+):", line)
        if top:
            section = top.group(1)
            fields[""].add(section)
            fields.setdefault(section, set())
        elif field:
            fields[section].add(field.group(1))
    return fields


def test_the_documented_fields_are_the_typed_fields():
    documented = documented_fields()
    assert documented[""] == set(report_schema.Report.__annotations__)
    for section, typed in SECTIONS.items():
        assert documented[section] == set(typed.__annotations__), section


def test_the_doc_check_sees_a_field_missing_from_the_doc(monkeypatch):
    monkeypatch.setitem(report_schema.MiaSection.__annotations__, "new_field", int)
    with pytest.raises(AssertionError):
        test_the_documented_fields_are_the_typed_fields()


@pytest.fixture
def old_store(tmp_path) -> RunStore:
    """A copy of the store written by main at 07ef928 (report schema 1)."""
    shutil.copytree(OLD_STORE, tmp_path / "store")
    return RunStore(tmp_path / "store")


def _stored_report(store: RunStore) -> dict:
    (folder,) = (store.root / "runs").iterdir()
    return json.loads((folder / "report.json").read_text())


def test_a_version_1_report_is_upgraded_from_its_stored_numbers(old_store):
    stored = _stored_report(old_store)
    assert "schema_version" not in stored and "average_gap" not in stored
    (record,) = old_store.list(kind="unlearn", status="done")
    report = record.report
    assert report["schema_version"] == report_schema.SCHEMA_VERSION == 2
    accuracy, efficacy = stored["accuracy"], stored["mia"]["efficacy"]
    for role in ("unlearned", "original"):
        gaps = [abs(accuracy[role][k] - accuracy["oracle"][k])
                for k in ("forget_train", "retain_train", "test")]
        gaps.append(abs(efficacy[role]["confidence"] - efficacy["oracle"]["confidence"]))
        assert report["average_gap"][role] == pytest.approx(np.mean(gaps))
    assert report["mia"]["gap_to_oracle"] == pytest.approx(
        {attack: efficacy["unlearned"][attack] - efficacy["oracle"][attack]
         for attack in efficacy["unlearned"]})
    # Everything else as stored, and the file on disk untouched.
    assert {k: v for k, v in report.items() if k not in ("schema_version", "average_gap", "mia")} \
        == {k: v for k, v in stored.items() if k != "mia"}
    assert _stored_report(old_store) == stored


def test_a_current_report_is_read_as_stored():
    report = {"schema_version": 2, "accuracy": {}, "average_gap": {"unlearned": 0.5}}
    assert report_schema.upgrade(copy.deepcopy(report), "r") == report


def test_a_report_from_a_newer_version_marks_the_run_damaged_saying_what_to_do(old_store):
    (folder,) = (old_store.root / "runs").iterdir()
    report = _stored_report(old_store)
    (folder / "report.json").write_text(json.dumps({**report, "schema_version": 3}))
    (record,) = old_store.list(kind="unlearn")
    assert record.status == "damaged" and record.report is None
    assert "schema_version 3" in record.damage and "update Unlearning Lens" in record.damage


def eval_keys(report: dict, arrays, mapped: list[str] | None = None) -> set[str]:
    """Every eval/ key a non-poison run's arrays hold, built by array_keys from the report;
    `mapped`: the layers with a stored PCA (every layer in runs stored before 2026-12-04)."""
    names = report["layers"]["names"]
    mapped = names if mapped is None else mapped
    keys = {array_keys.PROBE_INDEX, array_keys.PROBE_PART, array_keys.PROBE_LABEL,
            array_keys.FORGET_INDEX}
    for role in ROLES:
        keys |= {array_keys.pred(role), array_keys.mia_score(role), array_keys.forget_pred(role)}
        keys |= {array_keys.score(feature, role, set_name)
                 for feature in array_keys.SCORE_ARRAY_NAMES.values()
                 for set_name in array_keys.SCORE_SETS}
        keys |= {array_keys.embedding("pca", layer, role) for layer in mapped}
    keys |= {array_keys.embedding_variance("pca", layer) for layer in mapped}
    keys |= {array_keys.distinguishability(feature, curve)
             for feature, scores in report["mia"]["distinguishability"].items()
             if scores["epsilon"] is not None
             for curve in array_keys.DISTINGUISHABILITY_CURVES}
    return keys


def test_array_keys_name_every_array_of_a_stored_run(old_store):
    (record,) = old_store.list(kind="unlearn", status="done")
    arrays = old_store.load_arrays(record.id)
    stored = {k for k in arrays if k.startswith(array_keys.PREFIX)}
    assert stored == eval_keys(record.report, arrays)


@pytest.mark.slow
def test_evaluate_stores_the_version_the_gaps_and_only_named_arrays(shared_store, tiny_refs):
    from conftest import tiny_setup
    from unlearn_core.config import MethodSpec, RunSpec
    from unlearn_core.pipeline import run_unlearning
    run_id = run_unlearning(RunSpec(tiny_setup(), MethodSpec("finetune", {"epochs": 1})),
                            shared_store)
    (folder_report,) = [json.loads((shared_store.run_dir(run_id) / "report.json").read_text())]
    assert folder_report["schema_version"] == report_schema.SCHEMA_VERSION
    efficacy = folder_report["mia"]["efficacy"]
    assert folder_report["mia"]["gap_to_oracle"] == pytest.approx(
        {attack: efficacy["unlearned"][attack] - efficacy["oracle"][attack]
         for attack in efficacy["unlearned"]})
    for role in ("unlearned", "original"):
        assert folder_report["average_gap"][role] == pytest.approx(
            report_schema.average_gap(folder_report, role))
        assert folder_report["average_gap"][role] > 0
    arrays = shared_store.load_arrays(run_id)
    from unlearn_core.metrics.report import pca_at_evaluation
    assert {k for k in arrays if k.startswith(array_keys.PREFIX)} == eval_keys(
        folder_report, arrays, pca_at_evaluation(folder_report["layers"]["names"]))
