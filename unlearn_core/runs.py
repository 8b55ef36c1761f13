"""The run store: what was run, with what, and what came out.

Layout under the root folder:

    index.sqlite          one row per run: id, kind, status, label, times, spec, error,
                          and for a finished run its summary (run_summary of its report),
                          the stored files' sizes and times, method, dataset, model and
                          setup key: what run lists, filters and pages read
    runs/<run_id>/        spec.json, report.json, run.json, weights.safetensors, artifacts.npz
    cache/<key>/          weights.safetensors, meta.json (originals, oracles by content hash)

A run folder appears only complete: it is written as `runs/.tmp-<id>/` and renamed into
place before its row is marked "done". So a crash leaves either no folder and a
"running" row (which `recover` marks "interrupted") or a complete folder. Failed and
cancelled runs keep their row and error but no folder.

SQLite runs in WAL mode with a busy timeout and a fresh connection per call, because the
store is used from the Streamlit script thread and the job thread at once, and two
processes may open the same root.

The run folders are the source of truth; the index can be rebuilt from them with
`RunStore.repair` (`python -m unlearn_core runs repair`): run.json holds the row's kind,
label and times and the list of files the run was stored with. A run whose folder is
incomplete or unreadable is listed with status "damaged" and the reason, never an error
that hides the other runs. A damaged cache entry is set aside (`cache/.damaged-*`) and
the model trained again.

JSON: spec and report go through `io.to_json_safe`; non-finite floats are stored as null
(an undefined metric should not fail a finished run), numpy scalars become numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import io, report_schema
from .errors import UserError

if TYPE_CHECKING:  # the store itself needs no torch (see io)
    import torch

STORE_ENV_VAR = "LENS_STORE"
STATUSES = ("running", "done", "failed", "cancelled")
INTERRUPTED = "interrupted"

SPEC_FILE = "spec.json"
REPORT_FILE = "report.json"
WEIGHTS_FILE = "weights.safetensors"
ARRAYS_FILE = "artifacts.npz"
META_FILE = "meta.json"
# Beside the checkpoints: values computed from the reference models (evaluation parts).
PARTS_DIR = "evaluation-parts"
RUN_FILE = "run.json"  # kind, label, times and stored files: what `repair` rebuilds from
DAMAGED = "damaged"  # a pseudo-status: "done" in the index, but its folder is unusable
DAMAGED_PREFIX = ".damaged-"
REPAIR_COMMAND = "python -m unlearn_core runs repair"
DERIVED_DIR = "derived"  # results computed later from a finished run (e.g. a UMAP)
TEMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"

_BUSY_TIMEOUT_S = 30.0
# A run id or cache key: one folder name that cannot climb out of its parent.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
# A pid alone cannot tell this process from an earlier one that had the same pid (a
# container restarting with pid 1); this token, drawn once per process, can.
_PROCESS_TOKEN = secrets.token_hex(8)

# What the run lists need, kept in the index so listing and filtering never read a run
# folder: created with the table, added to indexes made before them (ALTER TABLE) and
# back-filled once from report.json. `files` maps each stored file to its (size,
# mtime_ns) at store time, so a listing finds a damaged run from the files' metadata and
# reads a file only when it changed.
_SUMMARY_COLUMNS = {"summary": "TEXT", "files": "TEXT", "method": "TEXT", "dataset": "TEXT",
                    "model": "TEXT", "setup_key": "TEXT"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    spec TEXT NOT NULL,
    error TEXT,
    pid INTEGER NOT NULL,
    pid_started TEXT,
    owner TEXT NOT NULL,
    {", ".join(f"{name} {sql_type}" for name, sql_type in _SUMMARY_COLUMNS.items())}
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created);
"""
_SUMMARY_INDEXES = """
CREATE INDEX IF NOT EXISTS runs_by_kind_status ON runs (kind, status, created);
CREATE INDEX IF NOT EXISTS runs_by_setup ON runs (setup_key, created);
"""
ORDERS = {"newest": "created DESC, id DESC", "oldest": "created ASC, id ASC"}


def default_store_root() -> Path:
    """$LENS_STORE, else ~/.unlearning-lens/store. Never the file-system root or the
    working directory by accident: an empty or relative HOME is refused by name."""
    configured = os.environ.get(STORE_ENV_VAR, "").strip()
    if configured:
        return checked_store_path(configured, STORE_ENV_VAR)
    home = os.environ.get("HOME", "").strip()
    if not home:
        try:
            home = str(Path.home())
        except (RuntimeError, KeyError):
            home = ""
    if not home or not os.path.isabs(home) or Path(home).resolve() == Path("/"):
        raise UserError(f"HOME: the default run store lives under the home directory, but "
                        f"HOME is {home or 'empty'!r}; set HOME or choose the store with "
                        f"{STORE_ENV_VAR} or --store")
    return Path(home) / ".unlearning-lens" / "store"


def checked_store_path(value, name: str = "--store") -> Path:
    """A store location from the user: not empty, not the file-system root, with `~`
    only when a home directory is known."""
    from .validate import user_path
    path = user_path(value, name)
    if path.resolve() == Path(path.resolve().anchor):
        raise UserError(f"{name}: the run store cannot be the file-system root "
                        f"{str(path)!r}; choose a folder of its own")
    return path


@dataclass(frozen=True, eq=False)
class RunRecord:
    """One stored run. `summary` (run_summary of its report) comes from the index; the
    report itself is read from report.json the first time `.report` is used, so lists of
    runs cost no file reads. A report found unreadable then raises a UserError naming
    the run's damage."""
    id: str
    kind: str
    status: str
    label: str
    created: float
    finished: float | None
    spec: dict
    error: str | None
    path: Path
    damage: str | None = None  # why a stored run cannot be used (status "damaged")
    summary: dict | None = None
    _loaded_report: dict | None = field(default=None, repr=False)

    @property
    def report(self) -> dict | None:
        """The stored report of a finished run (None for other statuses), read once."""
        if self._loaded_report is None and self.status == "done":
            report, reason = _stored_report(self.path)
            if reason is not None:
                raise UserError(f"run {self.id} is damaged: {reason}; delete it on the "
                                f"Compare page or with `python -m unlearn_core runs delete`")
            object.__setattr__(self, "_loaded_report", report)
        return self._loaded_report


def _lookup(mapping, *keys):
    """mapping[k1][k2]..., or None where a level is missing: summaries are made from
    reports of every age, and a report lacks the sections added after it was stored."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def setup_key(spec: Mapping) -> str | None:
    """Equal for runs whose spec has the same setup, i.e. that share an original and an
    oracle; None for a spec without a setup."""
    from .config import content_hash
    setup = spec.get("setup")
    return content_hash(setup) if isinstance(setup, Mapping) else None


# Raised when run_summary gains or changes a field: summaries of another version are
# made again from report.json when a store is opened.
SUMMARY_VERSION = 2  # 2: made from reports upgraded to the current report schema


def run_summary(spec: Mapping, report: Mapping) -> dict:
    """What the run lists and Compare show of a finished run, from its spec and report:
    setup, method, the unlearned model's headline numbers, the verdict and the cost. A
    value the report does not hold is None."""
    from .config import ForgetSpec
    setup = spec.get("setup") if isinstance(spec.get("setup"), Mapping) else {}
    try:
        forget = ForgetSpec.from_dict(setup["forget"]).describe()
    except (KeyError, TypeError, ValueError, UserError):
        forget = None
    accuracy = report.get("accuracy")
    poison = report.get("poison") if _lookup(report, "poison", "asr") is not None else None
    verdict = _lookup(report, "layers", "verdict")
    return {
        "version": SUMMARY_VERSION,
        "method": _lookup(report, "method", "title"),
        "params": _lookup(report, "method", "params") or {},
        "dataset": _lookup(setup, "data", "name"),
        "model": _lookup(setup, "model", "name"),
        "forget_set": forget,
        "seed": setup.get("seed"),
        "forget_acc": _lookup(accuracy, "unlearned", "forget_train"),
        "retain_acc": _lookup(accuracy, "unlearned", "retain_train"),
        "test_acc": _lookup(accuracy, "unlearned", "test"),
        "mia": _lookup(report, "mia", "efficacy", "unlearned", "confidence"),
        "avg_gap": _lookup(report, "average_gap", "unlearned"),
        "original_avg_gap": _lookup(report, "average_gap", "original"),
        "mean_depth": _lookup(verdict, "mean_depth"),
        "verdict": _lookup(verdict, "kind"),
        "seconds": _lookup(report, "cost", "seconds"),
        "speedup": _lookup(report, "cost", "speedup"),
        "oracle_seconds": _lookup(report, "cost", "oracle_seconds"),
        "device": _lookup(report, "cost", "device"),
        "oracle_test_acc": _lookup(accuracy, "oracle", "test"),
        "original_test_acc": _lookup(accuracy, "original", "test"),
        # Backdoor runs only (a Gaussian poisoning has no trigger, so no attack success).
        "asr": _lookup(poison, "asr", "unlearned"),
        "asr_head_refit": _lookup(poison, "asr_head_refit", "unlearned"),
        "backdoor": _lookup(poison, "verdict", "kind"),
        "oracle_asr": _lookup(poison, "asr", "oracle"),
        "original_asr": _lookup(poison, "asr", "original"),
        # Which views the run has (a report stored before a section existed lacks it).
        "sections": sorted(report),
    }


def _process_start_time(pid: int) -> str | None:
    """When `pid` started, from /proc on Linux; None elsewhere or if it is gone. Tells a
    live process from an unrelated one that reused a dead run's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    return True


def _owner_alive(pid: int, pid_started: str | None, owner: str) -> bool:
    if pid == os.getpid():
        return owner == _PROCESS_TOKEN
    if not _pid_alive(pid):
        return False
    current_start = _process_start_time(pid)
    return pid_started is None or current_start is None or current_start == pid_started


_last_id_ms = 0
_id_lock = threading.Lock()


def _new_run_id() -> str:
    """UTC time to the millisecond, then a random suffix: ids sort by creation time and
    two runs started in the same millisecond still differ. Within a process the
    millisecond is made strictly increasing, so runs created one after the other sort in
    that order even inside one millisecond (the suffix alone would order them at random)."""
    global _last_id_ms
    with _id_lock:
        _last_id_ms = max(int(time.time() * 1000), _last_id_ms + 1)
        ms = _last_id_ms
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ms / 1000))
    return f"{stamp}-{ms % 1000:03d}-{secrets.token_hex(3)}"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _damaged_index_message(db_path: Path, error: Exception) -> str:
    return (f"run store {db_path}: the index is damaged ({error}); the runs are still in "
            f"their folders: `{REPAIR_COMMAND}` (with the same --store) rebuilds the index "
            "from them")


def _read_json_file(path: Path) -> tuple[object, str | None]:
    """(content, None), or (None, reason) for a missing, unreadable or invalid file."""
    try:
        return json.loads(path.read_bytes().decode("utf-8")), None
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        return None, f"{path.name} is unreadable ({type(error).__name__}: {str(error)[:80]})"


def _read_json_object(path: Path) -> tuple[dict | None, str | None]:
    """Like _read_json_file, for the files that hold one JSON object (spec, report)."""
    content, reason = _read_json_file(path)
    if reason is None and not isinstance(content, dict):
        return None, f"{path.name} does not hold a JSON object"
    return content, reason


def _stored_report(folder: Path) -> tuple[dict | None, str | None]:
    """(report, None) of a run folder, or (None, why it cannot be read): every read of a
    stored report (a record's `.report`, the summaries) goes through here."""
    report, reason = _read_json_object(folder / REPORT_FILE)
    if reason is not None:
        return None, reason
    try:
        return report_schema.upgrade(report, folder.name), None
    except UserError as exc:  # stored by a newer version: say what to do
        return None, str(exc)


def _file_stamps(folder: Path, names) -> dict[str, list[int]]:
    """name -> [size, mtime_ns] of each file: what a listing compares to find damage."""
    stamps = {}
    for name in names:
        stat = (folder / name).stat()
        stamps[name] = [stat.st_size, stat.st_mtime_ns]
    return stamps


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        # Resolved, so the app and the messages show the folder really written to.
        root = checked_store_path(root) if root is not None else default_store_root()
        self.root = root.resolve()
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self.db_path = self.root / "index.sqlite"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or error
            raise UserError(f"run store {self.root}: cannot create it ({reason}); "
                            f"choose a writable folder with {STORE_ENV_VAR}") from None
        for folder in (self.root, self.runs_dir, self.cache_dir):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UserError(f"run store {folder}: not writable; choose a writable "
                                f"folder with {STORE_ENV_VAR}")
        self._initialise_index()
        self.recover()
        self.backfill_summaries()

    def _initialise_index(self) -> None:
        """WAL mode and the schema. Switching the journal mode needs an exclusive lock
        and SQLite reports "locked" at once, without waiting, while another process or
        thread is creating the same index, so that case is retried until the timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(_SCHEMA)
                    # Under the write lock: two openers of an old index add each column once.
                    connection.execute("BEGIN IMMEDIATE")
                    present = {row["name"] for row in
                               connection.execute("PRAGMA table_info(runs)")}
                    for name, sql_type in _SUMMARY_COLUMNS.items():
                        if name not in present:
                            connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")
                    for statement in _SUMMARY_INDEXES.strip().splitlines():
                        connection.execute(statement)
                    connection.execute("COMMIT")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise UserError(f"run store {self.db_path}: cannot open the index "
                                    f"({error})") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as error:
                raise UserError(_damaged_index_message(self.db_path, error)) from None

    # --- SQLite ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S,
                                     isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            yield connection
        except sqlite3.DatabaseError as error:
            # "file is not a database", "database disk image is malformed": the runs
            # are still in their folders; say how to get them back. A lock timeout
            # (an OperationalError) is not damage.
            if isinstance(error, sqlite3.OperationalError) and "malformed" not in str(error):
                raise
            raise UserError(_damaged_index_message(self.db_path, error)) from None
        finally:
            connection.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front: a deferred one that
        upgrades later can fail at once with "database is locked" instead of waiting."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _row(self, run_id: str) -> sqlite3.Row:
        # Ids are folder names under runs/: one that could leave that folder ("../x")
        # is refused before any lookup, so no caller can turn an id into another path.
        if not isinstance(run_id, str) or not _FOLDER_NAME.fullmatch(run_id):
            raise UserError(f"run_id: expected a run id such as 20250101-120000-000-a1b2c3 "
                            f"(letters, digits, '_', '-', '.'), got {run_id!r}")
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(self._unknown_run_message(run_id))
        return row

    def _unknown_run_message(self, run_id: str) -> str:
        with self._connect() as connection:
            latest = [row["id"] for row in connection.execute(
                "SELECT id FROM runs ORDER BY created DESC, id DESC LIMIT 3")]
        hint = f"latest: {', '.join(latest)}" if latest else "the store has no runs yet"
        return (f"no run with id {run_id!r} in {self.root} ({hint}); RunStore.list() "
                "and the app's runs page show every id")

    # --- runs -----------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def _temp_dir(self, run_id: str) -> Path:
        return self.runs_dir / f"{TEMP_PREFIX}{run_id}"

    def create(self, kind: str, spec: dict, label: str = "") -> str:
        if not isinstance(kind, str) or not kind:
            raise UserError(f"kind: expected a non-empty string, got {kind!r}")
        spec_json = json.dumps(io.to_json_safe(spec, where="spec"), sort_keys=True,
                               allow_nan=False)
        run_id = _new_run_id()
        pid = os.getpid()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO runs (id, kind, status, label, created, finished, spec, error,"
                " pid, pid_started, owner) VALUES (?, ?, 'running', ?, ?, NULL, ?, NULL, ?, ?, ?)",
                (run_id, kind, label, time.time(), spec_json, pid,
                 _process_start_time(pid), _PROCESS_TOKEN))
        return run_id

    def finish(self, run_id: str, report: dict,
               weights: Mapping[str, torch.Tensor] | None = None,
               arrays: Mapping[str, np.ndarray] | None = None) -> RunRecord:
        row = self._row(run_id)
        if row["status"] != "running":
            raise UserError(f"run {run_id} is {row['status']}; only a running run can finish")
        temp = self._temp_dir(run_id)
        final = self.run_dir(run_id)
        _remove_tree(temp)
        try:
            temp.mkdir()
            io.write_json(temp / SPEC_FILE, json.loads(row["spec"]))
            io.write_json(temp / REPORT_FILE, report)
            files = [SPEC_FILE, REPORT_FILE]
            if weights is not None:
                io.save_state_dict(temp / WEIGHTS_FILE, weights)
                files.append(WEIGHTS_FILE)
            if arrays:
                io.save_arrays(temp / ARRAYS_FILE, arrays)
                files.append(ARRAYS_FILE)
            io.write_json(temp / RUN_FILE, {
                "id": run_id, "kind": row["kind"], "label": row["label"],
                "created": row["created"], "finished": time.time(), "files": files})
            io.fsync_dir(temp)
            os.replace(temp, final)
            io.fsync_dir(self.runs_dir)
        except BaseException:
            _remove_tree(temp)
            raise
        # Made from the report as every reader gets it (stored JSON, upgraded), so a
        # summary written here equals one back-filled later.
        stored, _ = _stored_report(final)
        columns = self._summary_columns(json.loads(row["spec"]), stored, final, files)
        with self._transaction() as connection:
            marked = connection.execute(
                "UPDATE runs SET status = 'done', finished = ?, summary = ?, files = ?, "
                "method = ?, dataset = ?, model = ?, setup_key = ? "
                "WHERE id = ? AND status = 'running'",
                (time.time(), *columns, run_id)).rowcount
        if not marked:
            # Deleted or failed meanwhile (another thread or process): the row wins.
            _remove_tree(final)
            raise UserError(f"run {run_id} changed while it was being saved; not stored")
        return self.get(run_id)

    def fail(self, run_id: str, error: str, *, cancelled: bool = False) -> None:
        row = self._row(run_id)
        if row["status"] != "running":
            raise UserError(f"run {run_id} is already {row['status']}")
        status = "cancelled" if cancelled else "failed"
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET status = ?, error = ?, finished = ? "
                "WHERE id = ? AND status = 'running'",
                (status, error, time.time(), run_id))
        # A failed run has no folder, also when finish() got as far as renaming it.
        _remove_tree(self._temp_dir(run_id))
        _remove_tree(self.run_dir(run_id))

    @staticmethod
    def _summary_columns(spec: dict, report: dict, folder: Path, files) -> tuple:
        """The index's summary, files, method, dataset, model and setup_key of a run."""
        summary = io.to_json_safe(run_summary(spec, report), where="summary")
        method = spec.get("method") if isinstance(spec.get("method"), dict) else {}
        return (json.dumps(summary, sort_keys=True),
                json.dumps(_file_stamps(folder, [SPEC_FILE, REPORT_FILE, *files])),
                method.get("name"), summary["dataset"], summary["model"], setup_key(spec))

    def _record(self, row: sqlite3.Row) -> RunRecord:
        path = self.run_dir(row["id"])
        damage = None
        try:
            spec = json.loads(row["spec"])
        except (ValueError, RecursionError):
            spec, damage = {}, "its spec in the index is unreadable"
        summary = json.loads(row["summary"]) if row["summary"] else None
        report = None
        if row["status"] == "done" and damage is None:
            if row["files"]:
                damage, changed = self._changed_files_damage(path, json.loads(row["files"]))
                if changed is not None:  # report.json rewritten since: summarise it again
                    report = changed
                    summary = self._summarise(row["id"], spec, report, path,
                                              json.loads(row["files"]))
            else:  # not summarised (damaged at the back-fill, or stored by older code
                # into a store this process has open): the full check, then its summary
                damage, report = self._damage(path, row["kind"])
                if damage is None:
                    summary = self._summarise(row["id"], spec, report, path,
                                              self._stored_files(path, row["kind"]))
        status = DAMAGED if damage is not None and row["status"] == "done" else row["status"]
        return RunRecord(id=row["id"], kind=row["kind"], status=status,
                         label=row["label"], created=row["created"], finished=row["finished"],
                         spec=spec, error=row["error"], path=path, damage=damage,
                         summary=summary, _loaded_report=report)

    @staticmethod
    def _changed_files_damage(path: Path, stamps: dict) -> tuple[str | None, dict | None]:
        """(why a summarised run's folder cannot be used or None, its report if
        report.json changed since the run was stored), from the files' sizes and times:
        spec and report are read only when they changed, so listing many runs reads
        none."""
        if not path.is_dir():
            return "its run folder is missing", None
        missing, changed_report = [], None
        for name, stamp in stamps.items():
            try:
                stat = (path / name).stat()
            except FileNotFoundError:
                missing.append(name)
                continue
            if name in (SPEC_FILE, REPORT_FILE) and [stat.st_size, stat.st_mtime_ns] != stamp:
                content, reason = (_stored_report(path) if name == REPORT_FILE
                                   else _read_json_object(path / name))
                if reason is not None:
                    return reason, None
                if name == REPORT_FILE:
                    changed_report = content
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing", None
        return None, changed_report

    @staticmethod
    def _damage(path: Path, kind: str) -> tuple[str | None, dict | None]:
        """(why a finished run's folder cannot be used or None, its report). Reads the
        small JSON files and checks that the stored files are there (a corrupt weights
        file is reported when it is loaded)."""
        if not path.is_dir():
            return "its run folder is missing", None
        _, reason = _read_json_object(path / SPEC_FILE)
        report, reason = (None, reason) if reason is not None else _stored_report(path)
        if reason is not None:
            return reason, None
        missing = [name for name in RunStore._stored_files(path, kind)
                   if not (path / name).is_file()]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing", None
        return None, report

    @staticmethod
    def _stored_files(path: Path, kind: str) -> list[str]:
        """The files besides spec and report a run was stored with, from its run.json."""
        manifest, _ = _read_json_file(path / RUN_FILE)
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, list):  # stored before run.json: unlearning runs had both
            files = [WEIGHTS_FILE, ARRAYS_FILE] if kind == "unlearn" else []
        return [name for name in files if isinstance(name, str) and _FOLDER_NAME.fullmatch(name)
                and name not in (SPEC_FILE, REPORT_FILE)]

    def backfill_summaries(self) -> int:
        """Give every finished run the index lacks a current summary for (stored before
        the index kept them or before SUMMARY_VERSION, or added by `repair`) its summary,
        from its report.json; a damaged run keeps none and is checked in full when
        listed. Returns how many were added."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT id, kind, spec FROM runs WHERE status = 'done' AND (summary IS NULL "
                "OR json_extract(summary, '$.version') IS NOT ?)", (SUMMARY_VERSION,)
            ).fetchall()
        added = 0
        for row in rows:
            path = self.run_dir(row["id"])
            damage, report = self._damage(path, row["kind"])
            if damage is not None:
                continue
            try:
                spec = json.loads(row["spec"])
            except (ValueError, RecursionError):
                continue
            self._summarise(row["id"], spec, report, path, self._stored_files(path, row["kind"]))
            added += 1
        return added

    def _summarise(self, run_id: str, spec: dict, report: dict, folder: Path, files) -> dict:
        """Write a finished run's summary columns from its report; returns the summary."""
        columns = self._summary_columns(spec, report, folder, files)
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET summary = ?, files = ?, method = ?, dataset = ?, model = ?, "
                "setup_key = ? WHERE id = ?", (*columns, run_id))
        return json.loads(columns[0])

    def get(self, run_id: str) -> RunRecord:
        return self._record(self._row(run_id))

    def list(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Newest first: `query` without paging."""
        return self.query(kind, status)

    def query(self, kind: str | None = None, status: str | None = None, *,
              setup: str | None = None, methods: Sequence[str] | None = None,
              ids: Sequence[str] | None = None, order: str = "newest",
              limit: int | None = None, offset: int = 0) -> list[RunRecord]:
        """Runs from the index alone: of a `kind`, a `status`, a `setup` (setup_key), one
        of `methods` (method names) and one of `ids`, in `order` ("newest" or "oldest"), `limit` of
        them from `offset`. Their reports are read only when used (RunRecord.report). A
        finished run whose folder is unusable has status "damaged" and its reason in
        `damage`: `status="done"` leaves it out (so a page may hold fewer than `limit`),
        `status="damaged"` lists only those."""
        if order not in ORDERS:
            raise UserError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
        for name, value in (("limit", limit), ("offset", offset)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise UserError(f"{name}: expected a whole number >= 0, got {value!r}")
        where, values = self._where(kind, status, setup, methods, ids)
        page = "" if limit is None else f" LIMIT {limit} OFFSET {offset}"
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT * FROM runs {where} ORDER BY {ORDERS[order]}{page}", values).fetchall()
        records = [self._record(row) for row in rows]
        if status is not None:
            records = [r for r in records if r.status == status]
        return records

    def count(self, kind: str | None = None, status: str | None = None, *,
              setup: str | None = None, methods: Sequence[str] | None = None,
              ids: Sequence[str] | None = None) -> int:
        """How many runs `query` pages through (damaged ones counted with "done": the
        index alone cannot tell them)."""
        where, values = self._where(kind, status, setup, methods, ids)
        with self._connect() as connection:
            return connection.execute(f"SELECT COUNT(*) FROM runs {where}", values).fetchone()[0]

    @staticmethod
    def _where(kind, status, setup, methods, ids) -> tuple[str, list]:
        if status is not None and status not in STATUSES + (DAMAGED,):
            raise UserError(f"status: expected one of {', '.join(STATUSES + (DAMAGED,))}, "
                            f"got {status!r}")
        clauses, values = [], []
        for column, value in (("kind", kind), ("setup_key", setup),
                              ("status", "done" if status == DAMAGED else status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        for column, chosen in (("method", methods), ("id", ids)):
            if chosen is not None:
                chosen = list(chosen)
                clauses.append(f"{column} IN ({', '.join('?' * len(chosen))})")
                values.extend(chosen)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), values

    def delete(self, run_id: str) -> None:
        row = self._row(run_id)
        if row["status"] == "running" and _owner_alive(row["pid"], row["pid_started"],
                                                       row["owner"]):
            raise UserError(f"run {run_id} is still running; cancel it before deleting it")
        # Move the folder aside first: a crash then leaves trash (removed on the next
        # open) rather than a "done" row without its folder.
        trash = self.runs_dir / f"{TRASH_PREFIX}{run_id}-{secrets.token_hex(3)}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.run_dir(run_id), trash)
        with self._transaction() as connection:
            connection.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        _remove_tree(trash)
        _remove_tree(self._temp_dir(run_id))

    def load_weights(self, run_id: str) -> dict[str, torch.Tensor]:
        record = self.get(run_id)
        weights = record.path / WEIGHTS_FILE
        if record.status != "done" or not weights.is_file():
            why = f": {record.damage}" if record.damage else ""
            raise UserError(f"run {run_id} ({record.status}{why}) has no stored weights")
        return io.load_state_dict(weights)

    def load_arrays(self, run_id: str) -> dict[str, np.ndarray]:
        arrays = self.get(run_id).path / ARRAYS_FILE
        return io.load_arrays(arrays) if arrays.is_file() else {}

    def _derived_path(self, run_id: str, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,120}", name) or name.startswith("."):
            raise ValueError(f"name: letters, digits, '_', '-' and '.' only, got {name!r}")
        return self.run_dir(run_id) / DERIVED_DIR / f"{name}.npz"

    def put_derived(self, run_id: str, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep arrays computed later from a finished run (its report and weights never
        change); they go with the run when it is deleted."""
        record = self.get(run_id)
        if record.status != "done":
            raise UserError(f"run {run_id} is {record.status}; only a finished run keeps "
                            "derived results")
        path = self._derived_path(run_id, name)
        path.parent.mkdir(exist_ok=True)
        io.save_arrays(path, arrays)

    def get_derived(self, run_id: str, name: str) -> dict[str, np.ndarray] | None:
        path = self._derived_path(run_id, name)
        return io.load_arrays(path) if path.is_file() else None

    def recover(self) -> list[str]:
        """Settle runs whose process is gone: a complete folder means only the final
        status update was lost, so the run is marked "done"; otherwise it is marked
        "failed" with error "interrupted". Returns the ids marked interrupted. Also
        removes temporary and trash folders nobody can still be writing."""
        with self._connect() as connection:
            running = connection.execute(
                "SELECT id, pid, pid_started, owner FROM runs WHERE status = 'running'").fetchall()
        interrupted = []
        for row in running:
            if _owner_alive(row["pid"], row["pid_started"], row["owner"]):
                continue
            run_id = row["id"]
            completed = self.run_dir(run_id).is_dir()
            with self._transaction() as connection:
                if completed:
                    settled = connection.execute(
                        "UPDATE runs SET status = 'done', finished = ? "
                        "WHERE id = ? AND status = 'running'",
                        (self.run_dir(run_id).stat().st_mtime, run_id)).rowcount
                else:
                    settled = connection.execute(
                        "UPDATE runs SET status = 'failed', error = ?, finished = ? "
                        "WHERE id = ? AND status = 'running'",
                        (INTERRUPTED, time.time(), run_id)).rowcount
            if settled and not completed:
                interrupted.append(run_id)
        self._remove_stale_folders()
        return interrupted

    def _remove_stale_folders(self) -> None:
        with self._connect() as connection:
            still_running = {row["id"] for row in connection.execute(
                "SELECT id FROM runs WHERE status = 'running'")}
        for folder in self.runs_dir.iterdir():
            if folder.name.startswith(TRASH_PREFIX):
                _remove_tree(folder)
            elif (folder.name.startswith(TEMP_PREFIX)
                  and folder.name[len(TEMP_PREFIX):] not in still_running):
                _remove_tree(folder)
        for folder in self.cache_dir.iterdir():
            if folder.name.startswith(TRASH_PREFIX):
                _remove_tree(folder)
            elif folder.name.startswith(TEMP_PREFIX) and self._cache_temp_is_stale(folder.name):
                _remove_tree(folder)

    # --- checkpoint cache -----------------------------------------------------------

    def _cache_entry(self, key: str) -> Path:
        if not isinstance(key, str) or not _FOLDER_NAME.fullmatch(key):
            raise UserError(f"cache key: expected letters, digits, '_', '-' or '.' (not "
                            f"starting with '.', at most 128), got {key!r}")
        return self.cache_dir / key

    def _cache_temp(self, key: str) -> Path:
        # pid and process token in the name let recover() tell abandoned temp folders
        # from ones another process is writing right now.
        return self.cache_dir / (f"{TEMP_PREFIX}{key}.{os.getpid()}.{_PROCESS_TOKEN}."
                                 f"{secrets.token_hex(3)}")

    @staticmethod
    def _cache_temp_is_stale(name: str) -> bool:
        parts = name.rsplit(".", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return True
        return not _owner_alive(int(parts[1]), None, parts[2])

    def cache_has(self, key: str) -> bool:
        return self._cache_entry(key).is_dir()

    def cache_get(self, key: str, on_damage: Callable[[str], None] | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict] | None:
        """(state_dict, meta), or None if absent. A damaged entry (weights truncated or
        missing, meta missing or unreadable) is moved aside to `cache/.damaged-<key>-*`
        (kept for a look, never read again), `on_damage` is told why, and None is
        returned, so the caller trains (or imports) the model again."""
        entry = self._cache_entry(key)
        if not entry.is_dir():
            return None
        meta, reason = _read_json_file(entry / META_FILE)
        if reason is None and not isinstance(meta, dict):
            reason = f"{META_FILE} does not hold a JSON object"
        state = None
        if reason is None:
            try:
                state = io.load_state_dict(entry / WEIGHTS_FILE)
            except UserError as error:
                reason = f"{WEIGHTS_FILE}: {str(error).split(': ', 1)[-1]}"
        if reason is None:
            return state, meta
        aside = self.cache_dir / f"{DAMAGED_PREFIX}{key}-{secrets.token_hex(3)}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry, aside)
        note = (f"cached model {key} was damaged ({reason}); set aside as {aside.name} "
                "and made again")
        logging.getLogger(__name__).warning(note)
        if on_damage is not None:
            on_damage(note)
        return None

    def cache_put(self, key: str, state_dict: Mapping[str, torch.Tensor], meta: dict) -> None:
        """Written like a run folder: complete or absent. Keys are content hashes, so
        when two writers race the first entry is kept and the second one dropped."""
        entry = self._cache_entry(key)
        if entry.is_dir():
            return
        temp = self._cache_temp(key)
        try:
            temp.mkdir()
            io.save_state_dict(temp / WEIGHTS_FILE, state_dict)
            io.write_json(temp / META_FILE, meta)
            io.fsync_dir(temp)
            os.replace(temp, entry)
            io.fsync_dir(self.cache_dir)
        except OSError:
            if not entry.is_dir():  # a lost race leaves the winner's entry: that is fine
                raise
        finally:
            _remove_tree(temp)

    def parts_get(self, key: str) -> Any | None:
        """A computed value kept with `parts_put` (evaluation parts of the reference
        models), or None if absent or unreadable (it is then computed and written again)."""
        path = self._parts_path(key)
        try:
            return io.loads_tagged_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def parts_put(self, key: str, value: Any) -> None:
        """Keep `value` (nested dicts, lists, tuples, numbers and numpy arrays) under
        `key`, written atomically beside the checkpoints in the cache."""
        path = self._parts_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        io.atomic_write_text(path, io.dumps_tagged_json(value))

    def _parts_path(self, key: str) -> Path:
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{16,64}", key):
            raise ValueError(f"parts key: expected 16-64 hex digits, got {key!r}")
        return self.cache_dir / PARTS_DIR / f"{key}.json"


def _created_from_id(run_id: str) -> float | None:
    match = re.match(r"(\d{8}-\d{6})-(\d{3})-", run_id)
    if not match:
        return None
    import calendar
    stamp = calendar.timegm(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
    return stamp + int(match.group(2)) / 1000


def repair(root: str | os.PathLike | None = None) -> dict:
    """Rebuild the index from the run folders, which are the source of truth.

    A damaged index (and its -wal/-shm files) is moved aside to
    `index.sqlite.damaged-<time>` and a new one is built with a "done" row per run
    folder (kind, label and times from run.json; for runs stored before run.json, kind
    "unlearn" when the spec names a method and the times from the id). A healthy index
    is kept and only gains rows for folders it lacks. Failed and cancelled runs have no
    folder, so a rebuilt index no longer lists them. Returns what was done."""
    root_path = (checked_store_path(root) if root is not None else default_store_root()).resolve()
    db_path = root_path / "index.sqlite"
    runs_dir = root_path / "runs"
    if not runs_dir.is_dir():
        raise UserError(f"run store {root_path}: has no runs/ folder; nothing to repair")
    set_aside = None
    if db_path.exists():
        healthy = False
        try:
            with contextlib.closing(sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_S)) as c:
                healthy = c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                c.execute("SELECT id FROM runs LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            healthy = False
        if not healthy:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            set_aside = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
            os.replace(db_path, set_aside)
            for suffix in ("-wal", "-shm"):
                side = db_path.with_name(db_path.name + suffix)
                if side.exists():
                    os.replace(side, set_aside.with_name(set_aside.name + suffix))
    store = RunStore(root_path)
    added, skipped = [], []
    with store._connect() as connection:
        known = {row["id"] for row in connection.execute("SELECT id FROM runs")}
    for folder in sorted(store.runs_dir.iterdir()):
        run_id = folder.name
        if not folder.is_dir() or run_id.startswith(".") or run_id in known:
            continue
        if not _FOLDER_NAME.fullmatch(run_id):
            skipped.append(run_id)
            continue
        manifest, _ = _read_json_file(folder / RUN_FILE)
        manifest = manifest if isinstance(manifest, dict) else {}
        spec, _ = _read_json_file(folder / SPEC_FILE)
        spec = spec if isinstance(spec, dict) else {}
        report, _ = _read_json_file(folder / REPORT_FILE)
        method = (report.get("method") or {}) if isinstance(report, dict) else {}
        kind = manifest.get("kind") if isinstance(manifest.get("kind"), str) else (
            "unlearn" if "method" in spec else "run")
        label = manifest.get("label") if isinstance(manifest.get("label"), str) else (
            f"{method.get('title', kind)} (recovered)" if isinstance(method, dict) else kind)
        mtime = folder.stat().st_mtime
        created = manifest.get("created")
        if not isinstance(created, (int, float)):
            created = _created_from_id(run_id) or mtime
        finished = manifest.get("finished")
        if not isinstance(finished, (int, float)):
            finished = mtime
        with store._transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO runs (id, kind, status, label, created, finished, spec,"
                " error, pid, pid_started, owner) VALUES (?, ?, 'done', ?, ?, ?, ?, NULL, ?,"
                " NULL, 'repair')",
                (run_id, kind, label, float(created), float(finished),
                 json.dumps(io.to_json_safe(spec, where="spec"), sort_keys=True), os.getpid()))
        added.append(run_id)
    store.backfill_summaries()
    damaged = [r.id for r in store.list(status=DAMAGED)]
    return {"root": str(root_path), "set_aside": str(set_aside) if set_aside else None,
            "added": added, "skipped": skipped, "damaged": damaged}
