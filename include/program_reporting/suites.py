"""The GX suites of expectations/ and how they run.

A suite file is a Great Expectations 1.x ExpectationSuite in JSON, plus two
things GX has no field for, kept in places GX already provides:

- `meta.frames`: the named data frames the suite's expectations look at.
  A frame is a DuckDB query (`sql`) over the views the gate prepares, or one
  of two generated shapes: `columns_of: <table>` (one row per column name) and
  `text_values_of: <table>` (one row per distinct value of each text column).
  Cross-row and cross-table rules (segments summing to programs, cumulative
  figures not decreasing, day-over-day drops, reconciliation) are computed
  by a frame's SQL into a small frame that a built-in GX expectation then
  validates, so every check is a GX result. A frame may declare
  `may_be_empty_when`: a DuckDB query returning one boolean that says an
  empty frame is legitimate (e.g. no previous published set yet).
- each expectation's `meta.frame` (which frame it validates), `meta.id` (a
  stable id used in reports) and the native `severity` field: `critical`
  blocks publishing, `warning` is reported.

GX 1.x has no DuckDB dialect, so frames reach GX as pandas DataFrames.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from program_reporting.redaction import is_pii_column, scrub
from program_reporting.settings import EXPECTATIONS_DIR

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
SAMPLE_ROWS = 5
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SuiteError(ValueError):
    """A suite file that cannot be used: its message names the file and the problem."""


@dataclass(frozen=True)
class Frame:
    name: str
    description: str
    sql: str | None = None
    columns_of: str | None = None
    text_values_of: str | None = None
    may_be_empty_when: str | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    stage: str
    path: Path
    notes: str
    frames: dict[str, Frame]
    expectations: list[dict]  # GX expectation configurations as in the file

    def expectations_of(self, frame: str) -> list[dict]:
        return [e for e in self.expectations if e["meta"]["frame"] == frame]


@dataclass
class CheckResult:
    """One expectation's outcome, in the terms a report needs."""

    suite: str
    frame: str
    check_id: str
    expectation_type: str
    column: str | None
    severity: str
    description: str
    success: bool
    evaluated: bool
    observed_value: Any = None
    note: str = ""
    skipped: bool = False  # frame legitimately empty: nothing to check, said so
    failing_rows: list[dict] = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return self.severity == "critical" and not self.skipped and not (self.success and self.evaluated)

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if not self.evaluated:
            return "not evaluated"
        return "passed" if self.success else "failed"

    def to_dict(self) -> dict:
        return {
            "suite": self.suite, "frame": self.frame, "id": self.check_id,
            "expectation_type": self.expectation_type, "column": self.column,
            "severity": self.severity, "description": self.description,
            "status": self.status, "success": self.success, "evaluated": self.evaluated,
            "blocking": self.blocking, "observed_value": self.observed_value, "note": self.note,
            "kwargs": self.kwargs, "failing_rows": self.failing_rows,
        }


# --------------------------------------------------------------------------- loading

def load_suite(path: Path) -> Suite:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"{path}: cannot read the suite: {exc}") from exc
    name = doc.get("name")
    meta = doc.get("meta") or {}
    frames_doc = meta.get("frames") or {}
    if not name or not frames_doc:
        raise SuiteError(f"{path}: a suite needs a name and meta.frames")
    frames = {}
    for fname, f in frames_doc.items():
        shapes = [k for k in ("sql", "columns_of", "text_values_of") if f.get(k)]
        if len(shapes) != 1:
            raise SuiteError(f"{path}: frame {fname!r} needs exactly one of sql, columns_of, text_values_of")
        for key in ("columns_of", "text_values_of"):
            if f.get(key) and not _IDENT.match(f[key]):
                raise SuiteError(f"{path}: frame {fname!r}: {key} is not a table name")
        frames[fname] = Frame(fname, f.get("description", ""), f.get("sql"), f.get("columns_of"),
                              f.get("text_values_of"), f.get("may_be_empty_when"))
    expectations = doc.get("expectations") or []
    if not expectations:
        raise SuiteError(f"{path}: the suite has no expectations")
    seen = set()
    for i, e in enumerate(expectations, 1):
        where = f"{path}: expectation {i} ({e.get('type')})"
        m = e.get("meta") or {}
        if e.get("severity") not in SEVERITIES:
            raise SuiteError(f"{where}: severity must be one of {SEVERITIES}, is {e.get('severity')!r}")
        if m.get("frame") not in frames:
            raise SuiteError(f"{where}: meta.frame {m.get('frame')!r} is not a frame of the suite")
        if not m.get("id") or m["id"] in seen:
            raise SuiteError(f"{where}: meta.id missing or repeated")
        seen.add(m["id"])
    return Suite(name, meta.get("stage", ""), path, doc.get("notes", ""), frames, expectations)


def load_suites(stage: str, directory: Path | None = None) -> list[Suite]:
    directory = directory or EXPECTATIONS_DIR
    suites = [load_suite(p) for p in sorted(directory.glob("*.json"))]
    suites = [s for s in suites if s.stage == stage]
    if not suites:
        raise SuiteError(f"{directory}: no suite of stage {stage!r}")
    return suites


# --------------------------------------------------------------------------- frames

def frame_sql(con, frame: Frame) -> str:
    """The query of a frame; generated shapes read the table's columns from DuckDB."""
    if frame.sql:
        return frame.sql
    table = frame.columns_of or frame.text_values_of
    cols = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
    if frame.columns_of:
        return f"SELECT column_name FROM (DESCRIBE {table})"
    texts = [c for c, t in cols if t.upper().startswith("VARCHAR")]
    if not texts:
        return "SELECT NULL::VARCHAR AS column_name, NULL::VARCHAR AS value WHERE false"
    return " UNION ALL ".join(
        f"SELECT DISTINCT '{c}' AS column_name, CAST(\"{c}\" AS VARCHAR) AS value FROM {table} "
        f"WHERE \"{c}\" IS NOT NULL" for c in texts
    )


# --------------------------------------------------------------------------- running

def _gx():
    import great_expectations as gx  # slow import: only when a gate runs

    return gx


def new_context():
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _raised(exception_info: Any) -> str | None:
    """The message of an exception GX caught while evaluating, if any."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "raised an exception")
    for value in exception_info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "raised an exception")
    return None


def _observed(result: dict) -> Any:
    if "observed_value" in result:
        details = result.get("details") or {}
        if details.get("mismatched"):  # e.g. which columns are extra or missing
            return scrub({"observed": result["observed_value"], "mismatched": details["mismatched"]})
        return scrub(result["observed_value"])
    if "element_count" in result:
        return {
            "rows": result.get("element_count"),
            "unexpected": result.get("unexpected_count"),
            "unexpected_percent": scrub(result.get("unexpected_percent")),
            "null": result.get("missing_count"),
            "sample_unexpected_values": scrub(result.get("partial_unexpected_list", [])[:SAMPLE_ROWS]),
        }
    return scrub(result) or None


def _sample_rows(df, indexes) -> list[dict]:
    rows = []
    for idx in list(indexes or [])[:SAMPLE_ROWS]:
        try:
            record = df.loc[idx].to_dict()
        except (KeyError, TypeError):
            continue
        rows.append({k: v for k, v in scrub(record).items() if not is_pii_column(k)})
    return rows


def scrub_gx_result(suite_result) -> None:
    """Redact personal data from a GX suite validation result in place, so that
    Data Docs rendered from it show none."""
    for r in suite_result.results:
        if r.result:
            cleaned = scrub(dict(r.result))
            r.result.clear()
            r.result.update(cleaned)


@dataclass
class FrameRun:
    """What running one frame produced: check results and the GX result object."""

    checks: list[CheckResult]
    gx_result: Any = None  # ExpectationSuiteValidationResult, scrubbed
    gx_suite_name: str = ""
    rows: int | None = None
    seconds: float = 0.0


def _check(suite: Suite, frame: Frame, e: dict, **kw) -> CheckResult:
    kwargs = e.get("kwargs", {})
    return CheckResult(
        suite=suite.name, frame=frame.name, check_id=e["meta"]["id"], expectation_type=e["type"],
        column=kwargs.get("column") or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
        or (f"{kwargs['column_A']},{kwargs['column_B']}" if kwargs.get("column_A") else None),
        severity=e["severity"], description=e["meta"].get("description", ""),
        kwargs=scrub(kwargs), **kw,
    )


def run_frame(context, con, suite: Suite, frame: Frame, parameters: dict) -> FrameRun:
    """Build one frame with DuckDB and validate it with the suite's expectations on it."""
    started = time.monotonic()
    configs = suite.expectations_of(frame.name)
    if not configs:
        return FrameRun([])
    try:
        df = con.execute(frame_sql(con, frame)).df()
    except Exception as exc:  # noqa: BLE001 - any failure to build the frame is reported per check
        msg = f"frame {frame.name!r} could not be computed: {exc}"
        log.error("%s: %s", suite.name, msg)
        return FrameRun([_check(suite, frame, e, success=False, evaluated=False, note=scrub(msg))
                         for e in configs], seconds=time.monotonic() - started)

    if len(df) == 0:
        return FrameRun(empty_frame_checks(con, suite, frame, configs), rows=0, seconds=time.monotonic() - started)

    gx = _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    gx_suite_name = f"{suite.name}.{frame.name}"
    source = context.data_sources.add_or_update_pandas(f"{suite.name}__{frame.name}")
    asset = source.add_dataframe_asset(frame.name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    gx_suite = gx.ExpectationSuite(name=gx_suite_name, expectations=[
        ExpectationConfiguration(type=e["type"], kwargs=e.get("kwargs", {}), meta=e["meta"],
                                 severity=e["severity"]).to_domain_obj()
        for e in configs
    ])
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(gx_suite, expectation_parameters=parameters,
                            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20})

    checks = interpret(suite, frame, configs, result, df)
    scrub_gx_result(result)
    return FrameRun(checks, result, gx_suite_name, rows=len(df), seconds=time.monotonic() - started)


def empty_frame_checks(con, suite: Suite, frame: Frame, configs: list[dict]) -> list[CheckResult]:
    """A frame with no rows evaluated nothing: every check fails, unless the
    suite declares when emptiness is expected (then each is reported skipped)."""
    legit, why = False, "the frame has no rows, so nothing was evaluated"
    if frame.may_be_empty_when:
        try:
            legit = bool(con.execute(frame.may_be_empty_when).fetchone()[0])
        except Exception as exc:  # noqa: BLE001
            why = f"the frame has no rows and its emptiness condition failed: {exc}"
    if legit:
        note = f"skipped: no rows to check, as expected ({frame.may_be_empty_when})"
        return [_check(suite, frame, e, success=True, evaluated=False, skipped=True, note=note) for e in configs]
    return [_check(suite, frame, e, success=False, evaluated=False, note=why) for e in configs]


def interpret(suite: Suite, frame: Frame, configs: list[dict], result, df=None) -> list[CheckResult]:
    """GX results as CheckResults. The one place that decides what counts as
    evaluated: an expectation that raised, saw no rows, or returned no metric
    is a failure, never a pass."""
    by_id = {r.expectation_config.meta.get("id"): r for r in result.results}
    checks = []
    for e in configs:
        r = by_id.get(e["meta"]["id"])
        if r is None:
            checks.append(_check(suite, frame, e, success=False, evaluated=False,
                                 note="GX returned no result for this expectation"))
            continue
        res = dict(r.result or {})
        raised = _raised(r.exception_info)
        evaluated, note = True, ""
        if raised:
            evaluated, note = False, f"GX could not evaluate it: {raised}"
        elif "element_count" in res and not res.get("element_count"):
            evaluated, note = False, "no rows were evaluated"
        elif not res and not r.success:
            evaluated, note = False, "GX returned no metric"
        elif res.get("element_count") and res.get("missing_count") == res.get("element_count"):
            note = "every value is null (nothing to compare; nulls are allowed here)"
        checks.append(_check(
            suite, frame, e, success=bool(r.success) and evaluated, evaluated=evaluated,
            observed_value=_observed(res), note=scrub(note),
            failing_rows=[] if r.success or df is None else _sample_rows(df, res.get("partial_unexpected_index_list")),
        ))
    return checks


def run_suite(context, con, suite: Suite, parameters: dict) -> list[FrameRun]:
    runs = []
    for frame in suite.frames.values():
        run = run_frame(context, con, suite, frame, parameters)
        log.info("%s.%s: %s rows, %d checks, %d failed, %.2fs", suite.name, frame.name, run.rows,
                 len(run.checks), sum(not c.success for c in run.checks), run.seconds)
        runs.append(run)
    return runs
