"""Benchmark one program at scale: `make bench SCALE=1000000 DAYS=180`.

Stages, each timed with the peak RSS of the whole process tree:
  simulate   the history (DAYS days) and one more night; with --history
             one-file, the history then becomes one delivery per source on its
             last date (bench/one_file_history.py: the first delivery of a
             program carrying its history, as extracts.md allows)
  land       every history delivery (rows/s) and, beside it, the raw floor:
             DuckDB itself reading each day's CSV files into a table, and for
             reference one read of all the days' files at once (daily history)
  build      dbt full build from scratch, and beside it the SQL floor
             (bench/floor_load.sql reading the raw layer into DuckDB tables,
             then bench/floor_kpi_program_daily.sql, each timed) on the same
             raw layer; the floor's table must equal the build's
             kpi_program_daily, cell by cell
  airflow db Airflow's metadata database, created once (not part of a night)
  night      one more night end to end through Airflow: the nightly DAG
             (`program-reporting run --no-bi-refresh`: landing, dbt,
             validation, publishing, report), then the BI refresh DAG that
             its published assets trigger, measured on its own

Writes bench/results/<date>-<scale>.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from measure import dir_size, measured  # noqa: E402

NIGHT = "night (Airflow, end to end)"
LAND_FLOOR = "land floor (duckdb read_csv, day by day)"
BUILD_FLOOR = "build floor (one SQL script)"
LAND_AT_ONCE = "land reference (read_csv, all days at once)"
ONE_FILE = "history as one file per source"
# measured beside the pipeline, not part of it: their memory is not the pipeline's peak
REFERENCES = (LAND_FLOOR, LAND_AT_ONCE, BUILD_FLOOR)
# making the deliveries: not the pipeline either
PREPARATION = ("simulate", ONE_FILE)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--merchants",
        type=int,
        default=1_000_000,
        help="merchants enrolled by the last day (default 1,000,000; make bench SCALE=...)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=180,
        help="days of history before the measured night (default 180; make bench DAYS=...)",
    )
    parser.add_argument("--start", default="2020-06-02", help="first business date of the history")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default bench/work/<scale>)")
    parser.add_argument(
        "--results",
        type=Path,
        default=HERE / "results",
        help="where the JSON and Markdown results go (default bench/results)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--skip-build-floor",
        action="store_true",
        help="do not run the SQL floor (at 5,000,000 merchants x 180 days its spill alone would "
        "outgrow the disk); the build's target is then reported as not measured",
    )
    parser.add_argument(
        "--free-drop",
        action="store_true",
        help="delete the history's deliveries once landed and read by the floors (the build "
        "reads the raw layer; at 5,000,000 merchants x 180 days they are 21 GB of disk)",
    )
    parser.add_argument(
        "--history",
        choices=("daily", "one-file"),
        default="daily",
        help="how the history is delivered: daily (one delivery per source and day, default) "
        "or one-file (one delivery per source, on the history's last date, carrying it "
        "all; make bench HISTORY=one-file)",
    )
    parser.add_argument(
        "--floor-memory",
        default="6GB",
        help="DuckDB memory limit of the floors (default 6GB, the pipeline's peak target)",
    )
    parser.add_argument(
        "--resume-build",
        action="store_true",
        help="reuse the scratch folder's landed history (of a run with --keep or one that "
        "stopped in the build): skip simulating, landing and the landing floors, delete "
        "the warehouse and run from the full build on; the results then hold no landing",
    )
    parser.add_argument(
        "--skip-land-floors",
        action="store_true",
        help="do not run DuckDB's read_csv beside the landing; its target is then reported as not measured",
    )
    args = parser.parse_args(argv)

    one_file = args.history == "one-file"
    scale = f"{args.merchants}x{args.days}" + ("-one-file" if one_file else "")
    work = args.work or HERE / "work" / scale
    if args.resume_build:
        if not (work / "home" / "raw").is_dir():
            parser.error(f"--resume-build: no landed history under {work / 'home' / 'raw'}")
        shutil.rmtree(work / "home" / "warehouse", ignore_errors=True)
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["PROGRAM_REPORTING_DROP"] = str(work / "drop")
    os.environ["PROGRAM_REPORTING_HOME"] = str(work / "home")
    os.environ.setdefault("PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT", "4GB")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")

    from program_reporting.core.settings import SOURCES, paths
    from program_reporting.landing import backlog as landing_backlog
    from program_reporting.tools.simulate import simulator as simulate
    from program_reporting.warehouse import build

    p = paths()
    start = dt.date.fromisoformat(args.start)
    history = [start + dt.timedelta(days=i) for i in range(args.days)]
    night = start + dt.timedelta(days=args.days)
    stages = []

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.resume_build:
        log(f"resuming at the full build: the landed history of {work}")
    else:
        log(f"simulating {args.merchants:,} merchants, {args.days} days + 1 night")
        with measured("simulate") as st:
            simulate.simulate(
                start=start,
                days=args.days + 1,
                merchants=args.merchants,
                seed=args.seed,
                drop=p.drop,
                bad_row_share=0.0005,
            )
        stages.append(st)
        if one_file:
            log("the history as one delivery per source, dated " + history[-1].isoformat())
            from one_file_history import deliver_as_one_file

            with measured(ONE_FILE) as st:
                st.extra["rows_by_source"] = deliver_as_one_file(
                    p.drop, history, memory_limit=args.floor_memory, temp_dir=work / "tmp"
                )
                st.rows = sum(st.extra["rows_by_source"].values())
            stages.append(st)

        # The backlog command (`program-reporting land --from --to`): each day's three
        # deliveries in parallel, as the nightly DAG's land tasks, then the release.
        log("landing the history")
        with measured("land (history)") as st:
            st.rows = sum(
                day["delivered"]
                for day in landing_backlog.land_days(
                    [d.isoformat() for d in (history[-1:] if one_file else history)], p
                )
            )
        stages.append(st)

    # The landing floor is DuckDB reading each day's CSV files into a table,
    # delivery by delivery as they arrive (all_varchar: a typed read stops at
    # the first bad value, which landing must quarantine instead). One read of
    # every day's files at once is faster still (many files in parallel); a
    # nightly landing never has them, so it is reported beside, not as the floor.
    import duckdb

    def read_csv_floor(name: str, batches: list[tuple[str, str, list[str]]]) -> None:
        db = work / "floor_landing.duckdb"
        with measured(name) as st:
            # the SQL floor's memory limit: beyond it DuckDB spills rather than
            # outgrowing the machine (one read of every day's files at 5M merchants)
            con = duckdb.connect(
                str(db), config={"memory_limit": args.floor_memory, "temp_directory": str(work / "tmp")}
            )
            rows = 0
            try:
                for table, _source, files in batches:
                    con.execute(
                        f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, header = true, "
                        "all_varchar = true, union_by_name = true)",
                        [files],
                    )
                    rows += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                st.rows = rows
            except duckdb.Error as exc:  # recorded in the results; the run goes on
                st.extra["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                log(f"{name} failed: {st.extra['error']}")
            finally:
                con.close()
        stages.append(st)
        db.unlink(missing_ok=True)

    def delivered(source: str, days: list[dt.date]) -> list[str]:
        return [str(f) for ds in days for f in p.delivery_dir(source, ds.isoformat()).glob(f"{source}.csv*")]

    delivery_days = history[-1:] if one_file else history
    if not (args.resume_build or args.skip_land_floors):
        log("raw floor: DuckDB read_csv of each delivery's files")
        read_csv_floor(
            LAND_FLOOR,
            [(f"{source}_{ds:%Y%m%d}", source, delivered(source, [ds])) for ds in delivery_days for source in SOURCES],
        )
        if not one_file:  # one file per source: the same reads as the floor's
            log("reference: DuckDB read_csv of all the days' files at once")
            read_csv_floor(LAND_AT_ONCE, [(source, source, delivered(source, history)) for source in SOURCES])
    if args.free_drop:
        for source in SOURCES:
            for ds in delivery_days:
                shutil.rmtree(p.delivery_dir(source, ds.isoformat()), ignore_errors=True)
        log("history deliveries deleted (--free-drop); the night's stay")

    log("dbt full build from scratch")
    last = history[-1].isoformat()
    with measured("build (dbt, full)") as st:
        try:
            st.extra["line_passes"] = build.build(last, f"bench-full-{last}", full_refresh=True, paths=p)["line_passes"]
        except build.BuildFailed as exc:  # recorded in the results: no night without a warehouse
            st.extra["error"] = str(exc)[:2000]
            log(f"full build failed: {exc}")
    stages.append(st)
    built = "error" not in st.extra

    # The floor script is a reference, not the pipeline: its own memory limit
    # (--floor-memory), and its memory does not count towards the pipeline's
    # peak. If it still fails, the run goes on and says so.
    log("SQL floor for kpi_program_daily")
    from floor import run_floor

    with measured(BUILD_FLOOR) as st:
        st.extra["memory_limit"] = args.floor_memory
        if args.skip_build_floor or not built:
            st.extra["error"] = "skipped (--skip-build-floor)" if built else "skipped (the full build failed)"
        else:
            sql_floor(run_floor, p.raw, p.warehouse_db, work, args.floor_memory, st, log)
    stages.append(st)
    (work / "floor_build.duckdb").unlink(missing_ok=True)

    # A deployed pipeline has its Airflow metadata database already; creating
    # it is a one-off, measured on its own and not charged to the night.
    log("Airflow metadata database (once per installation)")
    from program_reporting.orchestration.airflow_env import airflow_env, ensure_db

    with measured("airflow db (once)") as st:
        ensure_db(airflow_env())
    stages.append(st)

    # The night is the nightly DAG: landing, dbt, validation, publishing, report.
    # The BI refresh (exports, brief) is another DAG that the publish's assets
    # trigger; it is measured after it.
    cli = str(Path(sys.executable).parent / "program-reporting")
    log(f"one night end to end through Airflow: ds={night}")
    with measured(NIGHT) as st:
        if built:
            proc = subprocess.run(
                [cli, "run", "--ds", night.isoformat(), "--no-bi-refresh"], capture_output=True, text=True
            )
        else:
            proc = subprocess.CompletedProcess([], 1, "", "not run: the full build failed")
        st.extra["exit_code"] = proc.returncode
        st.extra["last_line"] = (proc.stdout.strip().splitlines() or [""])[-1]
    st.extra["tasks"] = night_tasks(p.home / "airflow" / "airflow.db") if built else {}
    stages.append(st)
    if proc.returncode != 0:
        log(f"night failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    else:
        log("BI refresh (the DAG the published assets trigger)")
        from program_reporting.orchestration import run as run_mod

        with measured("BI refresh (Airflow)") as st:
            st.extra["exit_code"] = 0 if run_mod.refresh_bi(airflow_env()) else 1
        stages.append(st)

    by = {s.name: s for s in stages}
    land_rps = by["land (history)"].rows_per_second if "land (history)" in by else None
    floor_rps = by[LAND_FLOOR].rows_per_second if LAND_FLOOR in by else None
    full, night_s = by["build (dbt, full)"].seconds, by[NIGHT].seconds
    # the floor: its loading and computing (not the comparison with the build)
    floor = by[BUILD_FLOOR].extra
    floor_build = floor["load_seconds"] + floor["compute_seconds"] if "error" not in floor else None
    floor_compute = floor["compute_seconds"] if floor_build else None
    peak = max(s.peak_rss_bytes for s in stages if s.name not in PREPARATION + REFERENCES)
    # the night's one dbt build, and what its per-model status tasks add to it (docs/orchestration.md)
    night_by_task = by[NIGHT].extra.get("tasks") or {}
    dbt_seconds = night_by_task.get("dbt_build")
    per_model = next((v for k, v in night_by_task.items() if k.startswith(MODELS_LINE.split("{")[0])), None)
    per_model = per_model if dbt_seconds else None
    # None: the floor was not measured (skipped or failed), so neither is the target
    targets = {
        "landing >= 0.5 x raw floor rows/s": land_rps / floor_rps >= 0.5 if land_rps and floor_rps else None,
        "full build <= 2 x SQL floor": full <= 2 * floor_build if floor_build else None,
        "SQL floor equals the build's kpi_program_daily": floor.get("equals_build"),
        "night <= 180 s": night_s <= 180 if built else None,
        "night <= full build / 3": night_s <= full / 3 if built else None,
        "peak memory <= 6 GiB": peak <= 6 * 2**30,
        "per-model dbt tasks <= 0.1 x dbt_build": per_model <= 0.1 * dbt_seconds if per_model is not None else None,
        "night published": by[NIGHT].extra.get("exit_code") == 0,
    }
    result = {
        "date": dt.date.today().isoformat(),
        "merchants": args.merchants,
        "days": args.days,
        "history": args.history,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "stages": [
            {
                "name": s.name,
                "seconds": round(s.seconds, 2),
                "rows": s.rows,
                "rows_per_second": round(s.rows_per_second) if s.rows_per_second else None,
                "peak_rss_bytes": s.peak_rss_bytes,
                **s.extra,
            }
            for s in stages
        ],
        "warehouse_bytes": dir_size(p.home),
        "ratios": {
            "landing_vs_floor": round(land_rps / floor_rps, 3) if land_rps and floor_rps else None,
            "full_build_vs_floor": round(full / floor_build, 3) if floor_build else None,
            "full_build_vs_floor_compute": round(full / floor_compute, 3) if floor_compute else None,
            "night_vs_full_build": round(night_s / full, 3) if built else None,
        },
        "targets": targets,
    }
    lines = [
        f"Benchmark {result['date']}: {args.merchants:,} merchants x {args.days} days"
        + (", the history delivered as one file per source" if one_file else "")
        + f", {result['machine']['cpus']} CPUs, {result['machine']['memory_gib']} GiB",
        "",
        "| stage | wall time | rows/s | peak RSS (tree) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for s in stages:
        rps = f"{s.rows_per_second:,.0f}" if s.rows_per_second else ""
        name = s.name + (f" - FAILED: {s.extra['error'][:120]}" if "error" in s.extra else "")
        lines.append(f"| {name} | {s.seconds:,.1f} s | {rps} | {_gib(s.peak_rss_bytes)} |")
    if floor_build:
        lines += [
            "",
            f"SQL floor: loading {floor['load_seconds']:.1f} s, computing {floor['compute_seconds']:.1f} s "
            f"(DuckDB memory limit {floor['memory_limit']}); equals the build's kpi_program_daily: "
            + ("yes" if floor.get("equals_build") else f"NO ({floor.get('differing_rows')} rows differ)"),
        ]
    tasks = by[NIGHT].extra.get("tasks") or {}
    if tasks:
        lines += ["", "Night by Airflow task (s): " + ", ".join(f"{k} {v:.1f}" for k, v in tasks.items())]
    lines += [
        "",
        f"Warehouse size on disk: {_gib(result['warehouse_bytes'])}",
        "",
        "| target | met |",
        "| --- | --- |",
    ] + [f"| {k} | {'not measured' if v is None else 'yes' if v else 'NO'} |" for k, v in targets.items()]
    table = "\n".join(lines)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"{result['date']}-{scale}"
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.results / f"{stem}.md").write_text(table + "\n")
    log(f"results: {args.results / stem}.json")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if by[NIGHT].extra.get("exit_code") == 0 else 1


def sql_floor(run_floor, raw: Path, warehouse: Path, work: Path, memory_limit: str, st, log) -> None:
    try:
        con, seconds = run_floor(
            raw,
            database=str(work / "floor_build.duckdb"),
            memory_limit=memory_limit,
            temp_dir=work / "tmp",
            progress=True,
        )
        st.extra["load_seconds"], st.extra["compute_seconds"] = round(seconds["load"], 2), round(seconds["compute"], 2)
        st.extra["kpi_rows"] = con.execute("SELECT count(*) FROM floor_kpi_program_daily").fetchone()[0]
        # The floor is a yardstick only if it computes the same table: every
        # cell of every row (EXCEPT ALL compares NULLs as equal).
        con.execute("ATTACH ? AS warehouse (READ_ONLY)", [str(warehouse)])
        st.extra["differing_rows"] = con.execute("""SELECT count(*) FROM (
            (FROM floor_kpi_program_daily EXCEPT ALL FROM warehouse.kpi_program_daily)
            UNION ALL
            (FROM warehouse.kpi_program_daily EXCEPT ALL FROM floor_kpi_program_daily))""").fetchone()[0]
        st.extra["equals_build"] = st.extra["differing_rows"] == 0
        con.close()
    except Exception as exc:  # noqa: BLE001 - recorded in the results, the night still runs
        st.extra["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        log(f"SQL floor failed: {st.extra['error']}")


MODEL_TASKS = "dbt."  # the nightly DAG's per-model status tasks (TaskGroup dbt)
MODELS_LINE = "dbt models ({} status tasks)"  # their line in the night's breakdown


def night_tasks(airflow_db: Path) -> dict[str, float]:
    """Seconds per task of the night's DAG run, from Airflow's metadata database:
    where the night's time goes (the rest is Airflow starting and parsing).

    The per-model status tasks are one line: what they add to the night. Under
    `program-reporting run` the tasks run one at a time, so that is each one's
    time from its start to the next task's start (Airflow's own work per task
    included, which their durations leave out)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True)
        try:
            rows = con.execute("""SELECT task_id, map_index, duration, start_date FROM task_instance
                WHERE dag_id = 'program_reporting_nightly' AND run_id = (
                    SELECT run_id FROM dag_run WHERE dag_id = 'program_reporting_nightly'
                    ORDER BY start_date DESC LIMIT 1)
                ORDER BY start_date""").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        print(f"night tasks not read from {airflow_db}: {exc}", file=sys.stderr)
        return {}
    out: dict[str, float] = {}
    started = [dt.datetime.fromisoformat(r[3]) if r[3] else None for r in rows]
    models, model_seconds = 0, 0.0
    for i, (t, m, d, _) in enumerate(rows):
        if t.startswith(MODEL_TASKS):
            following = started[i + 1] if i + 1 < len(rows) else None
            until_next = (following - started[i]).total_seconds() if following and started[i] else None
            models += 1
            model_seconds += until_next if until_next is not None else d or 0.0
        else:
            out[t if m is None or m < 0 else f"{t}[{m}]"] = round(d or 0.0, 1)
    if models:
        out[MODELS_LINE.format(models)] = round(model_seconds, 1)
    return out


if __name__ == "__main__":
    sys.exit(main())
