"""Regional access in PostgreSQL (postgres/access.py), against the real server:
a region's role, connected as itself, sees its regions' rows of the published
segment table and its history and nothing else; it cannot switch the policies
off; bi_reader still sees everything; revoke-region and a republication (also
one that re-creates a table) behave."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from helpers.landed import land_all
from helpers.marts import SEGMENTS, mutate, write_audit

from program_reporting import cli
from program_reporting.core import settings
from program_reporting.postgres import access
from program_reporting.postgres import serving as publish_pg
from program_reporting.postgres.production import init_warehouse
from program_reporting.publishing import wap

pytestmark = pytest.mark.postgres

PUB, HIST, ACC = settings.PUBLISHED_SCHEMA, settings.PUBLISHED_HISTORY_SCHEMA, settings.PUBLISHED_ACCESS_SCHEMA
SEGMENT = "kpi_segment_daily"
# Where a regional role may read, and nothing more (its own rows of the mapping included).
REGIONAL_READABLE = {
    (PUB, SEGMENT),
    (PUB, "run_info"),
    (HIST, SEGMENT),
    (HIST, f"{SEGMENT}_by_run"),
    (HIST, "runs"),
    (ACC, access.ROLE_REGIONS),
}
TOTALS = [
    f"{PUB}.kpi_program_daily",
    f"{PUB}.kpi_target_progress",
    f"{HIST}.kpi_program_daily",
    f"{HIST}.kpi_program_daily_by_run",
    f"{HIST}.kpi_target_progress",
    f"{HIST}.kpi_target_progress_by_run",
]
ALL_REGIONS = {region for segments in SEGMENTS.values() for region, _, _ in segments}


def _admin():
    conn = psycopg2.connect(**settings.postgres().dsn())
    conn.autocommit = True
    return conn


def _as(role: str, db: str):
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user=role, dbname=db)
    conn.autocommit = True
    return conn


@pytest.fixture
def warehouse(pg_database, env_paths, monkeypatch):
    init_warehouse()
    monkeypatch.setenv("PROGRAM_REPORTING_TARGET", "postgres")
    return pg_database


@pytest.fixture
def new_role(warehouse):
    """Unique role names (roles belong to the whole server, shared by every test
    database), dropped after the test."""
    names = []

    def make(prefix: str) -> str:
        names.append(f"{prefix}_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    admin = _admin()
    try:
        with admin.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
                if cur.fetchone() is not None:
                    cur.execute(f'DROP OWNED BY "{name}"; DROP ROLE "{name}"')
    finally:
        admin.close()


def _night(paths, run_id: str, ds: str, bump: int) -> None:
    """One run through the write-audit-publish path of the production profile."""
    land_all(paths.home, ds)
    write_audit(paths, run_id, ds, bump=bump)
    assert wap.gate_marts(run_id, ds, paths).passed
    wap.publish(run_id, paths=paths)


def _cli(*argv: str) -> int:
    return cli.main(list(argv))


def _give_login(role: str) -> None:
    admin = _admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER ROLE "{role}" LOGIN')
    finally:
        admin.close()


def _regions_seen(conn, relation: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT DISTINCT region FROM {relation}")
        return {r[0] for r in cur.fetchall()}


def _count(conn, relation: str, where: str = "true") -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {relation} WHERE {where}")
        return cur.fetchone()[0]


def _denied(conn, statement: str) -> None:
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(statement)


def test_a_regional_role_sees_only_its_regions_and_cannot_get_round_it(warehouse, env_paths, new_role):
    _night(env_paths, "r1", "2020-06-05", 0)
    gd, south = new_role("gd_office"), new_role("south")
    assert _cli("grant-region", gd, "CN-GD") == 0
    assert _cli("grant-region", south, "cn-zj", "US-VT") == 0
    assert _cli("grant-region", gd, "CN-GD") == 0  # again: nothing changes
    for role in (gd, south):
        _give_login(role)
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname IN (%s, %s)", (gd, south)
        )
        assert sorted(cur.fetchall()) == sorted([(gd, True, False, False), (south, True, False, False)])
        cur.execute(f"SELECT role_name, region FROM {ACC}.{access.ROLE_REGIONS} ORDER BY 1, 2")
        assert cur.fetchall() == sorted([(gd, "CN-GD"), (south, "CN-ZJ"), (south, "US-VT")])
        cur.execute(
            "SELECT relname FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = %s)", (gd,)
        )
        assert cur.fetchall() == []  # owns nothing: the owner would pass every policy
    assert _regions_seen(admin, f"{PUB}.{SEGMENT}") == ALL_REGIONS

    as_gd, as_south, as_bi = _as(gd, warehouse), _as(south, warehouse), _as(settings.BI_READER_ROLE, warehouse)
    try:
        for relation in (f"{PUB}.{SEGMENT}", f"{HIST}.{SEGMENT}", f"{HIST}.{SEGMENT}_by_run"):
            assert _regions_seen(as_gd, relation) == {"CN-GD"}, relation
            assert _count(as_gd, relation) == _count(admin, relation, "region = 'CN-GD'") > 0
            assert _regions_seen(as_south, relation) == {"CN-ZJ", "US-VT"}, relation
            # bi_reader keeps working as it did: every row.
            assert _count(as_bi, relation) == _count(admin, relation)
        assert _count(as_gd, f"{PUB}.run_info") == 1 and _count(as_gd, f"{HIST}.runs") == 1
        # Program totals: no regional role reads them; bi_reader reads them all.
        for relation in TOTALS:
            _denied(as_gd, f"SELECT count(*) FROM {relation}")
            assert _count(as_bi, relation) == _count(admin, relation) > 0, relation

        # No way round the policies.
        with as_gd.cursor() as cur:
            cur.execute("SET row_security = off")  # allowed, but then a filtered query fails instead
        _denied(as_gd, f"SELECT count(*) FROM {PUB}.{SEGMENT}")
        with as_gd.cursor() as cur:
            cur.execute("RESET row_security")
        for statement in (
            f"ALTER TABLE {PUB}.{SEGMENT} DISABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {HIST}.{SEGMENT} NO FORCE ROW LEVEL SECURITY",
            f"DROP POLICY {access.POLICY} ON {PUB}.{SEGMENT}",
            f"CREATE POLICY mine ON {PUB}.{SEGMENT} USING (true)",
            f"ALTER VIEW {HIST}.{SEGMENT}_by_run SET (security_invoker = false)",
            f"CREATE VIEW {PUB}.all_rows AS SELECT * FROM {PUB}.{SEGMENT}",
            f"INSERT INTO {ACC}.{access.ROLE_REGIONS} (role_name, region) VALUES ('{gd}', 'US-NY')",
            f"UPDATE {ACC}.{access.ROLE_REGIONS} SET region = 'US-NY'",
            f"DELETE FROM {PUB}.{SEGMENT}",
            f"SET ROLE {settings.BI_READER_ROLE}",
            f"ALTER ROLE {gd} BYPASSRLS",
        ):
            _denied(as_gd, statement)
        # The mapping: a role sees its own rows only, not who else reads what.
        with as_gd.cursor() as cur:
            cur.execute(f"SELECT role_name, region FROM {ACC}.{access.ROLE_REGIONS}")
            assert cur.fetchall() == [(gd, "CN-GD")]
        # Nothing outside the published schemas: every relation it may read, listed by itself.
        with admin.cursor() as cur:
            cur.execute("CREATE SCHEMA raw; CREATE TABLE raw.merchants_pii (merchant_id text, owner_phone text)")
            cur.execute("CREATE TABLE public.stg_merchants (merchant_id text)")
        with as_gd.cursor() as cur:
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND has_table_privilege(c.oid, 'SELECT')"
            )
            assert set(cur.fetchall()) == REGIONAL_READABLE
        for forbidden in ("SELECT * FROM raw.merchants_pii", "SELECT * FROM public.stg_merchants"):
            _denied(as_gd, forbidden)
    finally:
        for conn in (as_gd, as_south, as_bi, admin):
            conn.close()


def test_policies_survive_republication_and_revoke_region_takes_rows_away(warehouse, env_paths, new_role):
    _night(env_paths, "r1", "2020-06-05", 0)
    gd, south = new_role("gd_office"), new_role("south")
    assert _cli("grant-region", gd, "CN-GD") == 0
    assert _cli("grant-region", south, "CN-ZJ", "US-VT") == 0
    for role in (gd, south):
        _give_login(role)

    # A new run, then one whose segment table gained a column: the switch re-creates
    # published.kpi_segment_daily and alters its history table and view.
    _night(env_paths, "r2", "2020-06-06", 1)
    r3 = write_audit(env_paths, "r3", "2020-06-07", bump=2)
    mutate(r3, f"ALTER TABLE {SEGMENT} ADD COLUMN region_note VARCHAR DEFAULT 'x'")
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f"SELECT '{PUB}.{SEGMENT}'::regclass::oid")
        before = cur.fetchone()[0]
    publish_pg.publish("r3", env_paths, source=r3, validate=False)
    with admin.cursor() as cur:
        cur.execute(
            f"SELECT '{PUB}.{SEGMENT}'::regclass::oid, relrowsecurity FROM pg_class WHERE oid = '{PUB}.{SEGMENT}'::regclass"
        )
        after, secured = cur.fetchone()
        assert after != before and secured  # re-created, and secured again
        cur.execute(f"SELECT count(*) FROM {HIST}.runs")
        assert cur.fetchone()[0] == 3

    as_gd, as_south = _as(gd, warehouse), _as(south, warehouse)
    try:
        for relation in (f"{PUB}.{SEGMENT}", f"{HIST}.{SEGMENT}", f"{HIST}.{SEGMENT}_by_run"):
            assert _regions_seen(as_gd, relation) == {"CN-GD"}, relation
            assert _count(as_gd, relation) == _count(admin, relation, "region = 'CN-GD'") > 0
        with as_gd.cursor() as cur:
            cur.execute(f"SELECT DISTINCT run_id FROM {HIST}.{SEGMENT}_by_run ORDER BY 1")
            assert cur.fetchall() == [("r1",), ("r2",), ("r3",)]
            cur.execute(f"SELECT DISTINCT region_note FROM {PUB}.{SEGMENT}")
            assert cur.fetchall() == [("x",)]
        for relation in TOTALS:
            _denied(as_gd, f"SELECT count(*) FROM {relation}")

        # Revoke one of two regions: the other stays.
        assert _cli("revoke-region", south, "US-VT") == 0
        assert _cli("revoke-region", south, "US-VT") == 0  # again: nothing changes
        for relation in (f"{PUB}.{SEGMENT}", f"{HIST}.{SEGMENT}_by_run"):
            assert _regions_seen(as_south, relation) == {"CN-ZJ"}
        # Revoke the last: it leaves bi_regional, and with it the database (CONNECT) and the tables.
        assert _cli("revoke-region", gd, "--all") == 0
        as_gd.close()
        with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
            _as(gd, warehouse)
        with admin.cursor() as cur:
            cur.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (gd, settings.BI_REGIONAL_ROLE))
            assert cur.fetchone()[0] is False
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (gd,))
            assert cur.fetchone() is not None  # the role itself is the administrator's to drop
        # Granted again, another region: that region's rows, and only those.
        assert _cli("grant-region", gd, "US-NY") == 0
        as_gd = _as(gd, warehouse)
        assert _regions_seen(as_gd, f"{PUB}.{SEGMENT}") == {"US-NY"}
    finally:
        as_gd.close()
        as_south.close()
        admin.close()


def test_a_login_role_granted_a_regional_role_sees_that_roles_regions(warehouse, env_paths, new_role):
    _night(env_paths, "r1", "2020-06-05", 0)
    office, person = new_role("vt_office"), new_role("li_wei")
    assert _cli("grant-region", office, "US-VT") == 0
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{person}" LOGIN; GRANT "{office}" TO "{person}"')
    as_person = _as(person, warehouse)
    try:
        assert _regions_seen(as_person, f"{PUB}.{SEGMENT}") == {"US-VT"}
        _denied(as_person, f"SELECT count(*) FROM {PUB}.kpi_program_daily")
        # Made program-wide by membership of bi_reader: everything.
        with admin.cursor() as cur:
            cur.execute(f'GRANT {settings.BI_READER_ROLE} TO "{person}"')
        assert _regions_seen(as_person, f"{PUB}.{SEGMENT}") == ALL_REGIONS
        assert _count(as_person, f"{PUB}.kpi_program_daily") == _count(admin, f"{PUB}.kpi_program_daily") > 0
    finally:
        as_person.close()
        admin.close()


def test_grant_region_refuses_wrong_names_and_roles_that_bypass_policies(warehouse, new_role, capsys):
    bypass = new_role("bypass")
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{bypass}" NOLOGIN BYPASSRLS')
    admin.close()
    ok = new_role("ok")
    for argv, message in (
        (["grant-region", ok, "CN-XX"], "unknown regions CN-XX"),
        (["grant-region", ok, "Guangdong"], "not region codes"),
        (["grant-region", 'x"; DROP TABLE published.run_info; --', "CN-GD"], "lower-case name"),
        (["grant-region", settings.BI_READER_ROLE, "CN-GD"], "reserved"),
        (["grant-region", "pg_monitor", "CN-GD"], "reserved"),
        (["grant-region", bypass, "CN-GD"], "BYPASSRLS"),
        (["revoke-region", ok], "--all"),
        (["revoke-region", ok, "CN-GD", "--all"], "--all"),
    ):
        assert _cli(*argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    admin = _admin()
    with admin.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {ACC}.{access.ROLE_REGIONS}")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ok,))
        assert cur.fetchone() is None  # refused before anything was created
    admin.close()
    # A region removed from the seed can still be revoked (nothing to revoke here).
    assert _cli("revoke-region", ok, "CN-XX") == 0


def test_grant_region_before_init_warehouse_says_what_to_run(pg_database, capsys):
    assert _cli("grant-region", "someone_else", "CN-GD") == 1
    assert "program-reporting init-warehouse" in capsys.readouterr().err
