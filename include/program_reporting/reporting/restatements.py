"""A run's restatements: the previously published cells its candidate set
changes, old -> new, grouped by the deliveries that touched them.

What is compared: the run's candidate set (audit/<run_id>/kpi.duckdb, where
it is while the report is written, published or withheld) with the set
published before it (core/published.py, previous_run), on every date that set covered
(up to its last as_of_date). After a published night that is every date
before the run's business date; after withheld nights the dates no
publication showed yet are left out (they are new, not restated), and a
re-run of an earlier date (how a re-delivered old date is published, see
docs/orchestration.md) shows that date and the later ones too.

What is new: the rows landed since the previous set was built and before the
candidate was built (run_info.built_at of each; every raw row carries its
`_landed_at`, a release stamps the rows it releases). Each delivery or
release among them is a possible cause:

- late postings: rows of a first delivery of a date that take effect on a
  date the previous publication covered (normally: dated before their
  delivery's ds). Credit events by their event date (local date of event_at
  in the program's time zone); merchants by the local date of updated_at,
  or enrolled_on for a merchant the previous publication did not know;
  employment reports from the first day of their month;
- corrections: a date delivered again with other content (another checksum
  or other loaded rows), which replaces its earlier delivery entirely
  (extracts.md); and employment reports re-reporting a (merchant, month)
  the previous publication already had;
- re-deliveries: a date landed again with the same content (same checksum
  and loaded rows). They load the same rows, so they explain no change:
  listed, never attributed;
- held rows released: orphans of earlier dates released since (dated as above).

Attribution (ATTRIBUTION, said in every report): a changed cell of program P
and date d is attributed to every delivery or release whose rows of program
P take effect on or before d. A corrected date's replaced rows are gone, so
a correction of a whole date reaches every program from its record's
touches_from (which covers the replaced delivery). A cell with several
causes counts under each (so per-cause totals may add up to more than the
total); a cell that none explains counts under "no delivery of this night"
(reference data, a change of the project, or rows landed while the previous
set was being built).

Bounded work: the diff is counted in DuckDB per table, program and date
(core/published.py, diff_counts) and only CELLS_LISTED cells per table are listed; the
night's new rows are read from their own parquet files, joined in DuckDB to
the merchants they name (for their program) and, for employment reports,
to the report partitions their months can be in. Nothing loads a history
into Python.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb

from program_reporting.core import published as history  # the history of published sets
from program_reporting.core import settings
from program_reporting.core.published import KPI_TABLES
from program_reporting.core.redaction import is_pii_column, redact_text
from program_reporting.core.settings import SOURCES, Paths
from program_reporting.landing.store import RECORD, committed_files

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CELLS_LISTED = 2000  # changed cells report.json lists per table; the counts are always exact
KINDS = {
    "late_posting": "late postings",
    "correction": "corrections",
    "re_delivery": "re-deliveries",
    "released": "held rows released",
    "none": "no delivery of this night",
}
ATTRIBUTION = (
    "A changed cell of program P and date d is attributed to each delivery or release new since the previous "
    "publication whose rows of program P take effect on or before d (a date delivered again with other content: "
    "every program, from the earliest date it or the delivery it replaced touches); a cell with several causes "
    "counts under each, and one that none explains under “no delivery of this night”."
)


@dataclass
class Cause:
    """A delivery or release of the night, as the cause of one kind of change."""

    id: str
    kind: str
    source: str
    ds: str  # the delivery's business date (for a release: the held rows' date)
    what: str
    landed_at: str | None
    delivery_rows: int = 0  # its rows of this kind that take effect on a compared date
    reach: dict[str | None, dt.date] = field(default_factory=dict)  # program (None: every) -> earliest date

    def touches(self, program: str, day: dt.date) -> bool:
        return any(earliest <= day for prog, earliest in self.reach.items() if prog is None or prog == program)


# --------------------------------------------------------------------------- the section


def section(run_id: str, ds: str, candidate: Path | None, published: bool, paths: Paths) -> dict:
    """The restatements section of a run's report (see the module's docstring).

    Never raises: what stops the computation is said in the section (the
    report, and the publication, stand without it)."""
    started = time.monotonic()
    base = {"published": published, "attribution": ATTRIBUTION, "cells": 0, "rows": 0}
    try:
        section = _restatements(run_id, ds, candidate, paths)
    except Exception as exc:  # noqa: BLE001 - the report says why; the figures are not held back for it
        log.error("run %s: the restatements could not be computed: %s", run_id, exc, exc_info=True)
        # an error's text can quote a value: redacted like every text the report shows
        note = redact_text(f"the restatements could not be computed: {type(exc).__name__}: {exc}")
        section = {"status": "error", "note": note}
    section = {**base, **section, "seconds": round(time.monotonic() - started, 3)}
    log.info("run %s: %s restated cell(s) in %.2fs", run_id, section["cells"], section["seconds"])
    return section


def _restatements(run_id: str, ds: str, candidate: Path | None, paths: Paths) -> dict:
    settings.parse_ds(ds)
    previous = history.previous_run(run_id, paths)
    if previous is None:
        return {"status": "first publication", "note": "nothing was published before this run: nothing is restated"}
    if candidate is None or not candidate.is_file():
        return {"status": "no candidate", "note": "the run staged no candidate set: there is nothing to compare"}
    prev_built, through = _set_facts(previous.path)
    this_built, _ = _set_facts(candidate)
    out: dict = {
        "status": "computed",
        "previous_run": {
            "run_id": previous.run_id,
            "ds": previous.ds,
            "published_at": previous.published_at.isoformat(),
            "built_at": prev_built.isoformat() if prev_built else None,
        },
        "candidate": {"path": _relative(candidate, paths), "built_at": this_built.isoformat() if this_built else None},
        "compared_through": through.isoformat() if through else None,
    }
    if through is None:
        return {**out, "note": "the previous set holds no dates"}
    before = (through + dt.timedelta(days=1)).isoformat()
    counts = history.diff_counts(previous.path, candidate, before=before)
    if not counts:
        return out
    causes = (
        night_causes(paths, prev_built, this_built, through, _previous_deliveries(previous, paths), previous.ds)
        if prev_built and this_built
        else []
    )
    changes = history.diff_sets(previous.path, candidate, before=before, limit=CELLS_LISTED)
    return {**out, **_attribute(counts, changes, causes)}


def _set_facts(path: Path) -> tuple[dt.datetime | None, dt.date | None]:
    """(built_at in UTC, last as_of_date) of a set."""
    # attached read-only to a connection of its own, as core/published.py reads sets: the file is never written
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS s (READ_ONLY)")
        built = con.execute("SELECT max(epoch_us(built_at)) FROM s.main.run_info").fetchone()[0]
        last = con.execute("SELECT max(as_of_date) FROM s.main.kpi_program_daily").fetchone()[0]
    finally:
        con.close()
    # exact to the microsecond, as _landed_at is compared with it (a float would round)
    when = EPOCH + dt.timedelta(microseconds=built) if built is not None else None
    return when, last


def _relative(path: Path, paths: Paths) -> str:
    try:
        return str(path.relative_to(paths.home))
    except ValueError:
        return str(path)


def _previous_deliveries(previous: history.PublishedRun, paths: Paths) -> dict[tuple[str, str], dict] | None:
    """The deliveries the previous publication's report says it used, by (source, ds); None without that report."""
    try:
        doc = json.loads((paths.reports / previous.run_id / "report.json").read_text(encoding="utf-8"))
        return {(str(d["source"]), str(d["ds"])): d for d in doc["deliveries"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "the report of run %s is unreadable (%s): a date landed again counts as corrected", previous.run_id, exc
        )
        return None


# --------------------------------------------------------------------------- the night's causes


def _instant(text) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def night_causes(
    paths: Paths,
    since: dt.datetime,
    until: dt.datetime,
    through: dt.date,
    previous_deliveries: dict[tuple[str, str], dict] | None,
    previous_ds: str,
) -> list[Cause]:
    """Every delivery and release landed in (since, until], as causes of the
    changes on dates up to `through` (the module's docstring says how each is
    classified). `previous_deliveries`: the deliveries the previous publication
    used (None when unknown: then a date up to `previous_ds` landed again is a
    correction)."""
    causes: list[Cause] = []
    rows_files: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SOURCES}  # source -> (file, unit, kind)
    units: dict[str, dict] = {}
    for source in SOURCES:
        for ds, entries in committed_files(paths, source).items():
            record = _read_record(paths.raw / source / f"ds={ds}" / RECORD)
            if record is None:
                continue
            landed = _instant(record.get("landed_at"))
            if landed is not None and since < landed <= until:
                kind = _delivery_kind(source, ds, record, previous_deliveries, previous_ds)
                unit = f"{source}:ds={ds}"
                units[unit] = {"source": source, "ds": ds, "record": record, "kind": kind}
                if kind == "first":
                    rows_files[source] += [(e.path, unit, "delivery") for e in entries if e.name == "rows.parquet"]
                else:
                    causes.append(_whole_date_cause(source, ds, record, kind, through))
            for release in record.get("releases") or []:
                at = _instant(release.get("at"))
                if at is None or not (since < at <= until) or not release.get("released"):
                    continue
                name = f"released-{release.get('ds')}.parquet"
                unit = f"{source}:ds={ds}:released={release.get('ds')}"
                if unit not in units and any(e.name == name for e in entries):
                    units[unit] = {"source": source, "ds": ds, "record": record, "kind": "release", "by": release}
                    rows_files[source].append((str(paths.raw / source / f"ds={ds}" / name), unit, "release"))
    if any(rows_files.values()):
        causes += _row_causes(paths, rows_files, units, since, until, through)
    order = list(KINDS)
    causes.sort(key=lambda c: (order.index(c.kind), SOURCES.index(c.source), c.ds, c.id))
    return causes


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _delivery_kind(
    source: str, ds: str, record: dict, previous: dict[tuple[str, str], dict] | None, previous_ds: str
) -> str:
    """first, correction or re_delivery: what a partition landed since the previous publication is to it."""
    if previous is None:
        return "correction" if ds <= previous_ds else "first"
    before = previous.get((source, ds))
    if before is None:
        return "first"
    same = before.get("sha256") == record.get("sha256") and before.get("loaded") == record.get("loaded")
    return "re_delivery" if same else "correction"


def _whole_date_cause(source: str, ds: str, record: dict, kind: str, through: dt.date) -> Cause:
    loaded = int(record.get("loaded") or 0)
    cause = Cause(
        id=f"{kind}:{source}:ds={ds}",
        kind=kind,
        source=source,
        ds=ds,
        what=(
            f"ds {ds} delivered again with other content ({record.get('file')}, {loaded} rows loaded): "
            "it replaces the earlier delivery of that date"
            if kind == "correction"
            else f"ds {ds} landed again with the same content ({record.get('file')}): it changes nothing by itself"
        ),
        landed_at=record.get("landed_at"),
        delivery_rows=loaded,
    )
    reach = _date(record.get("touches_from"))
    if kind == "correction" and reach is not None and reach <= through:
        cause.reach[None] = reach
    elif kind == "correction" and reach is None and loaded:
        cause.reach[None] = dt.date.min  # a record that does not say how far back it reaches: every date
    return cause


def _date(text) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(text)[:10])
    except (TypeError, ValueError):
        return None


def _sql_list(values) -> str:
    return "[" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]"


def _ts(moment: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


# what each source's new rows contribute: the columns read, and the SQL of their program and the date they take effect
_LOCAL = "CAST(({ts} AT TIME ZONE coalesce(z.time_zone, 'UTC')) AS DATE)"
_ROW_COLUMNS = {
    "merchants": "merchant_id, program_code, enrolled_on, updated_at",
    "credit_events": "merchant_id, event_at",
    "employment_reports": "merchant_id, period_month",
}


def _row_causes(
    paths: Paths,
    files: dict[str, list[tuple[str, str, str]]],
    units: dict[str, dict],
    since: dt.datetime,
    until: dt.datetime,
    through: dt.date,
) -> list[Cause]:
    """Causes of the rows of first deliveries and releases: per unit and kind,
    the earliest date each program's rows take effect and how many rows take
    effect on a compared date."""
    from program_reporting.core.reference import programs

    window = f"_landed_at > {_ts(since)} AND _landed_at <= {_ts(until)}"
    con = duckdb.connect(config=settings.duckdb_config(paths.tmp / "duckdb"))
    try:
        con.execute("CREATE TEMP TABLE zones (program_code VARCHAR, time_zone VARCHAR)")
        con.executemany("INSERT INTO zones VALUES (?, ?)", [(p.code, p.time_zone) for p in programs().values()])
        con.execute("CREATE TEMP TABLE units (file VARCHAR, unit VARCHAR, unit_kind VARCHAR)")
        for source in SOURCES:
            if not files[source]:
                continue
            con.executemany("INSERT INTO units VALUES (?, ?, ?)", files[source])
            con.execute(
                f"CREATE TEMP TABLE new_{source} AS SELECT u.unit, u.unit_kind, r.* EXCLUDE (filename) FROM "
                f"(SELECT {_ROW_COLUMNS[source]}, filename FROM read_parquet("
                f"{_sql_list(f for f, _, _ in files[source])}, filename = true, union_by_name = true) "
                f"WHERE {window}) AS r JOIN units AS u ON r.filename = u.file"
            )
        present = [s for s in SOURCES if files[s]]
        # the merchants the new rows name: their program, and whether the previous publication knew them
        named = " UNION ".join(f"SELECT merchant_id FROM new_{s}" for s in present)
        con.execute(f"CREATE TEMP TABLE named AS {named}")
        merchant_files = [e.path for entries in committed_files(paths, "merchants").values() for e in entries]
        if merchant_files:
            con.execute(
                f"CREATE TEMP TABLE merchant_facts AS SELECT merchant_id, any_value(program_code) AS program_code, "
                f"bool_or(_landed_at <= {_ts(since)}) AS known_before "
                f"FROM read_parquet({_sql_list(merchant_files)}, union_by_name = true) "
                "WHERE merchant_id IN (SELECT merchant_id FROM named) GROUP BY merchant_id"
            )
        else:
            con.execute(
                "CREATE TEMP TABLE merchant_facts (merchant_id VARCHAR, program_code VARCHAR, known_before BOOLEAN)"
            )
        queries = []
        if files["credit_events"]:
            queries.append(
                "SELECT n.unit, CASE WHEN n.unit_kind = 'release' THEN 'released' ELSE 'late_posting' END AS kind, "
                f"m.program_code, {_LOCAL.format(ts='n.event_at')} AS takes_effect "
                "FROM new_credit_events AS n LEFT JOIN merchant_facts AS m USING (merchant_id) "
                "LEFT JOIN zones AS z ON z.program_code = m.program_code"
            )
        if files["merchants"]:
            local = _LOCAL.format(ts="n.updated_at")
            queries.append(
                "SELECT n.unit, 'late_posting' AS kind, n.program_code, "
                f"CASE WHEN coalesce(m.known_before, false) THEN {local} ELSE least(n.enrolled_on, {local}) END "
                "FROM new_merchants AS n LEFT JOIN merchant_facts AS m USING (merchant_id) "
                "LEFT JOIN zones AS z ON z.program_code = n.program_code"
            )
        if files["employment_reports"]:
            _reported_before(con, paths, since)
            queries.append(
                "SELECT n.unit, CASE WHEN n.unit_kind = 'release' THEN 'released' "
                "WHEN b.merchant_id IS NOT NULL THEN 'correction' ELSE 'late_posting' END AS kind, "
                "m.program_code, n.period_month "
                "FROM new_employment_reports AS n LEFT JOIN merchant_facts AS m USING (merchant_id) "
                "LEFT JOIN reported_before AS b ON b.merchant_id = n.merchant_id AND b.period_month = n.period_month"
            )
        rows = con.execute(
            "SELECT unit, kind, program_code, min(takes_effect), count(*) FROM ("
            + " UNION ALL ".join(queries)
            + f") WHERE takes_effect <= DATE '{through.isoformat()}' GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    causes: dict[tuple[str, str], Cause] = {}
    for unit, kind, program, earliest, n in rows:
        u = units[unit]
        cause = causes.get((unit, kind))
        if cause is None:
            cause = causes[(unit, kind)] = _row_cause(unit, kind, u)
        cause.reach[program] = min(earliest, cause.reach.get(program, earliest))
        cause.delivery_rows += int(n)
    return list(causes.values())


def _reported_before(con: duckdb.DuckDBPyConnection, paths: Paths, since: dt.datetime) -> None:
    """Table reported_before: the (merchant, month) pairs of the new employment
    reports that the previous publication already had a report of. Only the
    partitions their months can be in are read (a report of month m is
    delivered on a ds in m or later)."""
    first = con.execute("SELECT min(period_month) FROM new_employment_reports").fetchone()[0]
    report_files = [
        e.path
        for ds, entries in committed_files(paths, "employment_reports").items()
        if first is not None and ds >= first.isoformat()
        for e in entries
    ]
    if not report_files:
        con.execute("CREATE TEMP TABLE reported_before (merchant_id VARCHAR, period_month DATE)")
        return
    con.execute(
        "CREATE TEMP TABLE reported_before AS SELECT DISTINCT merchant_id, period_month "
        f"FROM read_parquet({_sql_list(report_files)}, union_by_name = true) "
        f"AS r WHERE _landed_at <= {_ts(since)} AND EXISTS (SELECT 1 FROM new_employment_reports AS n "
        "WHERE n.merchant_id = r.merchant_id AND n.period_month = r.period_month)"
    )


def _row_cause(unit: str, kind: str, u: dict) -> Cause:
    source, ds, record = u["source"], u["ds"], u["record"]
    if u["kind"] == "release":
        release = u["by"]
        return Cause(
            id=f"released:{source}:ds={ds}:by={release.get('ds')}",
            kind="released",
            source=source,
            ds=ds,
            what=f"held rows of ds {ds} released on {release.get('ds')} (released-{release.get('ds')}.parquet)",
            landed_at=release.get("at"),
        )
    what = {
        "late_posting": f"rows of the delivery of ds {ds} ({record.get('file')}) dated on dates already published",
        "correction": (
            f"reports in the delivery of ds {ds} ({record.get('file')}) re-reporting a merchant's month "
            "the previous publication had"
        ),
    }[kind]
    return Cause(
        id=f"{kind}:{source}:ds={ds}",
        kind=kind,
        source=source,
        ds=ds,
        what=what,
        landed_at=record.get("landed_at"),
    )


# --------------------------------------------------------------------------- attribution


def _attribute(counts: list[history.ChangedDay], changes: list[history.CellChange], causes: list[Cause]) -> dict:
    """Totals, per table, per cause and kind, per program and date, and the listed cells with their causes."""
    days: dict[tuple[str, str], dict] = {}
    tables: dict[str, dict] = {}
    per_cause = {c.id: {"cells": 0, "rows": 0, "tables": set()} for c in causes}
    per_kind = {k: {"cells": 0, "rows": 0, "tables": set()} for k in KINDS}
    cause_of: dict[tuple[str, str], list[str]] = {}

    def add(total: dict, count: history.ChangedDay) -> None:
        total["cells"] += count.cells
        total["rows"] += count.rows
        total["tables"].add(count.table)

    for count in counts:
        day = dt.date.fromisoformat(count.as_of_date)
        ids = cause_of.setdefault(
            (count.program_code, count.as_of_date),
            [c.id for c in causes if c.touches(count.program_code, day)],
        )
        table = tables.setdefault(count.table, {"table": count.table, "cells": 0, "rows": 0})
        table["cells"] += count.cells
        table["rows"] += count.rows
        entry = days.setdefault(
            (count.program_code, count.as_of_date),
            {"program_code": count.program_code, "as_of_date": count.as_of_date, "cells": 0, "rows": 0, "causes": ids},
        )
        entry["cells"] += count.cells
        entry["rows"] += count.rows
        for cid in ids:
            add(per_cause[cid], count)
        kinds = {c.kind for c in causes if c.id in ids} or {"none"}
        for kind in kinds:
            add(per_kind[kind], count)

    listed: dict[str, list[dict]] = {t: [] for t in tables}
    for change in changes:
        program, day = change.key_value("program_code"), change.key_value("as_of_date")
        listed.setdefault(change.table, []).append(
            {
                "key": _safe(change.key_text, "key"),
                "column": change.column,
                "old": _safe(change.old, change.column),
                "new": _safe(change.new, change.column),
                "causes": cause_of.get((program, day), []),
            }
        )
    for name, table in tables.items():
        table["listed"] = len(listed.get(name, []))
        table["changes"] = listed.get(name, [])

    def totals(t: dict) -> dict:
        return {"cells": t["cells"], "rows": t["rows"], "tables": sorted(t["tables"])}

    return {
        "cells": sum(t["cells"] for t in tables.values()),
        "rows": sum(t["rows"] for t in tables.values()),
        "cells_listed_per_table": CELLS_LISTED,
        "causes": [
            {
                "kind": kind,
                "label": label,
                **totals(per_kind[kind]),
                "deliveries": [
                    {
                        "id": c.id,
                        "source": c.source,
                        "ds": c.ds,
                        "what": c.what,
                        "landed_at": c.landed_at,
                        "delivery_rows": c.delivery_rows,
                        "reach": {("every program" if p is None else p): d.isoformat() for p, d in c.reach.items()},
                        **totals(per_cause[c.id]),
                    }
                    for c in causes
                    if c.kind == kind
                ],
            }
            for kind, label in KINDS.items()
            if per_kind[kind]["cells"] or any(c.kind == kind for c in causes)
        ],
        "dates": sorted(days.values(), key=lambda d: (d["program_code"], d["as_of_date"])),
        "tables": [tables[t] for t in KPI_TABLES if t in tables],
    }


def _safe(value: str | None, column: str) -> str | None:
    """A value as the report may show it: figures and dates verbatim (a redaction
    pattern could match the digits of an amount), other text with any personal
    data redacted, and nothing of a column whose name says it holds personal data."""
    if value is None:
        return None
    if column != "key" and is_pii_column(column):
        return "[redacted:column]"
    try:
        Decimal(value)
        return value
    except InvalidOperation:
        pass
    if _date(value) is not None and len(value) == 10:
        return value
    return redact_text(value)
