"""Build the warehouse for a business date: `dbt build` of dbt_project/ (seeds,
staging, intermediate, facts, the three published kpi_ marts, and every data
and unit test) into $PROGRAM_REPORTING_HOME/warehouse/warehouse.duckdb.

Incremental by default: only business dates from `restate_from` on are
recomputed. restate_from is the earliest business date that the deliveries
landed (or re-landed, or given released orphans) since the last successful
build can change, taken from their reconciliation records (touches_from);
the build log in the warehouse (table _build_log) remembers what each
successful build has seen. The plan reaches dbt as the table _build_plan,
read by the models when they run, so dbt does not parse the project again
each night (it would with --vars). Finer still, staging re-reads only the credit
partitions from the earliest changed one (reload_from), the employment reports
likewise (reports_reload_from), and the credit-line
states restate line by line from the rows landed since the last build
(new_rows_since; docs/warehouse.md). --full-refresh rebuilds everything from
the raw layer and gives identical tables.

Examples:
  program-reporting build --ds 2020-06-30
  program-reporting build --ds 2020-06-30 --full-refresh
  program-reporting build --ds 2020-06-30 --audit RUN_ID   (also stage audit/RUN_ID/kpi.duckdb)

Exit status: 0 built and every error-severity test passed; 1 the build failed
(the failing models and tests are named); 2 bad arguments or nothing landed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

import duckdb

from program_reporting.core import reference, settings
from program_reporting.core.settings import DBT_PROJECT_DIR, SOURCES, Paths, parse_ds

log = logging.getLogger(__name__)

KPI_TABLES = ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress")
FULL_HISTORY = "1900-01-01"
BUILD_LOG = "_build_log"
BUILD_DELIVERIES = "_build_deliveries"
_FAILED = {"error", "fail", "runtime error"}


class BuildFailed(RuntimeError):
    """dbt build did not complete; `nodes` names every failing model or test."""

    def __init__(self, message: str, nodes: list[str] | None = None):
        self.nodes = list(nodes or [])
        super().__init__(message)


# --------------------------------------------------------------------------
# what changed since the last successful build


def deliveries(paths: Paths) -> list[dict]:
    """The reconciliation record of every raw partition. A partition without
    one (written by other tools) gets a stand-in whose version is its files'
    names, sizes and modification times."""
    out = []
    for source in SOURCES:
        root = paths.raw / source
        if not root.is_dir():
            continue
        for part in sorted(root.glob("ds=*")):
            files = sorted(p for p in part.iterdir() if p.is_file())
            if not files:
                continue
            try:
                record = json.loads((part / "_reconciliation.json").read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
                record = {"landed_at": repr(stats), "touches_from": None, "loaded": None, "delivered": None}
            record["source"], record["ds"] = source, part.name[3:]
            out.append(record)
    return out


def _version(record: dict) -> str:
    """Changes whenever landing replaces the partition or releases orphans into it."""
    releases = record.get("releases") or []
    return "|".join([str(record.get("landed_at")), str(len(releases)), str(releases[-1].get("at") if releases else "")])


def _previous_build(db: Path) -> dict | None:
    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not {BUILD_LOG, BUILD_DELIVERIES, "int_credit_line_states", "stg_merchants"} <= tables:
            return None
        last = con.execute(
            f"SELECT run_id, ds, loaded_through FROM {BUILD_LOG} WHERE succeeded ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
        if last is None:
            return None
        seen = {
            (s, str(d)): v for s, d, v in con.execute(f"SELECT source, ds, version FROM {BUILD_DELIVERIES}").fetchall()
        }
        return {"run_id": last[0], "ds": str(last[1]), "loaded_through": last[2], "seen": seen}
    finally:
        con.close()


def _merchant_touches(paths: Paths, db: Path, changed_ds: list[str]) -> dt.date | None:
    """Earliest business date a changed merchants partition can move credit
    figures between segments: a version written on day u re-segments the
    merchant's lines from u (UTC date - 1, a margin for every time zone); a
    partition that holds (or held) a merchant's earliest version re-segments
    its lines' whole history (kpis.md: before a merchant is known its earliest
    version decides). Employment and merchant figures themselves are rebuilt
    whole each night, so they need no restatement."""
    if not changed_ds:
        return None
    glob = str(paths.raw / "merchants" / "ds=*" / "*.parquet").replace("'", "''")
    con = duckdb.connect(config=settings.duckdb_config(paths.tmp / "duckdb"))
    try:
        con.execute(f"ATTACH '{str(db)}' AS wh (READ_ONLY)")
        con.execute("CREATE TEMP TABLE changed AS SELECT CAST(unnest(?) AS DATE) AS ds", [changed_ds])
        # Only merchants with a row in a changed partition (now or at the last
        # build) can be touched or have their earliest version rewritten: the
        # rest of the register is read for those merchants alone.
        row = con.execute(f"""
            WITH now_raw AS (
                SELECT merchant_id, updated_at, _ds
                FROM read_parquet('{glob}', union_by_name = true, hive_partitioning = false)
            ),
            before AS (SELECT merchant_id, updated_at, _ds FROM wh.stg_merchants),
            touched AS (
                SELECT merchant_id, updated_at FROM now_raw WHERE _ds IN (SELECT ds FROM changed)
                UNION ALL
                SELECT merchant_id, updated_at FROM before WHERE _ds IN (SELECT ds FROM changed)
            ),
            candidates AS (SELECT DISTINCT merchant_id FROM touched),
            first_now AS (
                SELECT merchant_id, min(updated_at) AS first_at FROM now_raw
                WHERE merchant_id IN (SELECT merchant_id FROM candidates) GROUP BY merchant_id
            ),
            first_before AS (
                SELECT merchant_id, min(updated_at) AS first_at FROM before
                WHERE merchant_id IN (SELECT merchant_id FROM candidates) GROUP BY merchant_id
            ),
            rewritten AS (
                SELECT merchant_id FROM now_raw JOIN first_now USING (merchant_id)
                WHERE now_raw.updated_at = first_now.first_at AND now_raw._ds IN (SELECT ds FROM changed)
                UNION
                SELECT merchant_id FROM before JOIN first_before USING (merchant_id)
                WHERE before.updated_at = first_before.first_at AND before._ds IN (SELECT ds FROM changed)
            )
            SELECT least(
                (SELECT min(CAST(timezone('UTC', updated_at) AS DATE)) - 1 FROM touched),
                -- the staged events, not the view int_credit_events (its joins cost
                -- 10 s at 1M merchants); UTC date - 1 is on or before the local date
                (SELECT min(CAST(timezone('UTC', e.event_at) AS DATE)) - 1 FROM wh.stg_credit_events AS e
                 WHERE e.merchant_id IN (SELECT merchant_id FROM rewritten))
            )""").fetchone()
        return row[0]
    finally:
        con.close()


def _releases_since(record: dict, seen: str | None) -> list[dict] | None:
    """The orphan releases added to a partition since the last build saw it
    (the version that _version wrote), or None when that build did not see
    this very landing: a new partition, or one delivered again since."""
    if seen is None:
        return None
    seen_landed_at, seen_releases, _ = (seen.rsplit("|", 2) + ["", ""])[:3]
    if seen_landed_at != str(record.get("landed_at")) or not seen_releases.isdigit():
        return None
    return (record.get("releases") or [])[int(seen_releases) :]


def _credit_touches(record: dict, seen: str | None) -> str | None:
    """Earliest date a changed credit_events partition can move. When the last
    build saw this very landing and only orphan releases were added since,
    only those releases count: an old partition that receives a few released
    orphans does not restate the reach of its whole original delivery (up to
    30 days back, extracts.md). Otherwise the partition's touches_from; a
    record without one although rows landed cannot be trusted: everything."""
    new = _releases_since(record, seen)
    if new is not None and all("touches_from" in rel for rel in new):  # older releases did not carry it
        reach = [rel["touches_from"] for rel in new if rel["touches_from"]]
        return min(reach) if reach else None
    if record.get("touches_from"):
        return record["touches_from"]
    if record.get("loaded") is None or record.get("loaded") or record.get("delivered"):
        return FULL_HISTORY
    return None


def _gone_partitions(previous: dict, records: list[dict], source: str = "credit_events") -> list[str]:
    """The source's partitions the last build saw that are no longer there."""
    present = {str(r["ds"]) for r in records if r["source"] == source}
    return [ds for s, ds in previous["seen"] if s == source and ds not in present]


def _rows_changed(record: dict, seen: str | None) -> bool:
    """Whether a changed partition's rows can differ from what the last build
    read. Not when only orphan releases that released no row were added since
    (held orphans quarantined after their 7 days: every night, into the
    partitions of a week before)."""
    new = _releases_since(record, seen)
    return new is None or any(rel.get("released", 1) != 0 for rel in new)


def _earliest_reread(previous: dict, records: list[dict], changed: list[dict], source: str) -> str:
    """The earliest partition of `source` whose rows changed (or that disappeared)
    since the last build, or the first new ds: staging re-reads from there on."""
    moved = [
        str(r["ds"])
        for r in changed
        if r["source"] == source and _rows_changed(r, previous["seen"].get((source, str(r["ds"]))))
    ]
    moved += _gone_partitions(previous, records, source)
    if previous["loaded_through"] is not None:
        moved.append((previous["loaded_through"] + dt.timedelta(days=1)).isoformat())
    return min(moved) if moved else FULL_HISTORY


def reload_from(previous: dict, records: list[dict], changed: list[dict]) -> str:
    """Where staging re-reads the credit_events partitions from, and no older
    one (the first copy of an event wins: every later copy is re-read too)."""
    return _earliest_reread(previous, records, changed, "credit_events")


def reports_reload_from(previous: dict, records: list[dict], changed: list[dict]) -> str:
    """Where staging re-reads the employment_reports partitions from (the copy
    of a report from the latest delivery wins, so a re-read copy replaces any
    older one). After a re-delivery of a partition seen before, or one gone,
    every partition: a report's older copy, replaced in the table since, may
    win again."""
    source = "employment_reports"
    replaced = _gone_partitions(previous, records, source) or any(
        r["source"] == source
        and (seen := previous["seen"].get((source, str(r["ds"])))) is not None
        and _releases_since(r, seen) is None
        for r in changed
    )
    return FULL_HISTORY if replaced else _earliest_reread(previous, records, changed, source)


NOTHING_NEW = "9999-12-31T00:00:00+00:00"


def new_rows_since(previous: dict, records: list[dict], changed: list[dict]) -> str | None:
    """The landing time of the earliest credit_events delivery or orphan release
    that the last build has not seen: every row landed since is new, and the
    line states restate line by line (int_credit_line_restates). None when that
    is not exact, and the states restate whole from restate_from: a partition
    seen before was delivered again or is gone (its old rows may be gone), a
    record cannot be read, or a benchmark rate changes in the new dates (every
    line changes)."""
    before = previous["loaded_through"]
    if before is None:
        return None
    if _gone_partitions(previous, records):
        return None
    through = max((dt.date.fromisoformat(str(r["ds"])) for r in records), default=before)
    if any(
        before.isoformat() < str(day) <= through.isoformat() for _currency, day, _rate in reference.benchmark_rates()
    ):
        return None
    stamps = []
    for r in changed:
        if r["source"] != "credit_events":
            continue
        seen = previous["seen"].get((r["source"], str(r["ds"])))
        if seen is None:  # a partition new to the warehouse: all its rows are new
            stamps.append(r.get("landed_at"))
            continue
        new = _releases_since(r, seen)
        if new is None:
            return None  # delivered again
        stamps += [rel.get("at") for rel in new]
    try:
        times = [dt.datetime.fromisoformat(str(s)) for s in stamps]
    except ValueError:
        return None
    if any(t.tzinfo is None for t in times):
        return None
    return min(times).isoformat() if times else NOTHING_NEW


def plan_build(paths: Paths, records: list[dict], full_refresh: bool = False) -> dict:
    """What the next build does, given every delivery's record: restate_from,
    full_refresh, the changed deliveries, reload_from, reports_reload_from, and (line by line)
    new_rows_since and loaded_through_before; line_passes (a full build on
    DuckDB)."""
    previous = None if full_refresh else _previous_build(paths.warehouse_db)
    if previous is None:
        passes = line_passes(records) if settings.warehouse_target() == "duckdb" else None
        return {
            "restate_from": FULL_HISTORY,
            "full_refresh": True,
            "changed": records,
            "reload_from": FULL_HISTORY,
            "reports_reload_from": FULL_HISTORY,
            "new_rows_since": None,
            "loaded_through_before": None,
            "line_passes": passes,
        }
    changed = [r for r in records if previous["seen"].get((r["source"], str(r["ds"]))) != _version(r)]
    candidates: list[dt.date] = []
    # New dates at the end of the spine: overdue thresholds and rate changes dated there.
    if previous["loaded_through"] is not None:
        candidates.append(previous["loaded_through"] + dt.timedelta(days=1))
    for r in changed:
        if r["source"] == "credit_events":
            touched = _credit_touches(r, previous["seen"].get((r["source"], str(r["ds"]))))
            if touched:
                candidates.append(dt.date.fromisoformat(str(touched)))
    merchants_changed = [str(r["ds"]) for r in changed if r["source"] == "merchants"]
    touched = _merchant_touches(paths, paths.warehouse_db, merchants_changed)
    if touched is not None:
        candidates.append(touched)
    restate = min(candidates) if candidates else dt.date.fromisoformat(FULL_HISTORY)
    since = new_rows_since(previous, records, changed)
    return {
        "restate_from": restate.isoformat(),
        "full_refresh": False,
        "changed": changed,
        "reload_from": reload_from(previous, records, changed),
        "reports_reload_from": reports_reload_from(previous, records, changed),
        "new_rows_since": since,
        "loaded_through_before": previous["loaded_through"].isoformat() if since else None,
        "line_passes": None,
    }


# --------------------------------------------------------------------------
# dbt


@contextlib.contextmanager
def _dbt_environment(paths: Paths):
    """dbt reads PROGRAM_REPORTING_HOME (profiles.yml, sources); set it from paths for the call."""
    keys = ("PROGRAM_REPORTING_HOME", "DBT_SEND_ANONYMOUS_USAGE_STATS", "DO_NOT_TRACK")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["PROGRAM_REPORTING_HOME"] = str(paths.home)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    os.environ["DO_NOT_TRACK"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dbt_args(command: list[str], paths: Paths) -> list[str]:
    work = paths.home / "warehouse"
    return command + [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        # per-home target and logs: parallel homes (tests, backfills) never share state
        "--target-path",
        str(work / "dbt_target"),
        "--log-path",
        str(work / "dbt_logs"),
        "--no-use-colors",
    ]


def _invoke(args: list[str], paths: Paths):
    from dbt.cli.main import dbtRunner

    with _dbt_environment(paths):
        try:
            return dbtRunner().invoke(args)
        finally:
            _release_duckdb()


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance open after an in-process invocation;
    close it so that this process (stage_audit, the build log) and others can
    open warehouse.duckdb afterwards."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            DuckDBConnectionManager._ENV = None


def _node_results(result) -> list[tuple[str, str, str]]:
    out = []
    for r in getattr(result.result, "results", None) or []:
        node = getattr(r, "node", None)
        name = getattr(node, "unique_id", None) or getattr(node, "name", "?")
        out.append((name, str(getattr(r.status, "value", r.status)), (r.message or "").strip()))
    return out


def build(ds: str, run_id: str, full_refresh: bool = False, paths: Paths | None = None) -> dict:
    """`dbt build` for business date ds; returns a summary dict; raises BuildFailed."""
    parse_ds(ds)
    paths = paths or settings.paths()
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    records = deliveries(paths)
    if not records:
        raise BuildFailed(f"nothing to build: no landed delivery under {paths.raw} (land the sources first)")
    paths.warehouse_db.parent.mkdir(parents=True, exist_ok=True)
    plan = plan_build(paths, records, full_refresh)
    restate, full, changed = plan["restate_from"], plan["full_refresh"], plan["changed"]
    loaded_through = max(dt.date.fromisoformat(str(r["ds"])) for r in records)
    log.info(
        "build ds=%s run_id=%s: %s (%d deliveries changed since the last build)",
        ds,
        run_id,
        "full refresh"
        if full
        else f"restating from {restate} ({'line by line, rows landed since ' + plan['new_rows_since'] if plan['new_rows_since'] else 'every line'}), "
        f"credit events re-read from ds {plan['reload_from']}, employment reports from ds "
        f"{plan['reports_reload_from']}",
        len(changed),
    )
    args = _dbt_args(["build"], paths)
    if full:
        args.append("--full-refresh")
    else:
        # Unit tests check the SQL on static inputs, which no night changes: dbt's
        # advice is to run them in development and CI (make test), not in every
        # production run. A full build still runs them.
        args += ["--exclude-resource-type", "unit_test"]
        if settings.warehouse_target() == "duckdb":
            # A night's models are small: two at a time, the merchant side runs beside
            # the credit side (and tests beside models) on the second core. A full
            # build keeps one at a time, within one memory limit. (One at a time did
            # not save the 5M x 180 night either: docs/performance.md.)
            args += ["--threads", "2"]
    if plan["line_passes"] and plan["line_passes"] > 1:
        log.info(
            "int_credit_line_states: %d passes over the lines (at most %d stored credit events each)",
            plan["line_passes"],
            settings.line_pass_events(),
        )
    _write_plan(paths, {k: plan[k] for k in PLAN_KEYS})
    try:
        result = _invoke(args, paths)
    finally:
        _write_plan(paths, None)
    nodes = _node_results(result)
    failed = [f"{name} ({status}): {message}"[:500] for name, status, message in nodes if status in _FAILED]
    warned = [f"{name}: {message}"[:300] for name, status, message in nodes if status == "warn"]
    seconds = round(time.perf_counter() - started, 1)
    _write_build_log(
        paths,
        run_id,
        ds,
        restate,
        full,
        loaded_through,
        records,
        started_at,
        succeeded=bool(result.success and not failed),
    )
    if not result.success or failed:
        cause = failed or [repr(result.exception) if result.exception else "dbt reported failure"]
        raise BuildFailed(
            f"dbt build for ds={ds} failed after {seconds}s: " + "; ".join(cause[:10]),
            nodes=[f.split(" ", 1)[0] for f in failed],
        )
    for w in warned:
        log.warning("dbt warning: %s", w)
    log.info("build ds=%s done in %ss: %d nodes, %d warnings", ds, seconds, len(nodes), len(warned))
    return {
        "ds": ds,
        "run_id": run_id,
        "full_refresh": full,
        "restate_from": restate,
        "reload_from": plan["reload_from"],
        "reports_reload_from": plan["reports_reload_from"],
        "new_rows_since": plan["new_rows_since"],
        "loaded_through": loaded_through.isoformat(),
        "changed_deliveries": len(changed),
        "line_passes": plan["line_passes"] or 1,
        "nodes": len(nodes),
        "warnings": warned,
        "seconds": seconds,
        "warehouse": str(paths.warehouse_db),
    }


PLAN = "_build_plan"
PLAN_KEYS = (
    "restate_from",
    "reload_from",
    "reports_reload_from",
    "new_rows_since",
    "loaded_through_before",
    "line_passes",
)


def line_passes(records: list[dict]) -> int:
    """Passes of a full build of int_credit_line_states (macro line_passes):
    enough that none reads more than settings.line_pass_events() events, so
    that its spill stays within the disk. A partition landed by other tools
    (no record of its rows) counts as none."""
    events = sum(r.get("loaded") or r.get("delivered") or 0 for r in records if r["source"] == "credit_events")
    return max(1, -(-events // settings.line_pass_events()))


def _write_plan(paths: Paths, plan: dict | None) -> None:
    """The plan of this build, as the table the dbt models read when they run
    (macro build_plan), or None: remove it. Not --vars: vars that change every
    night make dbt parse the whole project again each time."""
    con = duckdb.connect(str(paths.warehouse_db))
    try:
        con.execute(f"DROP TABLE IF EXISTS {PLAN}")
        if plan is not None:
            con.execute(f"CREATE TABLE {PLAN} (name VARCHAR, value VARCHAR)")
            con.executemany(
                f"INSERT INTO {PLAN} VALUES (?, ?)", [[k, None if v is None else str(v)] for k, v in plan.items()]
            )
    finally:
        con.close()


def _write_build_log(
    paths: Paths,
    run_id: str,
    ds: str,
    restate: str,
    full: bool,
    loaded_through: dt.date,
    records: list[dict],
    started_at: dt.datetime,
    succeeded: bool,
) -> None:
    con = duckdb.connect(str(paths.warehouse_db))
    try:
        con.execute(f"""CREATE TABLE IF NOT EXISTS {BUILD_LOG} (
            run_id VARCHAR, ds DATE, restate_from DATE, full_refresh BOOLEAN, loaded_through DATE,
            started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, succeeded BOOLEAN)""")
        con.execute(f"CREATE TABLE IF NOT EXISTS {BUILD_DELIVERIES} (source VARCHAR, ds DATE, version VARCHAR)")
        con.execute("BEGIN")
        con.execute(
            f"INSERT INTO {BUILD_LOG} VALUES (?, ?, ?, ?, ?, ?, now(), ?)",
            [run_id, ds, restate, full, loaded_through, started_at, succeeded],
        )
        if succeeded:
            # what this build has seen: the next one restates from what changed since
            con.execute(f"DELETE FROM {BUILD_DELIVERIES}")
            if records:
                con.executemany(
                    f"INSERT INTO {BUILD_DELIVERIES} VALUES (?, ?, ?)",
                    [[r["source"], str(r["ds"]), _version(r)] for r in records],
                )
        con.execute("COMMIT")
    finally:
        con.close()


# --------------------------------------------------------------------------
# audit set, manifest


def stage_audit(run_id: str, ds: str, paths: Paths | None = None) -> Path:
    """Copy the three kpi_ marts into a new audit/<run_id>/kpi.duckdb (plus run_info)."""
    parse_ds(ds)
    paths = paths or settings.paths()
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ValueError(f"run_id {run_id!r} cannot name a folder")
    target_dir = paths.audit / run_id
    target = target_dir / "kpi.duckdb"
    paths.tmp.mkdir(parents=True, exist_ok=True)
    scratch = paths.tmp / f"audit-{run_id}-{os.getpid()}.duckdb"
    scratch.unlink(missing_ok=True)
    con = duckdb.connect(str(scratch))
    try:
        con.execute(f"ATTACH '{str(paths.warehouse_db)}' AS wh (READ_ONLY)")
        for table in KPI_TABLES:
            order = "program_code, as_of_date" + (
                ", region, business_type, size_class"
                if table == "kpi_segment_daily"
                else ", metric"
                if table == "kpi_target_progress"
                else ""
            )
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM wh.main.{table} ORDER BY {order}")
        con.execute("CREATE TABLE run_info (run_id VARCHAR, ds DATE, built_at TIMESTAMPTZ)")
        has_log = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'wh' AND table_name = ?", [BUILD_LOG]
        ).fetchone()[0]
        built_at = (
            con.execute(f"SELECT max(finished_at) FROM wh.main.{BUILD_LOG} WHERE succeeded").fetchone()[0]
            if has_log
            else None
        )
        con.execute("INSERT INTO run_info VALUES (?, ?, coalesce(?, now()))", [run_id, ds, built_at])
        con.execute("DETACH wh")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    target_dir.mkdir(parents=True, exist_ok=True)
    os.replace(scratch, target)  # a reader never sees a half-written file
    Path(str(scratch) + ".wal").unlink(missing_ok=True)
    log.info("staged %s for run %s", target, run_id)
    return target


def ensure_manifest(force: bool = False) -> Path:
    """dbt_project/target/manifest.json (what Cosmos renders the DAG from), parsed if missing or stale."""
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    sources = [
        p
        for pattern in ("models/**/*", "macros/**/*", "seeds/**/*", "tests/**/*", "*.yml")
        for p in DBT_PROJECT_DIR.glob(pattern)
        if p.is_file()
    ]
    newest = max((p.stat().st_mtime for p in sources), default=0)
    if not force and manifest.exists() and manifest.stat().st_mtime >= newest:
        return manifest
    paths = settings.paths()
    result = _invoke(
        [
            "parse",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(DBT_PROJECT_DIR / "target"),
            "--log-path",
            str(DBT_PROJECT_DIR / "logs"),
            "--no-use-colors",
        ],
        paths,
    )
    if not result.success or not manifest.exists():
        raise BuildFailed(f"dbt parse failed: {result.exception!r}")
    return manifest
