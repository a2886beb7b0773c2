"""Run the Great Expectations gate.

Two gates, with the suites of expectations/ (GX 1.x JSON, one file per suite):

  landed  the three sources' deliveries of a business date as landed in
          raw/<source>/ds=<ds>/, against their reconciliation records and
          control files, before dbt reads them
  marts   the candidate set audit/<run_id>/kpi.duckdb (kpi_program_daily,
          kpi_segment_daily, kpi_target_progress, run_info) before it is
          published, against the previous published set for day-over-day guards;
          with it, on DuckDB, the freshness of the sources the set was built
          from (suite source_freshness: dbt source freshness as the build
          recorded it beside the set, audit/<run_id>/source_freshness.json)

Each expectation is `critical` (a failure blocks publishing) or `warning`
(reported). An expectation that could not be evaluated (GX raised, a column
is missing, the frame has no rows where rows were expected) counts as a
failure, never as a pass.

Exit status: 0 when no critical check failed, 1 when the gate blocks, 2 on a
usage error. This command reports only; `program-reporting publish` runs the
gate, publishes or withholds, and writes the validation report.

Settings:
  PROGRAM_REPORTING_MAX_DAILY_DROP  largest share by which enrolled merchants
                                    (and, as warnings, open lines and jobs)
                                    may fall from one date to the next
                                    (default 0.20)
  PROGRAM_REPORTING_MAX_QUARANTINE_SHARE  warning threshold per delivery (0.05)
  PROGRAM_REPORTING_GATE_BATCH_ROWS  rows of a delivery handed to GX at once
                                    (default 1000000): with
                                    PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT, what
                                    bounds the landed gate's memory; every row
                                    is still checked
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from program_reporting.core import reference
from program_reporting.core.checksums import sha256_file
from program_reporting.core.published import SET_TABLES
from program_reporting.core.redaction import suite_parameters
from program_reporting.core.settings import (
    SOURCES,
    Paths,
    duckdb_config,
    parse_ds,
    quarantine_share_limit,
)
from program_reporting.core.settings import (
    paths as default_paths,
)
from program_reporting.validation.candidate import GATE_FILE
from program_reporting.validation.suites import CheckResult, FrameRun, Suite, load_suites, new_context, run_suite
from program_reporting.warehouse.catalog import FRESHNESS_FILE, source_name

log = logging.getLogger(__name__)

MART_TABLES = SET_TABLES
FRESHNESS_STAGE = "freshness"  # the suites judged with the marts gate on DuckDB only
_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}


class GateError(RuntimeError):
    """The gate could not run at all (no candidate set, unreadable suites)."""


def max_daily_drop() -> float:
    raw = os.environ.get("PROGRAM_REPORTING_MAX_DAILY_DROP", "")
    try:
        value = float(raw) if raw else 0.20
    except ValueError as exc:
        raise ValueError(f"setting PROGRAM_REPORTING_MAX_DAILY_DROP={raw!r} is not a number") from exc
    if not 0 <= value <= 1:
        raise ValueError(f"setting PROGRAM_REPORTING_MAX_DAILY_DROP={raw!r} is not a share in [0, 1]")
    return value


@dataclass
class GateResult:
    stage: str  # "landed" or "marts"
    ds: str
    run_id: str | None
    results: list[CheckResult]
    started_at: str = ""
    seconds: float = 0.0
    inputs: dict = field(default_factory=dict)  # what was validated (paths, checksums)
    error: str | None = None  # the gate could not run at all
    gx_results: list = field(default_factory=list, repr=False)  # (gx suite name, scrubbed GX result)
    engine: str = "duckdb"  # where the checked tables were: the marts gate also runs on PostgreSQL

    @property
    def title(self) -> str:
        """The gate's name in summaries and reports: "landed gate", "marts gate on postgresql"."""
        return f"{self.stage} gate" + ("" if self.engine == "duckdb" else f" on {self.engine}")

    @property
    def blocking(self) -> list[CheckResult]:
        return [r for r in self.results if r.blocking]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.severity == "warning" and r.status in ("failed", "not evaluated")]

    @property
    def evaluated(self) -> int:
        return sum(r.evaluated for r in self.results)

    @property
    def passed(self) -> bool:
        # A gate that evaluated nothing proves nothing: it fails.
        return self.error is None and self.evaluated > 0 and not self.blocking

    def summary(self) -> str:
        head = (
            f"{self.title} for ds {self.ds}"
            + (f", run {self.run_id}" if self.run_id else "")
            + f": {'PASSED' if self.passed else 'BLOCKED'}; {len(self.results)} checks, "
            f"{self.evaluated} evaluated, {len(self.blocking)} critical failures, "
            f"{len(self.warnings)} warnings ({self.seconds:.1f}s)"
        )
        lines = [head]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.evaluated == 0 and not self.error:
            lines.append("  nothing was evaluated")
        for r in self.blocking + self.warnings:
            lines.append(
                f"  {r.severity.upper()} {r.status}: {r.suite}/{r.check_id}"
                f"{' [' + r.column + ']' if r.column else ''}: {r.description}"
                f" observed={json.dumps(r.observed_value, default=str)[:200]}"
                f"{' (' + r.note + ')' if r.note else ''}"
            )
        return "\n".join(lines)

    def reason(self) -> str:
        """One line saying why the gate blocked (empty when it passed)."""
        if self.passed:
            return ""
        if self.error:
            return f"{self.stage} gate could not run: {self.error}"
        if self.evaluated == 0:
            return f"{self.stage} gate evaluated nothing"
        ids = ", ".join(f"{r.suite}/{r.check_id} ({r.status})" for r in self.blocking[:5])
        more = f" and {len(self.blocking) - 5} more" if len(self.blocking) > 5 else ""
        return f"{self.stage} gate: {len(self.blocking)} critical check(s) failed: {ids}{more}"

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "engine": self.engine,
            "ds": self.ds,
            "run_id": self.run_id,
            "passed": self.passed,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "reason": self.reason(),
            "inputs": self.inputs,
            "counts": {
                "checks": len(self.results),
                "evaluated": self.evaluated,
                "critical_failures": len(self.blocking),
                "warnings": len(self.warnings),
            },
            "results": [r.to_dict() for r in self.results],
        }


def expectation_parameters() -> dict:
    """The values of the suites' `$PARAMETER`s (settings and reference data), the same on every engine."""
    programs = reference.programs()
    params = suite_parameters()
    params.update(
        {
            "max_daily_drop": max_daily_drop(),
            "max_quarantine_share": quarantine_share_limit(),
            "known_programs": sorted(programs),
            "known_currencies": sorted({p.currency for p in programs.values()}),
        }
    )
    return params


def _run(stage: str, ds: str, run_id: str | None, con, suites: list[Suite], inputs: dict, context=None) -> GateResult:
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    context = new_context() if context is None else context
    params = expectation_parameters()
    results: list[CheckResult] = []
    gx_results = []
    for suite in suites:
        runs: list[FrameRun] = run_suite(context, con, suite, params)
        for fr in runs:
            results.extend(fr.checks)
            if fr.gx_result is not None:
                gx_results.append((fr.gx_suite_name, fr.gx_result))
    gate = GateResult(stage, ds, run_id, results, started_at, time.monotonic() - started, inputs, gx_results=gx_results)
    (log.info if gate.passed else log.error)("%s", gate.summary())
    return gate


# --------------------------------------------------------------------------- landed


def reconciliation_records(p: Paths) -> list[dict]:
    """Every delivery's reconciliation record (landing's `_reconciliation.json`)."""
    try:
        from program_reporting.landing.land import reconciliation  # type: ignore[attr-defined]
    except ImportError:
        reconciliation = None
    if reconciliation is not None:
        return list(reconciliation(paths=p))
    records = []
    for f in sorted(p.raw.glob("*/ds=*/_reconciliation.json")):
        try:
            records.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.error("%s: unreadable reconciliation record: %s", f, exc)
    return records


def _landed_connection(source: str, ds: str, p: Paths, records: list[dict]):
    con = duckdb.connect(config=duckdb_config(p.tmp / "duckdb"))
    con.execute("SET enable_progress_bar = false")  # the gate logs each batch; a bar would litter the task log
    con.execute("SET VARIABLE ds = ?", [ds])
    con.execute("SET VARIABLE source = ?", [source])
    con.execute("""CREATE TABLE reconciliation (source VARCHAR, ds DATE, file VARCHAR, sha256 VARCHAR,
        control_row_count BIGINT, delivered BIGINT, loaded BIGINT, quarantined BIGINT, held BIGINT)""")
    for r in records:
        if r.get("source") == source and r.get("ds") == ds:
            con.execute(
                "INSERT INTO reconciliation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    r.get("source"),
                    r.get("ds"),
                    r.get("file"),
                    r.get("sha256"),
                    r.get("control_row_count"),
                    r.get("delivered"),
                    r.get("loaded"),
                    r.get("quarantined"),
                    r.get("held"),
                ],
            )
    part = p.raw / source / f"ds={ds}"
    files = sorted(str(f) for f in part.glob("*.parquet"))
    if files:
        # A view: DuckDB reads only the columns and aggregates each frame asks for.
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
    # No parquet: no `rows` view, so every frame reading it fails as not evaluated.
    return con, files


def validate_landed(ds: str, paths: Paths | None = None) -> GateResult:
    """Run the landed suites on the three sources' raw partitions of `ds`."""
    parse_ds(ds)
    p = paths or default_paths()
    started = time.monotonic()
    suites = {s.name: s for s in load_suites("landed")}
    records = reconciliation_records(p)
    results: list[CheckResult] = []
    gx_results = []
    inputs: dict = {"raw": {}}
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    context = new_context()  # one for the three sources: their suites' GX names do not collide
    for source in SOURCES:
        suite = suites.get(f"landed_{source}")
        if suite is None:
            raise GateError(f"expectations/landed_{source}.json is missing")
        con, files = _landed_connection(source, ds, p, records)
        inputs["raw"][source] = [str(Path(f).relative_to(p.home)) for f in files]
        try:
            g = _run("landed", ds, None, con, [suite], {}, context)
        finally:
            con.close()
        results.extend(g.results)
        gx_results.extend(g.gx_results)
    gate = GateResult(
        "landed", ds, None, results, started_at, time.monotonic() - started, inputs, gx_results=gx_results
    )
    log.info("landed gate for %s: %s", ds, "passed" if gate.passed else gate.reason())
    return gate


# --------------------------------------------------------------------------- marts


def settle(db: Path) -> None:
    """Fold a leftover write-ahead log into the candidate file, so that what is
    validated, checksummed and published is one self-contained file."""
    wal = Path(str(db) + ".wal")
    if wal.exists():
        log.warning("%s has a write-ahead log; checkpointing it before validation", db)
        con = duckdb.connect(str(db))
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if wal.exists():
            raise GateError(f"{wal} remains after a checkpoint; refusing to validate a half-written set")


def marts_connection(run_id: str, ds: str, candidate: Path, previous: Path | None):
    """A DuckDB connection with the views the marts suites' frames read: the
    candidate's tables, the previous published program rows, the targets.
    The PostgreSQL gate computes its derived frames on this too."""
    con = duckdb.connect(config=duckdb_config())
    con.execute("SET VARIABLE ds = ?", [ds])
    con.execute("SET VARIABLE run_id = ?", [run_id])
    con.execute(f"ATTACH '{str(candidate).replace(chr(39), chr(39) * 2)}' AS candidate (READ_ONLY)")
    present = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'candidate'"
        ).fetchall()
    }
    for t in MART_TABLES:
        if t in present:
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM candidate.main.{t}")
        # A missing table gets no view: every frame reading it is not evaluated.
    if previous is not None:
        con.execute(f"ATTACH '{str(previous).replace(chr(39), chr(39) * 2)}' AS previous (READ_ONLY)")
        con.execute("CREATE TABLE previous_program_daily AS SELECT * FROM previous.main.kpi_program_daily")
        con.execute("DETACH previous")
    elif "kpi_program_daily" in present:
        con.execute("CREATE TABLE previous_program_daily AS SELECT * FROM kpi_program_daily WHERE false")
    con.execute("CREATE TABLE program_targets (program_code VARCHAR, metric VARCHAR, target_value DECIMAL(18,2))")
    for program_code, metric, value in reference.program_targets():
        con.execute("INSERT INTO program_targets VALUES (?, ?, ?)", [program_code, metric, value])
    return con


def _hours(threshold: dict | None) -> float | None:
    if not threshold or threshold.get("count") is None or threshold.get("period") not in _HOURS:
        return None
    return threshold["count"] * _HOURS[threshold["period"]]


def source_freshness(con, record: Path, home: Path) -> dict | None:
    """The table source_freshness that the suite source_freshness reads: one row
    per source in the build's record (dbt's sources.json), and the landed
    sources it must cover. Without a record the table is empty, so every
    landed source fails as not checked. Returns what was read, for the report."""
    con.execute("SET VARIABLE landed_sources = ?", [[f"raw.{s}" for s in SOURCES]])
    con.execute(
        """CREATE TABLE source_freshness (source VARCHAR, status VARCHAR, max_loaded_at TIMESTAMPTZ,
        snapshotted_at TIMESTAMPTZ, age_hours DOUBLE, warn_after_hours DOUBLE, error_after_hours DOUBLE,
        error VARCHAR)"""
    )
    where = record.relative_to(home) if record.is_relative_to(home) else record
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
        results = doc["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        missing = f"no freshness record: {where} ({type(exc).__name__}); the build writes it after dbt build"
        log.error("%s", missing)
        con.execute("SET VARIABLE no_freshness_result = ?", [missing])
        return None
    con.execute("SET VARIABLE no_freshness_result = ?", [f"{where} has no result for this source"])
    sources = []
    for r in results:
        criteria = r.get("criteria") or {}
        age = r.get("max_loaded_at_time_ago_in_s")
        row = {
            "source": source_name(str(r.get("unique_id", ""))),
            "status": r.get("status"),
            "max_loaded_at": r.get("max_loaded_at"),
            "snapshotted_at": r.get("snapshotted_at"),
            "age_hours": None if age is None else round(age / 3600, 2),
            "warn_after_hours": _hours(criteria.get("warn_after")),
            "error_after_hours": _hours(criteria.get("error_after")),
            "error": r.get("error"),  # a runtime error's message
        }
        con.execute("INSERT INTO source_freshness VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(row.values()))
        sources.append(row)
    checked_at = (doc.get("metadata") or {}).get("generated_at")
    return {"record": str(where), "sha256": sha256_file(record), "checked_at": checked_at, "sources": sources}


def validate(run_id: str, ds: str, paths: Paths | None = None) -> GateResult:
    """Run the mart suites on audit/<run_id>/kpi.duckdb, and the freshness suite
    on the build's record beside it, and record the verdict in
    audit/<run_id>/gate.json (publish() requires a passing one)."""
    parse_ds(ds)
    p = paths or default_paths()
    audit_dir = p.audit / run_id
    candidate = audit_dir / "kpi.duckdb"
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise GateError(f"run id {run_id!r} is not usable as a folder name")
    if not candidate.exists():
        raise GateError(f"{candidate}: no candidate set for run {run_id} (did the build stage it?)")
    settle(candidate)
    checksum = sha256_file(candidate)
    previous = p.current_db if p.current_db.exists() else None
    inputs = {
        "candidate": str(candidate.relative_to(p.home)),
        "candidate_sha256": checksum,
        "previous_published": str(previous.resolve().relative_to(p.home.resolve())) if previous else None,
    }
    suites = load_suites("marts") + load_suites(FRESHNESS_STAGE)
    con = marts_connection(run_id, ds, candidate, previous)
    try:
        inputs["source_freshness"] = source_freshness(con, audit_dir / FRESHNESS_FILE, p.home)
        gate = _run("marts", ds, run_id, con, suites, inputs)
    finally:
        con.close()
    if sha256_file(candidate) != checksum:
        gate.error = f"{candidate} changed while it was being validated"
    verdict = {
        "run_id": run_id,
        "ds": ds,
        "passed": gate.passed,
        "reason": gate.reason(),
        "candidate_sha256": checksum,
        "validated_at": gate.started_at,
    }
    tmp = audit_dir / f".{GATE_FILE}.tmp"
    tmp.write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, audit_dir / GATE_FILE)
    return gate
