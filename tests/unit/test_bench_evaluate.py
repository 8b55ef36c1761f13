"""The evaluate bench (issue 22): bad input named, and its table reports the medians of
what it measured."""

import pytest

from unlearn_core.bench_evaluate import _markdown
from unlearn_core.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--suite", "evaluate", "--runs", "0"], "--runs: expected an integer >= 1, got 0"),
    (["--suite", "quick", "--runs", "3"], "--runs: not an option of --suite quick"),
])
def test_bad_evaluate_bench_options_exit_2(argv, message, tmp_path, capsys):
    code = main(["bench", *argv, "--store", str(tmp_path / "s")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_the_table_gives_median_min_max_and_per_part_medians():
    parts = [{"cka": 1.0, "probes": 2.0}, {"cka": 3.0, "probes": 1.0},
             {"cka": 2.0, "probes": 5.0}]
    measured = {"later runs": {"totals": [sum(p.values()) for p in parts], "parts": parts}}
    lines = _markdown(measured)
    assert lines[0] == "| state | median s | min s | max s | cka s | probes s |"
    assert lines[2] == "| later runs | 4.00 | 3.00 | 7.00 | 2.00 | 2.00 |"
