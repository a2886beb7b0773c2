"""Build the warehouse for a business date: `dbt build` of dbt_project/ (seeds,
staging, intermediate, facts, the three published kpi_ marts, and every data
and unit test) into $PROGRAM_REPORTING_HOME/warehouse/warehouse.duckdb (or
PostgreSQL on the dbt target `postgres`, or Apache Spark with
PROGRAM_REPORTING_ENGINE=spark: warehouse/spark/ in session mode, spark.py).

Incremental by default: only business dates from restate_from on are
recomputed, and finer still, only the partitions, credit lines and merchants
that changed. dbt decides that plan itself: the model int_build_plan
(dbt_project/macros/restatement/, doc restatement_plan) reads the landing's
reconciliation records and the build log as data, and the incremental models
read the plan when they run, so dbt does not parse the project again each
night (it would with --vars). This module hands dbt those records verbatim
(build_log.py) and --full-refresh (when asked, or when the warehouse has no
successful build yet), nothing else; afterwards it records the build in the
build log, from which the next night's plan starts. --full-refresh rebuilds
everything from the raw layer and gives identical tables (docs/warehouse.md).

After a successful build, still holding the warehouse, it runs `dbt source
freshness` and `dbt docs generate` into warehouse/catalog/ (catalog.py): the
freshness of the landed sources, which the marts gate judges, and the dbt
docs page each run's report links. stage_audit puts both beside the
candidate set.

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
import logging
import os
import shutil
import time
from pathlib import Path

import duckdb

from program_reporting.core import settings
from program_reporting.core.published import KPI_KEYS
from program_reporting.core.settings import DBT_PROJECT_DIR, Paths, parse_ds
from program_reporting.warehouse import build_log, catalog, dbt_results

log = logging.getLogger(__name__)

FULL_HISTORY = "1900-01-01"
NOTHING_NEW = "9999-12-31T00:00:00+00:00"  # the plan's new_rows_since when nothing is new


class BuildFailed(RuntimeError):
    """dbt build did not complete; `nodes` names every failing model or test."""

    def __init__(self, message: str, nodes: list[str] | None = None):
        self.nodes = list(nodes or [])
        super().__init__(message)


# --------------------------------------------------------------------------
# dbt


@contextlib.contextmanager
def _dbt_environment(paths: Paths):
    """dbt reads PROGRAM_REPORTING_HOME (profiles.yml, sources); set it from paths for the call.
    On DuckDB, a pass over the credit lines (macro line_pass_events) follows its memory limit."""
    keys = (
        "PROGRAM_REPORTING_HOME",
        "PROGRAM_REPORTING_LINE_PASS_EVENTS",
        "DBT_SEND_ANONYMOUS_USAGE_STATS",
        "DO_NOT_TRACK",
    )
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["PROGRAM_REPORTING_HOME"] = str(paths.home)
    if settings.dbt_target() == "duckdb":
        os.environ["PROGRAM_REPORTING_LINE_PASS_EVENTS"] = str(settings.line_pass_events())
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


def dbt_target(paths: Paths) -> Path:
    """The build's dbt target: its manifest.json and run_results.json (the
    nightly's OpenLineage events of the models are made from them)."""
    return paths.home / "warehouse" / "dbt_target"


def _dbt_args(
    command: list[str], paths: Paths, target_path: Path | None = None, log_path: Path | None = None
) -> list[str]:
    return command + [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        # per-home target and logs: parallel homes (tests, backfills) never share state
        "--target-path",
        str(target_path or dbt_target(paths)),
        "--log-path",
        str(log_path or paths.home / "warehouse" / "dbt_logs"),
        "--no-use-colors",
    ]


def _invoke(args: list[str], paths: Paths, manifest=None):
    """dbt in this process; with `manifest` (a parsed project), without parsing it again."""
    from dbt.cli.main import dbtRunner

    if settings.dbt_target() == "spark" and settings.spark().method == "session":
        from program_reporting.warehouse import spark

        spark.session(paths)  # this home's session, which dbt-spark then takes as the active one
    with _dbt_environment(paths):
        try:
            return dbtRunner(manifest=manifest).invoke(args)
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
    results_dir = dbt_results.folder(paths.tmp, run_id)
    dbt_results.forget(results_dir)  # whatever stops this try, an earlier one's must not pass for its results
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    landings = build_log.landings(paths)
    if not landings:
        raise BuildFailed(f"nothing to build: no landed delivery under {paths.raw} (land the sources first)")
    full = full_refresh or not build_log.previous_build_succeeded(paths)
    catalog.forget(paths)
    build_log.write_landings(paths, landings)
    args = _dbt_args(["build"], paths)
    if full:
        # The restatement rules' unit tests are about nights, which a full build does not
        # plan; make test and any plain `dbt build` run them (17 of them, about 0.5 s each).
        args += ["--full-refresh", "--exclude", "tag:restatement_rules"]
        if settings.dbt_target() == "spark":
            # their fixtures are DuckDB SQL (`varchar`, `timestamptz`); the SQL they check is
            # the same on Spark, where the equality of the marts is tested (test_spark_engine.py)
            args += ["--exclude-resource-type", "unit_test"]
    else:
        # Unit tests check the SQL on static inputs, which no night changes: dbt's
        # advice is to run them in development and CI (make test), not in every
        # production run. A full build still runs them.
        args += ["--exclude-resource-type", "unit_test"]
        # Not on Spark: its tables have no transactions, and the plan, which reads the seed
        # benchmark_rates without waiting for it, would read files the seed is replacing.
        if settings.warehouse_target() == "duckdb" and settings.dbt_target() == "duckdb":
            # A night's models are small: two at a time, the merchant side runs beside
            # the credit side (and tests beside models) on the second core. A full
            # build keeps one at a time, within one memory limit. (One at a time did
            # not save the 5M x 180 night either: docs/performance.md.)
            args += ["--threads", "2"]
    result = _invoke(args, paths)
    try:  # the run's own copy of dbt's results, for the per-model status tasks (dbt_results.py)
        kept = dbt_results.keep(result.result, results_dir)
    except OSError as exc:  # they only show the results: the build stands or falls on its own
        log.warning("dbt's results of run %s not kept in %s: %s", run_id, results_dir, exc)
        kept = None
    nodes = _node_results(result)
    failed = [f"{name} ({status}): {message}"[:500] for name, status, message in nodes if status in dbt_results.FAILED]
    warned = [f"{name}: {message}"[:300] for name, status, message in nodes if status == "warn"]
    seconds = round(time.perf_counter() - started, 1)
    planned = any(
        name == f"model.program_reporting.{build_log.PLAN}" and status == "success" for name, status, _ in nodes
    )
    plan = (build_log.read_plan(paths) if planned else None) or {}
    _write_build_log(paths, run_id, ds, plan, full, started_at, succeeded=bool(result.success and not failed))
    if plan:
        lines = f"line by line, rows landed since {plan['new_rows_since']}" if plan["new_rows_since"] else "every line"
        log.info(
            "build ds=%s run_id=%s: %s (%s deliveries changed since the last build)",
            ds,
            run_id,
            "full refresh"
            if full
            else f"restated from {plan['restate_from']} ({lines}), credit events re-read from ds "
            f"{plan['reload_from']}{_appended(plan, '')}, employment reports from ds "
            f"{plan['reports_reload_from']}{_appended(plan, 'reports_')}",
            plan["changed_deliveries"],
        )
        if plan["line_passes"] and plan["line_passes"] > 1:
            log.info(
                "int_credit_line_states: %d passes over the lines (at most %d stored credit events each)",
                plan["line_passes"],
                settings.line_pass_events(),
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
    recorded = _freshness_and_docs(paths)
    return {
        "ds": ds,
        "run_id": run_id,
        "full_refresh": full,
        "restate_from": plan["restate_from"],
        "reload_from": plan["reload_from"],
        "reports_reload_from": plan["reports_reload_from"],
        "append_from": plan["append_from"],
        "append_since": plan["append_since"],
        "reports_append_from": plan["reports_append_from"],
        "reports_append_since": plan["reports_append_since"],
        "new_rows_since": plan["new_rows_since"],
        "loaded_through": plan["loaded_through"],
        "changed_deliveries": plan["changed_deliveries"],
        "line_passes": plan["line_passes"] or 1,
        "nodes": len(nodes),
        "warnings": warned,
        "seconds": seconds,
        "warehouse": str(paths.warehouse_db),
        "dbt_results": str(kept.parent) if kept else None,
        **recorded,
    }


def _appended(plan: dict, prefix: str) -> str:
    """The plan's appended rows of a source, for the build's log line ('' when none)."""
    since = plan[f"{prefix}append_since"]
    return f" (and rows released since {since} from ds {plan[f'{prefix}append_from']} on)" if since else ""


def _write_build_log(
    paths: Paths, run_id: str, ds: str, plan: dict, full: bool, started_at: dt.datetime, succeeded: bool
) -> None:
    build_log.record(paths, run_id, ds, plan, full, started_at, succeeded)


# --------------------------------------------------------------------------
# source freshness and the docs page (catalog.py)


def _freshness_and_docs(paths: Paths) -> dict:
    """`dbt source freshness` and `dbt docs generate` on the warehouse just built,
    by this process, which holds it: into warehouse/catalog/ (catalog.py).

    The project is parsed once for both, and they run in a dbt target of their
    own and log to it, so that the build's artifacts in dbt_target/ (run_results.json,
    the compiled manifest.json) and its log in dbt_logs/ stay the build's. Neither fails the build: the marts
    gate judges freshness, and blocks when it finds none; a run without its docs
    page says so in its report."""
    started = time.perf_counter()
    out = catalog.folder(paths)
    work = out / "dbt"
    recorded: dict = {"source_freshness": None, "docs_page": None}
    try:
        logs = work / "logs"
        parsed = _invoke(_dbt_args(["parse", "--no-write-json", "--quiet"], paths, log_path=logs), paths)
        if not parsed.success:
            raise RuntimeError(f"dbt parse failed: {parsed.exception!r}")
        manifest = parsed.result
        work.mkdir(parents=True, exist_ok=True)
        manifest.write(str(work / "manifest.json"))  # as parsed, before freshness and docs add to it
        # --no-write-json: its result is written below; the manifest it would write again is above
        fresh = _invoke(_dbt_args(["source", "freshness", "--no-write-json"], paths, work, logs), paths, manifest)
        if fresh.result is not None:
            tmp = out / f".{catalog.FRESHNESS_FILE}.tmp"
            fresh.result.write(str(tmp))  # dbt's sources.json
            os.replace(tmp, out / catalog.FRESHNESS_FILE)
            recorded["source_freshness"] = catalog.freshness_statuses(out / catalog.FRESHNESS_FILE)
            stale = {s: status for s, status in recorded["source_freshness"].items() if status != "pass"}
            (log.warning if stale else log.info)(
                "source freshness: %s", ", ".join(f"{s} {v}" for s, v in recorded["source_freshness"].items()) or "none"
            )
        else:
            log.error("dbt source freshness recorded nothing: %r", fresh.exception)
        docs = _invoke(_dbt_args(["docs", "generate", "--no-compile", "--quiet"], paths, work, logs), paths, manifest)
        if not docs.success:
            raise RuntimeError(f"dbt docs generate failed: {docs.exception!r}")
        page = catalog.write_page(
            work / "index.html", work / "manifest.json", work / "catalog.json", out / catalog.DOCS_PAGE
        )
        recorded["docs_page"] = str(page)
    except Exception as exc:  # noqa: BLE001 - the build is done; what is missing is reported downstream
        log.error("source freshness and dbt docs after the build: %s", exc)
    recorded["catalog_seconds"] = round(time.perf_counter() - started, 2)
    log.info("source freshness and dbt docs in %ss", recorded["catalog_seconds"])
    return recorded


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
        if settings.dbt_target() == "spark":
            built_at = _copy_marts_from_spark(con, paths)
        else:
            built_at = _copy_marts(con, paths)
        con.execute("CREATE TABLE run_info (run_id VARCHAR, ds DATE, built_at TIMESTAMPTZ)")
        con.execute("INSERT INTO run_info VALUES (?, ?, coalesce(?, now()))", [run_id, ds, built_at])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    target_dir.mkdir(parents=True, exist_ok=True)
    _stage_catalog(paths, target_dir)
    os.replace(scratch, target)  # a reader never sees a half-written file
    Path(str(scratch) + ".wal").unlink(missing_ok=True)
    log.info("staged %s for run %s", target, run_id)
    return target


def _copy_marts(con, paths: Paths):
    """The marts out of warehouse.duckdb into the candidate set; when the last successful build finished."""
    con.execute(f"ATTACH '{str(paths.warehouse_db)}' AS wh (READ_ONLY)")
    for table, key in KPI_KEYS.items():
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM wh.main.{table} ORDER BY {', '.join(key)}")
    has_log = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'wh' AND table_name = ?", [build_log.BUILD_LOG]
    ).fetchone()[0]
    built_at = (
        con.execute(f"SELECT max(finished_at) FROM wh.main.{build_log.BUILD_LOG} WHERE succeeded").fetchone()[0]
        if has_log
        else None
    )
    con.execute("DETACH wh")
    return built_at


def _copy_marts_from_spark(con, paths: Paths):
    """The marts read out of Spark into the candidate set, with DuckDB's column types
    (spark.read_table): the gate, publishing and the reports read the same file as on DuckDB."""
    from program_reporting.warehouse import spark

    for table, key in KPI_KEYS.items():
        frame = spark.read_table(paths, table)  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM frame ORDER BY {', '.join(key)}")
    return build_log.last_success(paths)


def _stage_catalog(paths: Paths, target_dir: Path) -> None:
    """The build's freshness record and docs page beside the candidate set, as
    hard links (the build replaces them by rename, never in place), or copies
    where a link cannot be made; a file the build did not record is absent."""
    for name in (catalog.FRESHNESS_FILE, catalog.DOCS_PAGE):
        source, dest = catalog.folder(paths) / name, target_dir / name
        dest.unlink(missing_ok=True)
        if not source.exists():
            log.warning("%s: the build recorded no %s; the candidate set goes without it", source.parent, name)
            continue
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)


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
