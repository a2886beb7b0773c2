"""Set-based evaluation of landing_rules in DuckDB for one delivery (or one
partition of held orphans). Input: a table `t1` (built with t1_select)
and a view `t1l` adding _rid and _line; output: a table `bad` with
the typed values, `_rule` (first broken rule, NULL when none) and `_held`
(an orphan: its merchant is unknown).

Only the broken and held rows are materialized (table `bad`): the valid
rows are written straight from `t1` by an anti join, so a large delivery is
scanned, not copied around."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import duckdb

from program_reporting.core import contract, reference
from program_reporting.core.settings import Paths
from program_reporting.landing import key_index as landing_index
from program_reporting.landing.rules import RULES, case_sql, sql_list, sql_str, typed_expr

ORPHAN_SOURCES = ("credit_events", "employment_reports")
# The fields compared to tell a harmless repeat of an event_id from a conflict.
EVENT_COMPARED = [c.name for c in contract.CREDIT_EVENTS if c.name != "event_id"]


def _case(key: str, mapping: dict[str, str], cast: str = "") -> str:
    """A lookup in reference data as a CASE (keeps the scan a plain, order-preserving projection)."""
    arms = " ".join(f"WHEN {sql_str(k)} THEN {cast}{v}" for k, v in mapping.items())
    return f"CASE {key} {arms} END"


def program_lookup(key: str, ds: str | list[str], prefix: str) -> str:
    """Columns <prefix>country, currency, tz, ds_end (end of ds in the program's
    time zone). ds: the business date, or several (held orphans of several
    days): then ds_end is that of each row's _ds."""
    progs = reference.programs().values()

    def ends(day: str) -> str:
        after = dt.date.fromisoformat(day) + dt.timedelta(days=1)
        return _case(
            key,
            {
                p.code: sql_str(dt.datetime.combine(after, dt.time(0), tzinfo=ZoneInfo(p.time_zone)).isoformat())
                for p in progs
            },
            "TIMESTAMPTZ ",
        )

    if isinstance(ds, str):
        ds_end = ends(ds)
    else:
        ds_end = "CASE _ds " + " ".join(f"WHEN DATE '{d}' THEN {ends(d)}" for d in ds) + " END"
    return ", ".join(
        [
            _case(key, {p.code: sql_str(p.country_code) for p in progs}) + f" AS {prefix}country",
            _case(key, {p.code: sql_str(p.currency) for p in progs}) + f" AS {prefix}currency",
            _case(key, {p.code: sql_str(p.time_zone) for p in progs}) + f" AS {prefix}tz",
            f"{ds_end} AS {prefix}ds_end",
        ]
    )


def _region_known() -> str:
    countries = sorted(set(reference.regions().values()))
    arms = " ".join(
        f"WHEN {sql_str(c)} THEN list_contains({sql_list(reference.regions_of(c))}, region)" for c in countries
    )
    return f"coalesce(CASE p_country {arms} END, false) AS r_known"


def _typed_select(source: str) -> str:
    parts = []
    for col in contract.COLUMNS[source]:
        expr = typed_expr(col)
        if expr:
            parts.append(f"{expr} AS {col.name}__v")
    return ", ".join(parts)


def _event_struct(typed: bool) -> str:
    """The compared fields of a credit event, in the raw layer's types."""
    v = "__v" if typed else ""
    fields = {
        "credit_line_id": "credit_line_id",
        "merchant_id": "merchant_id",
        "event_type": "event_type",
        "event_at": f"event_at{v}",
        "amount": f"CAST(amount{v} AS DECIMAL(14,2))",
        "currency": "currency",
        "annual_interest_rate": f"CAST(annual_interest_rate{v} AS DECIMAL(12,6))",
        "due_on": f"due_on{v}",
        "goods_category": "goods_category",
    }
    assert set(fields) == set(EVENT_COMPARED)
    return "struct_pack(" + ", ".join(f"{k} := {e}" for k, e in fields.items()) + ")"


def t1_select(source: str, ds: str, rows_sql: str) -> str:
    """SELECT adding typed values and the first broken 'row' rule (_r1) to rows_sql,
    whose rows carry the contract columns as VARCHAR and _ds. A plain projection:
    run inside the CSV scan it keeps the file order in rowid."""
    extra = ""
    if source == "merchants":
        extra = ", " + program_lookup("program_code", ds, "p_")
    inner = f"SELECT *, {_typed_select(source)} {extra} FROM ({rows_sql})"
    if source == "merchants":
        inner = f"SELECT *, {_region_known()} FROM ({inner})"
    return f"SELECT *, {case_sql(RULES[source], 'row')} AS _r1 FROM ({inner})"


def evaluate(
    con: duckdb.DuckDBPyConnection,
    source: str,
    ds: str | list[str],
    *,
    paths: Paths,
    in_file: bool = True,
    history_since: dt.datetime | None = None,
) -> None:
    """From view `t1l` (t1 plus _rid and _line), create table `bad`: the rows
    breaking a rule (`_rule`) or held as orphans (`_held`), with every column.

    The history comes from the source's landing index, attached as `idx`
    (landing_index.attach): the deliveries in force with _ds < ds (event_id
    conflicts, report_id repeats, merchants changing program). For credit
    events and employment reports, table `known` holds the known merchants
    (landing_index.known_merchants). in_file: also check duplicates within
    the rows (False for held orphans, which were checked against their own
    file when it landed). ds: the delivery's business date, or the dates of
    the held partitions evaluated together (each row is then compared with the
    history before its own _ds). history_since: compare with the files the
    index learnt of after that time only (held orphans, compared with the
    history before)."""
    rules = RULES[source]
    set_cols, set_joins = _set_stage(con, source, ds, paths, in_file, history_since)
    merchant_cols, merchant_joins, held = "", "", "false"
    if source in ORPHAN_SOURCES:
        merchant_cols = ", k.merchant_id IS NOT NULL AS _known, k.program_code AS m_program"
        merchant_joins = "LEFT JOIN known k ON k.merchant_id = t1l.merchant_id"
        held = "(_r2 IS NULL AND NOT _known)"
        lookup = ", " + program_lookup("m_program", ds, "m_")
    else:
        lookup = ""
    con.execute(f"""
        CREATE OR REPLACE TABLE bad AS
        SELECT * FROM (
            SELECT *, coalesce(_r2, CASE WHEN {held} THEN NULL ELSE {case_sql(rules, "merchant")} END) AS _rule,
                   {held} AS _held
            FROM (SELECT *, coalesce(_r1, {case_sql(rules, "set")}) AS _r2 {lookup}
                  FROM (SELECT t1l.* {set_cols} {merchant_cols} FROM t1l {set_joins} {merchant_joins})))
        WHERE _rule IS NOT NULL OR _held""")


def _set_stage(
    con, source: str, ds: str | list[str], paths: Paths, in_file: bool, history_since: dt.datetime | None
) -> tuple[str, str]:
    """Tables for the 'set' rules; returns (extra select columns, joins)."""
    if source == "merchants":
        if in_file:
            con.execute("""CREATE OR REPLACE TABLE dup AS SELECT merchant_id, count(*) AS n FROM t1l
                           WHERE merchant_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1""")
        else:
            con.execute("CREATE OR REPLACE TABLE dup (merchant_id VARCHAR, n BIGINT)")
        con.execute(f"""CREATE OR REPLACE TABLE prev AS
            SELECT merchant_id, arg_max(program_code, _ds) AS program_code
            FROM idx.entries WHERE _ds < DATE '{ds}'
              AND merchant_id IN (SELECT merchant_id FROM t1l) GROUP BY 1""")
        return (
            ", dup.n AS _dup_count, prev.program_code AS _prev_program",
            "LEFT JOIN dup ON dup.merchant_id = t1l.merchant_id LEFT JOIN prev ON prev.merchant_id = t1l.merchant_id",
        )

    # In the file: the first valid row of a key wins; a later row conflicts
    # (credit events: only when a compared value differs).
    con.execute("CREATE OR REPLACE TABLE conflicts (_rid BIGINT, what VARCHAR)")
    if in_file:
        if source == "credit_events":
            con.execute(f"""INSERT INTO conflicts
                WITH firsts AS (
                    SELECT event_id, min(_line) AS first_line, arg_min({_event_struct(True)}, _line) AS v
                    FROM t1l WHERE _r1 IS NULL
                      AND event_id IN (SELECT event_id FROM t1l WHERE _r1 IS NULL GROUP BY 1 HAVING count(*) > 1)
                    GROUP BY 1)
                SELECT t1l._rid, 'on line ' || f.first_line || ' of this file'
                FROM t1l JOIN firsts f USING (event_id)
                WHERE t1l._r1 IS NULL AND t1l._line > f.first_line AND {_event_struct(True)} IS DISTINCT FROM f.v""")
        else:
            con.execute("""INSERT INTO conflicts
                WITH firsts AS (SELECT report_id, min(_line) AS first_line FROM t1l WHERE _r1 IS NULL
                                GROUP BY 1 HAVING count(*) > 1)
                SELECT t1l._rid, 'on line ' || f.first_line || ' of this file'
                FROM t1l JOIN firsts f USING (report_id)
                WHERE t1l._r1 IS NULL AND t1l._line > f.first_line""")
    # Across deliveries: a row against the partitions in force before its own _ds.
    key = landing_index.HASHED_KEY[source]
    latest = ds if isinstance(ds, str) else max(ds)
    # t1, not the view t1l: the keys need no line numbers
    earlier = landing_index.candidate_files(
        con, paths, source, latest, f"SELECT {key} FROM t1 WHERE _r1 IS NULL", added_after=history_since
    )
    if earlier:
        files = sql_list(map(str, earlier))
        if source == "credit_events":
            con.execute(f"""INSERT INTO conflicts
                WITH prev AS (SELECT event_id, _ds, {_event_struct(False)} AS v
                              FROM read_parquet({files}, union_by_name = true)
                              WHERE event_id IN (SELECT event_id FROM t1l WHERE _r1 IS NULL))
                SELECT t1l._rid, 'in the delivery of ' || min(prev._ds)
                FROM t1l JOIN prev USING (event_id)
                WHERE t1l._r1 IS NULL AND prev._ds < t1l._ds AND prev.v IS DISTINCT FROM {_event_struct(True)}
                  AND t1l._rid NOT IN (SELECT _rid FROM conflicts)
                GROUP BY t1l._rid""")
        else:
            con.execute(f"""INSERT INTO conflicts
                WITH prev AS (SELECT report_id, _ds FROM read_parquet({files}, union_by_name = true)
                              WHERE report_id IN (SELECT report_id FROM t1l WHERE _r1 IS NULL))
                SELECT t1l._rid, 'in the delivery of ' || min(prev._ds)
                FROM t1l JOIN prev USING (report_id)
                WHERE t1l._r1 IS NULL AND prev._ds < t1l._ds AND t1l._rid NOT IN (SELECT _rid FROM conflicts)
                GROUP BY t1l._rid""")
    return ", c.what AS _conflict", "LEFT JOIN conflicts c ON c._rid = t1l._rid"
