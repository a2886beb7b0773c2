"""The GX suites of expectations/ and how they run.

A suite file is a Great Expectations 1.x ExpectationSuite in JSON, plus two
things GX has no field for, kept in places GX already provides:

- `meta.frames`: the named data frames the suite's expectations look at.
  A frame is a DuckDB query kept in a .sql file beside the suite
  (`sql_file`, a path relative to the suite file), a whole table (`table`),
  or one of two generated shapes: `columns_of: <table>` (one row per column
  name) and `text_values_of: <table>` (one row per distinct value of each
  text column). Cross-row and cross-table rules (segments summing to
  programs, cumulative figures not decreasing, day-over-day drops,
  reconciliation) are computed by a frame's SQL into a small frame that a
  built-in GX expectation then validates, so every check is a GX result.
  A frame may declare `may_be_empty_when`: a DuckDB condition returning one
  boolean that says an empty frame is legitimate (e.g. no previous published
  set yet), and `batch_key`: a column of the frame by which it is validated
  in batches of about PROGRAM_REPORTING_GATE_BATCH_ROWS rows (a frame as
  large as a delivery), every row sharing a key value in the same batch.
- each expectation's `meta.frame` (which frame it validates), `meta.id` (a
  stable id used in reports) and the native `severity` field: `critical`
  blocks publishing, `warning` is reported.

Each frame's expectations become a GX ExpectationSuite named
`<suite>.<frame>`, paired with the frame's batch definition in a GX
ValidationDefinition. GX 1.x has no DuckDB dialect, so on DuckDB frames
reach GX as pandas DataFrames, one ValidationDefinition run per DataFrame.

A batched frame is read sorted by its key and cut between key values into
DataFrames of about the batch size; GX validates each batch, and the batches'
results are added up into the one result GX gives for the whole frame
(`combine_results`). That is exact only for expectations whose verdict on a
row depends on that row alone (ROW_BY_ROW) and for uniqueness of the batch
key itself, so a suite that puts any other expectation on a batched frame,
or a `mostly`, is refused when loaded.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from program_reporting.core.redaction import is_pii_column, scrub
from program_reporting.core.settings import EXPECTATIONS_DIR, gate_batch_rows

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
SAMPLE_ROWS = 5
PARTIAL_UNEXPECTED = 20  # unexpected values GX lists per expectation
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED}
FRAME_SHAPES = ("sql_file", "table", "columns_of", "text_values_of")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Expectations whose verdict on a row depends on that row alone: their counts
# over the batches of a frame add up to their counts over the whole frame.
ROW_BY_ROW = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_value_lengths_to_be_between",
    }
)
# Whether a value is unique depends on the other rows holding it: exact per
# batch only for the batch key, all of whose rows a batch holds together.
UNIQUE_KEY = "expect_column_values_to_be_unique"


class SuiteError(ValueError):
    """A suite file that cannot be used: its message names the file and the problem."""


@dataclass(frozen=True)
class Frame:
    name: str
    description: str
    sql: str | None = None  # the text of its sql_file
    table: str | None = None
    columns_of: str | None = None
    text_values_of: str | None = None
    may_be_empty_when: str | None = None
    batch_key: str | None = None


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
            "suite": self.suite,
            "frame": self.frame,
            "id": self.check_id,
            "expectation_type": self.expectation_type,
            "column": self.column,
            "severity": self.severity,
            "description": self.description,
            "status": self.status,
            "success": self.success,
            "evaluated": self.evaluated,
            "blocking": self.blocking,
            "observed_value": self.observed_value,
            "note": self.note,
            "kwargs": self.kwargs,
            "failing_rows": self.failing_rows,
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
        if "sql" in f:
            raise SuiteError(
                f"{path}: frame {fname!r}: its query goes in a .sql file named by sql_file, not in the suite"
            )
        shapes = [k for k in FRAME_SHAPES if f.get(k)]
        if len(shapes) != 1:
            raise SuiteError(f"{path}: frame {fname!r} needs exactly one of {', '.join(FRAME_SHAPES)}")
        for key in ("table", "columns_of", "text_values_of", "batch_key"):
            if f.get(key) and not _IDENT.match(f[key]):
                raise SuiteError(f"{path}: frame {fname!r}: {key} is not a table or column name")
        frames[fname] = Frame(
            fname,
            f.get("description", ""),
            _frame_query(path, fname, f.get("sql_file")),
            f.get("table"),
            f.get("columns_of"),
            f.get("text_values_of"),
            f.get("may_be_empty_when"),
            f.get("batch_key"),
        )
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
        key = frames[m["frame"]].batch_key
        if key:
            kwargs = e.get("kwargs") or {}
            if not (e["type"] in ROW_BY_ROW or (e["type"] == UNIQUE_KEY and kwargs.get("column") == key)):
                raise SuiteError(
                    f"{where}: frame {m['frame']!r} is validated in batches by {key!r}; only "
                    f"row-by-row expectations and uniqueness of {key!r} are exact in batches"
                )
            if "mostly" in kwargs:
                raise SuiteError(
                    f"{where}: frame {m['frame']!r} is validated in batches; `mostly` is a share "
                    "of the whole frame that no batch can judge"
                )
    return Suite(name, meta.get("stage", ""), path, doc.get("notes", ""), frames, expectations)


def _frame_query(suite_path: Path, frame: str, sql_file: str | None) -> str | None:
    """The query of a frame's .sql file (relative to the suite file). It ends
    with a newline, so that a closing line comment cannot swallow what a caller
    writes after it (`... ORDER BY key`, `COPY (...) TO`)."""
    if not sql_file:
        return None
    path = suite_path.parent / sql_file
    if path.suffix != ".sql":
        raise SuiteError(f"{suite_path}: frame {frame!r}: sql_file {sql_file!r} is not a .sql file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError(f"{suite_path}: frame {frame!r}: cannot read {sql_file}: {exc}") from exc
    text = text.strip().removesuffix(";").rstrip()
    if not text:
        raise SuiteError(f"{suite_path}: frame {frame!r}: {sql_file} is empty")
    return text + "\n"


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
    if frame.table:
        return f"SELECT * FROM {frame.table}"
    table = frame.columns_of or frame.text_values_of
    cols = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
    if frame.columns_of:
        return f"SELECT column_name FROM (DESCRIBE {table})"
    texts = [c for c, t in cols if t.upper().startswith("VARCHAR")]
    if not texts:
        return "SELECT NULL::VARCHAR AS column_name, NULL::VARCHAR AS value WHERE false"
    return " UNION ALL ".join(
        f'SELECT DISTINCT \'{c}\' AS column_name, CAST("{c}" AS VARCHAR) AS value FROM {table} WHERE "{c}" IS NOT NULL'
        for c in texts
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


def add_validation(context, batch_definition, suite: Suite, frame: Frame):
    """The frame's expectations as a GX ExpectationSuite `<suite>.<frame>` in the
    context's suite store, paired with the frame's batch definition in a GX
    ValidationDefinition (also stored): what GX runs, for one batch or, in a
    Checkpoint, with others."""
    gx = _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    name = gx_suite_name(suite, frame)
    gx_suite = context.suites.add(
        gx.ExpectationSuite(
            name=name,
            expectations=[
                ExpectationConfiguration(
                    type=e["type"], kwargs=e.get("kwargs", {}), meta=e["meta"], severity=e["severity"]
                ).to_domain_obj()
                for e in suite.expectations_of(frame.name)
            ],
        )
    )
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_definition, suite=gx_suite))


def gx_suite_name(suite: Suite, frame: Frame) -> str:
    return f"{suite.name}.{frame.name}"


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
    batches: int = 0


def not_evaluated(suite: Suite, frame: Frame, note: str) -> list[CheckResult]:
    """Every check of a frame that could not be validated at all, failed as not evaluated."""
    return [
        _check(suite, frame, e, success=False, evaluated=False, note=scrub(note))
        for e in suite.expectations_of(frame.name)
    ]


def _check(suite: Suite, frame: Frame, e: dict, **kw) -> CheckResult:
    kwargs = e.get("kwargs", {})
    return CheckResult(
        suite=suite.name,
        frame=frame.name,
        check_id=e["meta"]["id"],
        expectation_type=e["type"],
        column=kwargs.get("column")
        or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
        or (f"{kwargs['column_A']},{kwargs['column_B']}" if kwargs.get("column_A") else None),
        severity=e["severity"],
        description=e["meta"].get("description", ""),
        kwargs=scrub(kwargs),
        **kw,
    )


def frame_batches(con, frame: Frame, batch_rows: int):
    """The frame's rows as pandas DataFrames: the whole frame at once, or, for a
    frame with a batch_key, about `batch_rows` rows at a time, read sorted by the
    key so that every row sharing a key value is in the same batch (DuckDB sorts
    within its memory limit and spills beyond it). Rows are numbered across
    batches, so the row numbers GX reports are those of the whole frame."""
    sql = frame_sql(con, frame)
    if not frame.batch_key:
        yield con.execute(sql).df()
        return
    import pandas as pd

    con.execute(f'SELECT * FROM (\n{sql}\n) ORDER BY "{frame.batch_key}"')
    # Read in pieces much smaller than a batch, so that what is left over after
    # a cut (and copied again into the next batch) is small.
    vectors = max(1, min(batch_rows, 1 << 16) // 2048)  # DuckDB hands rows over in vectors of 2048
    pieces, held, first = [], 0, 0
    while len(piece := con.fetch_df_chunk(vectors)):
        pieces.append(piece)
        held += len(piece)
        while held > batch_rows:
            pending = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
            end = _batch_end(pending[frame.batch_key], batch_rows)
            yield pending.iloc[:end].set_axis(pd.RangeIndex(first, first + end))
            first += end
            pieces, held = [pending.iloc[end:]], held - end
    if held or first == 0:  # the last batch; or an empty frame, with its columns
        pending = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else (pieces or [piece])[0]
        yield pending.set_axis(pd.RangeIndex(first, first + held))


def _batch_end(keys, limit: int) -> int:
    """Where the next batch ends in `keys` (sorted, more than `limit` of them): at
    the last change of key within `limit` rows. A key with more rows than that
    (all of them duplicates, unexpected anyway) is cut with at least two of its
    rows on each side, so that every batch still counts them as duplicates."""
    import numpy as np
    import pandas as pd

    if pd.isna(keys.iloc[limit]) or keys.iloc[limit] != keys.iloc[limit - 1]:  # the usual case: unique keys
        return limit
    starts_key = (keys.ne(keys.shift()) | keys.isna()).to_numpy(copy=True)  # a null key is no one's duplicate
    starts_key[0] = False
    within = np.flatnonzero(starts_key[: limit + 1])
    if len(within):
        return int(within[-1])
    after = np.flatnonzero(starts_key)
    key_end = int(after[0]) if len(after) else len(keys)
    return min(limit, key_end - 2)


def _sample_failing_rows(result, df, samples: dict[str, list[dict]]) -> None:
    """Add rows of `df` that failed an expectation to its sample, up to SAMPLE_ROWS."""
    for r in result.results:
        sample = samples.get(r.expectation_config.meta.get("id"))
        if r.success or sample is None or len(sample) >= SAMPLE_ROWS:
            continue
        indexes = (r.result or {}).get("partial_unexpected_index_list") or []
        sample.extend(_sample_rows(df, indexes[: SAMPLE_ROWS - len(sample)]))


def combine_results(batch_results: list):
    """One GX suite result for a frame validated in batches, as GX reports the
    whole frame: per expectation the batches' counts added up and formatted by
    GX, unexpected values and row numbers in frame order up to GX's usual list
    length. An expectation GX could not evaluate in some batch keeps that
    batch's result, so it stays not evaluated."""
    if len(batch_results) == 1:
        return batch_results[0]
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import _format_map_output  # noqa: PLC2701 - no public API formats a result map
    from great_expectations.expectations.expectation_configuration import parse_result_format
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    result_format = parse_result_format({"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED})
    first = batch_results[0]
    combined = []
    for r in first.results:
        eid = r.expectation_config.meta.get("id")
        per_batch = [x for b in batch_results for x in b.results if x.expectation_config.meta.get("id") == eid]
        counts = [dict(x.result or {}) for x in per_batch]
        raised = next((x for x in per_batch if _raised(x.exception_info)), None)
        if raised is not None:
            combined.append(raised)
            continue
        if len(per_batch) != len(batch_results) or any("element_count" not in c for c in counts):
            combined.append(
                ExpectationValidationResult(
                    success=False,
                    expectation_config=r.expectation_config,
                    result={},
                    meta=r.meta,
                    exception_info={
                        "raised_exception": True,
                        "exception_traceback": None,
                        "exception_message": "a batch gave no counts to add up",
                    },
                )
            )
            continue
        element_count = sum(c["element_count"] for c in counts)
        nonnull_count = (
            None
            if any("missing_count" not in c for c in counts)
            else element_count - sum(c["missing_count"] for c in counts)
        )
        success = all(x.success for x in per_batch)
        formatted = _format_map_output(
            result_format,
            success,
            element_count=element_count,
            nonnull_count=nonnull_count,
            unexpected_count=sum(c.get("unexpected_count") or 0 for c in counts),
            unexpected_list=[v for c in counts for v in c.get("partial_unexpected_list", [])],
            unexpected_index_list=[i for c in counts for i in c.get("partial_unexpected_index_list", [])],
        )
        combined.append(
            ExpectationValidationResult(
                success=success,
                expectation_config=r.expectation_config,
                result=formatted["result"],
                meta=r.meta,
                exception_info=r.exception_info,
            )
        )
    statistics = calc_validation_statistics(combined)
    return ExpectationSuiteValidationResult(
        success=statistics.success,
        results=combined,
        suite_name=first.suite_name,
        suite_parameters=first.suite_parameters,
        batch_id=first.batch_id,
        statistics={
            "evaluated_expectations": statistics.evaluated_expectations,
            "successful_expectations": statistics.successful_expectations,
            "unsuccessful_expectations": statistics.unsuccessful_expectations,
            "success_percent": statistics.success_percent,
        },
        meta={**first.meta, "batches": len(batch_results)},
    )


def run_frame(validation, con, suite: Suite, frame: Frame, parameters: dict, batch_rows: int | None = None) -> FrameRun:
    """Build one frame with DuckDB and run its ValidationDefinition on it: whole,
    or batch by batch when it has a batch_key."""
    started = time.monotonic()
    configs = suite.expectations_of(frame.name)
    batch_rows = batch_rows or gate_batch_rows()
    results = []
    samples: dict[str, list[dict]] = {e["meta"]["id"]: [] for e in configs}
    rows = 0
    try:
        for df in frame_batches(con, frame, batch_rows):
            if len(df) == 0:
                break
            result = validation.run(
                batch_parameters={"dataframe": df}, expectation_parameters=parameters, result_format=RESULT_FORMAT
            )
            _sample_failing_rows(result, df, samples)
            scrub_gx_result(result)
            results.append(result)
            rows += len(df)
            if frame.batch_key:
                log.info(
                    "%s: batch %d, %d rows (%d so far), %.1fs",
                    validation.name,
                    len(results),
                    len(df),
                    rows,
                    time.monotonic() - started,
                )
    except Exception as exc:  # noqa: BLE001 - any failure to build or validate the frame is reported per check
        msg = f"frame {frame.name!r} could not be computed: {exc}"
        log.error("%s: %s", suite.name, msg)
        return FrameRun(not_evaluated(suite, frame, msg), seconds=time.monotonic() - started, batches=len(results))

    if rows == 0:
        return FrameRun(empty_frame_checks(con, suite, frame, configs), rows=0, seconds=time.monotonic() - started)

    result = combine_results(results)
    checks = interpret(suite, frame, configs, result, samples)
    return FrameRun(
        checks, result, validation.name, rows=rows, seconds=time.monotonic() - started, batches=len(results)
    )


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


def interpret(
    suite: Suite, frame: Frame, configs: list[dict], result, failing_rows: dict[str, list[dict]] | None = None
) -> list[CheckResult]:
    """GX results as CheckResults. The one place that decides what counts as
    evaluated: an expectation that raised, saw no rows, or returned no metric
    is a failure, never a pass."""
    by_id = {r.expectation_config.meta.get("id"): r for r in result.results}
    checks = []
    for e in configs:
        r = by_id.get(e["meta"]["id"])
        if r is None:
            checks.append(
                _check(
                    suite, frame, e, success=False, evaluated=False, note="GX returned no result for this expectation"
                )
            )
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
        checks.append(
            _check(
                suite,
                frame,
                e,
                success=bool(r.success) and evaluated,
                evaluated=evaluated,
                observed_value=_observed(res),
                note=scrub(note),
                failing_rows=[] if r.success else (failing_rows or {}).get(e["meta"]["id"], []),
            )
        )
    return checks


def run_suite(context, con, suite: Suite, parameters: dict) -> list[FrameRun]:
    """Validate every frame of the suite that has expectations, frame by frame.
    A frame's rows reach GX as DataFrames handed to the suite's one dataframe
    asset at run time (GX stores a data source again with every asset added,
    so one asset per frame cost more than it told)."""
    batch_definition = (
        context.data_sources.add_pandas(suite.name)
        .add_dataframe_asset("frames")
        .add_batch_definition_whole_dataframe("whole")
    )
    runs = []
    for frame in suite.frames.values():
        if not suite.expectations_of(frame.name):
            continue
        run = run_frame(add_validation(context, batch_definition, suite, frame), con, suite, frame, parameters)
        log.info(
            "%s.%s: %s rows%s, %d checks, %d failed, %.2fs",
            suite.name,
            frame.name,
            run.rows,
            f" in {run.batches} batches" if frame.batch_key else "",
            len(run.checks),
            sum(not c.success for c in run.checks),
            run.seconds,
        )
        runs.append(run)
    return runs
