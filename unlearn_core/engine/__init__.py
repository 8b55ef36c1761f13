"""The experiment engine: a method over a grid of hyperparameters and over setup seeds,
run, grouped and tabulated. Everything that runs a batch of runs goes through it: the
`sweep` command and the Sweeps page, every `bench` suite, the Tour, the Localization
page's budget sweep.

* `grid`: grids of hyperparameters, typed and range-checked by each method's `Param`s.
* `runner`: `run_cells`, every method spec on every (scenario, seed, setup) cell, reusing
  what the store has, locally or as Ray tasks (`ray_executor`; the driver owns the store).
* `stats`: mean, sample std and Student-t intervals over seeds.
* `tables`: runs grouped by setting over seeds, ranked, written as records or markdown.
* `sweep_config`: the sweep TOML, its size estimate, and `run_sweep`.
"""

from .grid import grid_from_values, grid_specs, method_label, parse_grid
from .runner import (Cell, Log, ReferenceCosts, RunResult, run_cells, run_on_setup,
                     stored_results)
from .stats import CONFIDENCE, format_interval, format_stat, stat
from .sweep_config import (CONFIG_KEYS, CONFIRM_ABOVE_RUNS, MAX_SEEDS, SweepConfig,
                           describe_config, estimate, load_config, run_sweep)
from .tables import LEGEND, markdown_table, role_metrics, run_summary, table_records, tabulate

__all__ = ["CONFIDENCE", "CONFIG_KEYS", "CONFIRM_ABOVE_RUNS", "Cell", "LEGEND", "Log",
           "MAX_SEEDS", "ReferenceCosts", "RunResult", "SweepConfig", "describe_config",
           "estimate", "format_interval", "format_stat", "grid_from_values", "grid_specs",
           "load_config", "markdown_table", "method_label", "parse_grid", "role_metrics",
           "run_cells", "run_on_setup", "run_summary", "run_sweep", "stat", "stored_results", "table_records",
           "tabulate"]
