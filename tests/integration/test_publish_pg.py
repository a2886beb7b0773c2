"""Publishing to the PostgreSQL serving schema, against the real server: exact
copies with the kpis.md types, the GX gate on PostgreSQL, the bi_reader role's
limits, and atomic switching under concurrent readers."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import duckdb
import psycopg2
import pytest
from helpers.marts import mutate, write_audit, write_marts

from program_reporting.core import settings
from program_reporting.postgres import gate as gate_pg
from program_reporting.postgres import serving as publish_pg
from program_reporting.postgres.production import init_warehouse
from program_reporting.validation import gate
from program_reporting.validation.candidate import PublishError

pytestmark = pytest.mark.postgres

DS = "2020-06-05"
PUB = settings.PUBLISHED_SCHEMA

EXPECTED_TYPES = {
    "kpi_program_daily": {
        "program_code": "text",
        "as_of_date": "date",
        "enrolled_merchants": "bigint",
        "credit_limit_total": "numeric(18,2)",
        "utilization_rate": "numeric(12,6)",
        "interest_subsidy_cost_to_date": "numeric(18,2)",
        "survival_rate_90d": "numeric(12,6)",
    },
    "kpi_segment_daily": {"region": "text", "jobs_added": "bigint", "outstanding_balance": "numeric(18,2)"},
    "kpi_target_progress": {
        "metric": "text",
        "target_value": "numeric(18,2)",
        "actual_value": "numeric(18,2)",
        "progress_rate": "numeric(12,6)",
    },
}

# A reader's view of the whole published set: one figure per table and part.
PARTS = [
    "SELECT min(run_id) FROM {s}run_info",
    "SELECT count(*) FROM {s}kpi_program_daily",
    "SELECT sum(enrolled_merchants) FROM {s}kpi_program_daily",
    "SELECT count(*) FROM {s}kpi_segment_daily",
    "SELECT sum(enrolled_merchants) FROM {s}kpi_segment_daily",
    "SELECT count(*) FROM {s}kpi_target_progress",
    "SELECT sum(actual_value) FROM {s}kpi_target_progress",
]
FINGERPRINT = "SELECT " + ", ".join(f"({p})" for p in PARTS)  # one statement


def _admin():
    return psycopg2.connect(**settings.postgres().dsn())


def _bi_reader(db: str):
    return psycopg2.connect(host="127.0.0.1", port=5432, user=settings.BI_READER_ROLE, dbname=db)


def _fingerprint_of(db_file) -> tuple:
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        row = con.execute(FINGERPRINT.format(s="")).fetchone()
    finally:
        con.close()
    return _normalise(row)


def _normalise(row) -> tuple:
    # PostgreSQL sums bigint as numeric, DuckDB as an integer: compare numbers as numbers.
    return tuple(
        int(v) if isinstance(v, Decimal) and v == v.to_integral_value() and v.as_tuple().exponent == 0 else v
        for v in row
    )


@pytest.fixture
def warehouse(pg_database, env_paths):
    init_warehouse()
    return pg_database


def test_validated_audit_set_is_copied_exactly_with_the_contract_types(warehouse, env_paths):
    db = write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    out = publish_pg.publish("r1", env_paths)
    assert out.published and out.gate is not None and out.gate.passed and out.gate.evaluated > 90
    assert out.rows["kpi_program_daily"] == 8 and out.rows["run_info"] == 1

    with _admin() as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT table_name, column_name, format_type(a.atttypid, a.atttypmod)
                       FROM information_schema.columns c
                       JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
                                          AND a.attname = c.column_name
                       WHERE table_schema = %s""",
            (PUB,),
        )
        types = {(t, c): ty for t, c, ty in cur.fetchall()}
        for table, cols in EXPECTED_TYPES.items():
            for col, ty in cols.items():
                assert types[(table, col)] == ty, (table, col)
        src = duckdb.connect(str(db), read_only=True)
        try:
            for table in ("kpi_program_daily", "kpi_segment_daily", "kpi_target_progress"):
                cols = [r[0] for r in src.execute(f"DESCRIBE {table}").fetchall()]
                order = ", ".join(cols[:5])
                expected = src.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
                cur.execute(f"SELECT {', '.join(cols)} FROM {PUB}.{table} ORDER BY {order}")
                assert cur.fetchall() == expected, table  # every cell, decimals exactly
        finally:
            src.close()
        cur.execute(f"SELECT run_id, ds, published_at IS NOT NULL FROM {PUB}.run_info")
        assert cur.fetchall() == [("r1", __import__("datetime").date(2020, 6, 5), True)]
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (publish_pg.STAGING_SCHEMA,))
        assert cur.fetchone()[0] == 0, "the staging schema is removed after publishing"

    # Publishing the same run again changes nothing.
    again = publish_pg.publish("r1", env_paths)
    assert again.reason == "already published"


def test_bi_reader_reads_the_published_schema_and_nothing_else(warehouse, env_paths):
    write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    publish_pg.publish("r1", env_paths)
    with _admin() as conn, conn.cursor() as cur:
        # What the dbt postgres target and the restricted layer leave in the same database.
        cur.execute("CREATE SCHEMA raw; CREATE TABLE raw.merchants_pii (merchant_id text, owner_phone text)")
        cur.execute("INSERT INTO raw.merchants_pii VALUES ('M1', '13812345678')")
        cur.execute("CREATE TABLE public.stg_merchants (merchant_id text)")
        cur.execute(
            f"CREATE SCHEMA {publish_pg.STAGING_SCHEMA}; "
            f"CREATE TABLE {publish_pg.STAGING_SCHEMA}.kpi_program_daily (x int)"
        )

    reader = _bi_reader(warehouse)
    reader.autocommit = True
    try:
        with reader.cursor() as cur:
            for table in publish_pg.TABLES:
                cur.execute(f"SELECT count(*) FROM {PUB}.{table}")
                assert cur.fetchone()[0] > 0
            for forbidden in (
                "SELECT * FROM raw.merchants_pii",
                "SELECT * FROM public.stg_merchants",
                f"SELECT * FROM {publish_pg.STAGING_SCHEMA}.kpi_program_daily",
                f"DELETE FROM {PUB}.kpi_program_daily",
                f"INSERT INTO {PUB}.run_info (run_id) VALUES ('forged')",
                f"CREATE TABLE {PUB}.scribble (x int)",
                "CREATE TABLE public.scribble (x int)",
                "CREATE SCHEMA scribble",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(forbidden)
    finally:
        reader.close()


def test_unvalidated_or_failing_sets_leave_the_published_set_unchanged(warehouse, env_paths):
    write_audit(env_paths, "r1", DS)
    assert gate.validate("r1", DS, env_paths).passed
    publish_pg.publish("r1", env_paths)

    # No gate verdict: refused before PostgreSQL is touched.
    write_audit(env_paths, "r2", "2020-06-06", bump=1)
    with pytest.raises(PublishError, match="no gate verdict"):
        publish_pg.publish("r2", env_paths)

    # A set that fails the suites on PostgreSQL (segments do not sum): withheld.
    bad = write_marts(env_paths.home / "elsewhere" / "kpi.duckdb", "r3", "2020-06-06", bump=1)
    mutate(
        bad,
        "UPDATE kpi_segment_daily SET repaid_to_date = repaid_to_date + 0.01 "
        "WHERE region = 'CN-GD' AND as_of_date = DATE '2020-06-03'",
    )
    with pytest.raises(PublishError, match="sd_segments_sum_to_program"):
        publish_pg.publish("r3", env_paths, source=bad)

    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT run_id FROM {PUB}.run_info")
        assert cur.fetchall() == [("r1",)]
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (publish_pg.STAGING_SCHEMA,))
        assert cur.fetchone()[0] == 0


def test_postgres_switches_only_after_the_files_and_the_report(warehouse, env_paths, monkeypatch):
    """The write-audit-publish path stages and gates the set in PostgreSQL, publishes the
    files with the report, and only then switches PostgreSQL: when the files cannot be
    published, PostgreSQL keeps serving the previous set (whose report says published);
    a retry of the same run, once the files are fixed, switches it."""
    from helpers.landed import land_all

    from program_reporting.publishing import wap

    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "postgres")
    land_all(env_paths.home, DS)
    write_audit(env_paths, "r1", DS)
    wap.gate_marts("r1", DS, env_paths)
    wap.publish("r1", paths=env_paths)
    write_audit(env_paths, "r2", DS, bump=1)
    wap.gate_marts("r2", DS, env_paths)
    blocker = env_paths.runs / "r2"
    blocker.mkdir()  # the files cannot be published: the set's folder is taken
    with pytest.raises(PublishError, match="published before"):
        wap.publish("r2", paths=env_paths)
    with _admin() as conn, conn.cursor() as cur:
        assert _published_run(cur) == [("r1",)]
    assert not (env_paths.reports / "r2" / "report.html").exists()
    blocker.rmdir()
    wap.publish("r2", paths=env_paths)
    with _admin() as conn, conn.cursor() as cur:
        assert _published_run(cur) == [("r2",)]
    assert _gates_of(env_paths.reports / "r2")[-1] == ("marts", "postgresql", True)


def marts_only(results):
    """The DuckDB gate also judges the sources' freshness record beside the set;
    the PostgreSQL gate judges only what PostgreSQL holds (docs/validation.md)."""
    return [r for r in results if r.suite != "source_freshness"]


def test_postgres_gate_gives_the_duckdb_gate_verdicts(warehouse, env_paths):
    """Same suites, same rules: the failing check ids agree between the engines."""
    db = write_audit(env_paths, "r1", DS)
    mutate(
        db,
        "UPDATE kpi_program_daily SET par30_rate = 1.5 WHERE as_of_date = DATE '2020-06-04'",
        "UPDATE kpi_target_progress SET metric = '110101199003077777' WHERE as_of_date = DATE '2020-06-03'",
    )
    duck = gate.validate("r1", DS, env_paths)
    publish_pg._stage(_admin(), db, env_paths.home)  # staged, as publish() does before its gate
    on_pg = gate_pg.validate_schema("r1", DS, publish_pg.STAGING_SCHEMA)
    assert not duck.passed and not on_pg.passed
    assert {r.check_id for r in on_pg.blocking} == {r.check_id for r in marts_only(duck.blocking)}
    assert any(r.column == "par30_rate" for r in on_pg.blocking)
    assert any(r.frame == "text_values" for r in on_pg.blocking)
    assert {r.check_id: r.status for r in on_pg.results} == {r.check_id: r.status for r in marts_only(duck.results)}
    assert "110101199003077777" not in repr(on_pg.to_dict())  # personal data never echoed


def test_postgres_gate_that_evaluated_nothing_fails(warehouse, env_paths):
    with _admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA candidate_empty")
    empty = write_audit(env_paths, "r1", DS)
    mutate(
        empty,
        "DELETE FROM kpi_program_daily",
        "DELETE FROM kpi_segment_daily",
        "DELETE FROM kpi_target_progress",
        "DELETE FROM run_info",
    )
    duck = gate.validate("r1", DS, env_paths)
    publish_pg._stage(_admin(), empty, env_paths.home)
    result = gate_pg.validate_schema("r1", DS, publish_pg.STAGING_SCHEMA)
    assert not result.passed and len(result.blocking) > 50
    assert all(r.status in ("not evaluated", "skipped") for r in result.results if r.frame in ("table", "run_info"))
    assert {r.check_id: r.status for r in result.results} == {r.check_id: r.status for r in marts_only(duck.results)}

    # A schema with no tables at all: nothing evaluated, blocked.
    bare = gate_pg.validate_schema("r1", DS, "candidate_empty")
    assert not bare.passed and bare.evaluated == 0
    assert bare.reason() == "marts gate evaluated nothing"

    # A missing column is not evaluated and blocks, as on DuckDB.
    full = write_marts(env_paths.home / "f" / "kpi.duckdb", "r1", DS)
    mutate(full, "ALTER TABLE kpi_program_daily DROP COLUMN par30_rate")
    publish_pg._stage(_admin(), full, env_paths.home)
    missing = gate_pg.validate_schema("r1", DS, publish_pg.STAGING_SCHEMA)
    assert not missing.passed
    not_evaluated = {r.check_id for r in missing.blocking if r.status == "not evaluated"}
    assert any("par30_rate" in (r.column or "") for r in missing.blocking if r.check_id in not_evaluated)


def test_concurrent_readers_see_the_old_or_the_new_complete_set(warehouse, env_paths):
    sets = {}
    for i, (run, ds) in enumerate([("r1", "2020-06-05"), ("r2", "2020-06-06"), ("r3", "2020-06-07")]):
        sets[run] = write_marts(env_paths.home / "sets" / run / "kpi.duckdb", run, ds, bump=i)
    known = {_fingerprint_of(f) for f in sets.values()}
    assert len(known) == 3
    publish_pg.publish("r1", env_paths, source=sets["r1"], validate=False)

    stop = threading.Event()
    seen: list[tuple] = []
    errors: list[BaseException] = []
    slowest = [0.0]

    def single_statements():
        conn = _bi_reader(warehouse)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    t0 = time.monotonic()
                    cur.execute(FINGERPRINT.format(s=f"{PUB}."))
                    slowest[0] = max(slowest[0], time.monotonic() - t0)
                    seen.append(_normalise(cur.fetchone()))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            conn.close()

    def snapshot_transactions():
        """A BI tool reading table by table inside one REPEATABLE READ transaction."""
        conn = _bi_reader(warehouse)
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        try:
            while not stop.is_set():
                with conn.cursor() as cur:
                    parts = []
                    for part in PARTS:
                        cur.execute(part.format(s=f"{PUB}."))
                        parts.append(cur.fetchone()[0])
                        time.sleep(0.01)  # let a publisher commit between two of the reads
                    seen.append(_normalise(parts))
                conn.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            conn.close()

    readers = [threading.Thread(target=single_statements), threading.Thread(target=snapshot_transactions)]
    for r in readers:
        r.start()
    try:
        time.sleep(0.3)
        publish_pg.publish("r2", env_paths, source=sets["r2"], validate=False)
        time.sleep(0.3)
        publish_pg.publish("r3", env_paths, source=sets["r3"], validate=False)
        time.sleep(0.3)
    finally:
        stop.set()
        for r in readers:
            r.join(timeout=30)
    assert not errors, errors
    assert len(seen) > 20
    observed = set(seen)
    assert observed <= known, f"a reader saw a mixed or partial set: {observed - known}"
    assert _fingerprint_of(sets["r1"]) in observed and _fingerprint_of(sets["r3"]) in observed
    assert slowest[0] < 2.0, f"a reader waited {slowest[0]:.2f}s"


# --------------------------------------------------------------------------- the one write-audit-publish path


def _gates_of(report_dir) -> list[tuple]:
    import json

    doc = json.loads((report_dir / "report.json").read_text())
    return [(g["stage"], g["engine"], g["passed"]) for g in doc["gates"]]


def _published_run(cur) -> list:
    cur.execute(f"SELECT run_id FROM {PUB}.run_info")
    return cur.fetchall()


def test_cli_publish_in_the_production_profile_publishes_to_postgres_too(warehouse, env_paths, monkeypatch, capsys):
    from helpers.landed import land_all

    from program_reporting.cli import main

    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "postgres")
    land_all(env_paths.home, DS)
    db = write_audit(env_paths, "r1", DS)
    expected = _fingerprint_of(db)
    assert main(["publish", "--run-id", "r1", "--ds", DS]) == 0
    out = capsys.readouterr().out
    assert "marts gate on postgresql for ds 2020-06-05, run r1: PASSED" in out
    assert "published run r1" in out.splitlines()[-1]
    with _admin() as conn, conn.cursor() as cur:
        assert _published_run(cur) == [("r1",)]
        cur.execute(FINGERPRINT.format(s=f"{PUB}."))
        assert _normalise(cur.fetchone()) == expected
    assert _fingerprint_of(env_paths.current_db) == expected
    # the report, in place before the swap, lists the gate PostgreSQL ran
    assert _gates_of(env_paths.reports / "r1") == [
        ("landed", "duckdb", True),
        ("marts", "duckdb", True),
        ("marts", "postgresql", True),
    ]
    html = (env_paths.reports / "r1" / "report.html").read_text()
    assert 'id="gate-marts-postgresql"' in html and "marts gate on postgresql: passed" in html
    # its GX results are in the Data Docs too, apart from the DuckDB gate's
    docs = [f.relative_to(env_paths.reports / "r1").as_posix() for f in (env_paths.reports / "r1").rglob("*.html")]
    assert any(f.startswith("data_docs/validations/postgresql/kpi_program_daily/") for f in docs), docs
    assert not (env_paths.tmp / "gates" / "r1").exists()


class _TaskInstance:
    """What the nightly steps use of Airflow's task instance: XCom and the run's task states."""

    dag_id = "program_reporting_nightly"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.task_id = None
        self.xcoms: dict = {}
        self.states: dict = {}

    def xcom_push(self, key, value):
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id, run_ids):
        return {self.run_id: dict(self.states)}

    def run(self, task_id: str, step, *args):
        """One task of the run; a failed one records its state, as Airflow does."""
        import collections
        from types import SimpleNamespace

        self.task_id = task_id
        context = {"ti": self, "outlet_events": collections.defaultdict(SimpleNamespace)}
        try:
            result = step(*args, context)
        except Exception:
            self.states[task_id] = "failed"
            raise
        self.states[task_id] = "success"
        self.xcoms[(task_id, "return_value")] = result
        return result


def test_report_of_a_production_night_lists_the_postgres_gate_published_or_withheld(warehouse, env_paths, monkeypatch):
    """The nightly DAG's steps in the production profile: the PostgreSQL gate is
    in the run's report; when it blocks, nothing is published anywhere, the
    step does not retry, and the withheld report shows that gate blocking."""
    from airflow.sdk.exceptions import AirflowFailException
    from helpers.landed import land_all

    from program_reporting.orchestration import nightly

    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "postgres")
    steps = ["gate_landed", "validate", "publish"]

    def night(run_id: str, ds: str) -> _TaskInstance:
        ti = _TaskInstance(f"scheduled__{ds}")
        ti.run("gate_landed", nightly.gate_landed, ds, run_id)
        ti.run("validate", nightly.validate, run_id, ds)
        try:
            ti.run("publish", nightly.publish, run_id, ds)
        except AirflowFailException:  # final: Airflow does not retry it
            pass
        ti.run("report", nightly.report, {"ds": ds, "run_id": run_id}, steps)
        return ti

    land_all(env_paths.home, DS)
    write_audit(env_paths, "r1", DS)
    ti = night("r1", DS)
    assert ti.states["publish"] == "success"
    assert _gates_of(env_paths.reports / "r1") == [
        ("landed", "duckdb", True),
        ("marts", "duckdb", True),
        ("marts", "postgresql", True),
    ]
    with _admin() as conn, conn.cursor() as cur:
        assert _published_run(cur) == [("r1",)]
    assert not (env_paths.tmp / "gates" / "r1").exists()

    # The serving schema holds a program the next candidate lacks (say it was
    # published there by hand): only the gate on PostgreSQL can see it.
    diverged = write_marts(
        env_paths.home / "elsewhere" / "kpi.duckdb",
        "rx",
        DS,
        programs=("SPARK-2020", "PPP-2020", "SPRING-THUNDER-2020"),
    )
    publish_pg.publish("rx", env_paths, source=diverged, validate=False)
    ds2 = "2020-06-06"
    land_all(env_paths.home, ds2)
    write_audit(env_paths, "r2", ds2, bump=1)
    before = _fingerprint_of(env_paths.current_db)
    ti = night("r2", ds2)
    assert ti.states["publish"] == "failed"
    assert "pd_programs_kept" in ti.xcoms[("publish", nightly.FAILURE_KEY)]
    assert _gates_of(env_paths.reports / "r2") == [
        ("landed", "duckdb", True),
        ("marts", "duckdb", True),
        ("marts", "postgresql", False),
    ]
    import json

    doc = json.loads((env_paths.reports / "r2" / "report.json").read_text())
    assert doc["decision"] == "withheld" and "not published to PostgreSQL" in doc["reason"]
    assert (
        'id="check-postgresql-kpi_program_daily-pd_programs_kept"'
        in (env_paths.reports / "r2" / "report.html").read_text()
    )
    with _admin() as conn, conn.cursor() as cur:
        assert _published_run(cur) == [("rx",)]
    assert _fingerprint_of(env_paths.current_db) == before and not (env_paths.runs / "r2").exists()
    assert not (env_paths.tmp / "gates" / "r2").exists()
