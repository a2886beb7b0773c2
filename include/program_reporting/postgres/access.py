"""Regional access to the PostgreSQL serving schemas: a role sees the figures of
its regions and nothing else.

  program-reporting grant-region ROLE REGION...
      ROLE may read REGION's rows (ROLE created NOLOGIN if missing)
  program-reporting revoke-region ROLE REGION... | --all
      ROLE no longer reads those regions' rows

Who sees what (row-level security, on `published` and `published_history`):

- `published_access.role_regions (role_name, region)` maps roles to regions
  (ISO 3166-2 codes of dbt_project/seeds/regions.csv). Only the administrator
  who runs these commands writes it; a reader sees its own rows of it.
- A **regional role** is a member of the group role `bi_regional`, which may
  SELECT the region-grained tables (REGIONAL_TABLES: `kpi_segment_daily`, its
  history table and its `_by_run` view) and the run metadata (`run_info`,
  `published_history.runs`), nothing else. Their policy lets a role see the
  rows whose region is mapped to it, or to any role it is a member of (a
  login role granted a regional group role sees that group's regions).
- A **program-wide role** is `bi_reader` or a member of it (`GRANT bi_reader
  TO alice`): it sees every row, program totals included. Every other KPI
  table (`kpi_program_daily`, `kpi_target_progress` and their history)
  carries a policy that shows rows to program-wide roles only, on top of
  regional roles having no SELECT on it: a table the contract adds later is
  program-wide, closed to regions, until it is listed in REGIONAL_TABLES.
- The history views run with their reader's rights (`security_invoker`), so
  the policies of the history tables apply through them.
- Superusers, roles with BYPASSRLS and the tables' owner (the publisher) are
  not subject to row-level security; the commands refuse to map such a role.

`secure(cur)` puts all this on whatever tables exist; it changes a table only
when something is missing (an ALTER waits for readers), and runs in the
publication's transaction (serving._swap_once), so a table re-created for a
contract change, or a history table created by its first publication, is
never visible without its policy. init-warehouse runs it too.

Exit status of the commands: 0 done (also when nothing changed), 1 PostgreSQL
refused or the warehouse is not initialised, 2 a wrong role name or region.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from program_reporting.core import reference, settings
from program_reporting.core.published import KPI_TABLES
from program_reporting.postgres import connection as pg

log = logging.getLogger(__name__)

ACCESS_SCHEMA = settings.PUBLISHED_ACCESS_SCHEMA
ROLE_REGIONS = "role_regions"
# The region-grained published tables (kpis.md) and their region column.
REGIONAL_TABLES = {"kpi_segment_daily": "region"}
# The published tables without figures, readable by every reader.
METADATA = ((settings.PUBLISHED_SCHEMA, "run_info"), (settings.PUBLISHED_HISTORY_SCHEMA, "runs"))
POLICY = "published_rows"
# Plain lower-case identifiers only: what an administrator types is what PostgreSQL stores.
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
REGION_CODE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
RESERVED_ROLES = {settings.BI_READER_ROLE, settings.BI_REGIONAL_ROLE, "public", "postgres"}


class AccessError(ValueError):
    """A role name or region the commands refuse; the message says why."""


@dataclass(frozen=True)
class RoleRegions:
    role: str
    changed: list[str]  # the regions granted or revoked by this call
    regions: list[str]  # the role's regions afterwards
    created: bool = False


def check_role(role: str) -> str:
    if not ROLE_NAME.match(role):
        raise AccessError(
            f"role {role!r}: use a lower-case name of letters, digits and underscores (at most 63), "
            "not starting with a digit"
        )
    if role in RESERVED_ROLES or role.startswith("pg_"):
        raise AccessError(f"role {role!r} is reserved; regional access is for other roles")
    return role


def check_regions(regions: Sequence[str], known_only: bool) -> list[str]:
    """The region codes, upper-cased and de-duplicated in order. With known_only, each
    must be in the regions seed (grant: a typo must not grant an empty region)."""
    codes = list(dict.fromkeys(r.strip().upper() for r in regions))
    if not codes:
        raise AccessError("name at least one region")
    bad = [c for c in codes if not REGION_CODE.match(c)]
    if bad:
        raise AccessError(f"not region codes (ISO 3166-2, e.g. CN-GD): {', '.join(bad)}")
    if known_only:
        unknown = [c for c in codes if c not in reference.regions()]
        if unknown:
            raise AccessError(
                f"unknown regions {', '.join(unknown)}: the regions are those of dbt_project/seeds/regions.csv"
            )
    return codes


# --------------------------------------------------------------------------- schema


def _create_group_role(cur, role: str) -> bool:
    """CREATE ROLE role NOLOGIN unless it exists; safe against a concurrent creator
    (roles are shared by every database of the server). True when created here."""
    from psycopg2 import sql

    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is not None:
        return False
    cur.execute(
        sql.SQL(
            "DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ).format(sql.Identifier(role))
    )
    return True


def create_schema(cur, database: str) -> None:
    """The mapping table, the group role bi_regional and its rights (init-warehouse; idempotent)."""
    from psycopg2 import sql

    schema, mapping = sql.Identifier(ACCESS_SCHEMA), sql.Identifier(ACCESS_SCHEMA, ROLE_REGIONS)
    regional, reader = sql.Identifier(settings.BI_REGIONAL_ROLE), sql.Identifier(settings.BI_READER_ROLE)
    _create_group_role(cur, settings.BI_REGIONAL_ROLE)
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    cur.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                 role_name text NOT NULL,
                 region text NOT NULL,
                 granted_at timestamptz NOT NULL DEFAULT now(),
                 granted_by text NOT NULL DEFAULT session_user,
                 PRIMARY KEY (role_name, region))"""
        ).format(mapping)
    )
    # A reader sees its own mapping (the policies of the KPI tables read it as the reader),
    # not who else reads which region. A role that no longer exists matches nobody.
    _enable_rls(cur, ACCESS_SCHEMA, ROLE_REGIONS)
    _ensure_policy(
        cur,
        ACCESS_SCHEMA,
        ROLE_REGIONS,
        "own_rows",
        sql.SQL("role_name IN (SELECT rolname FROM pg_catalog.pg_roles WHERE pg_catalog.pg_has_role(oid, 'MEMBER'))"),
    )
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), regional))
    for readable in (settings.PUBLISHED_SCHEMA, settings.PUBLISHED_HISTORY_SCHEMA, ACCESS_SCHEMA):
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(readable), regional))
    cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, reader))
    for role in (settings.BI_REGIONAL_ROLE, settings.BI_READER_ROLE):
        _grant_select(cur, mapping, role)


def _enable_rls(cur, schema: str, table: str) -> None:
    from psycopg2 import sql

    cur.execute("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", (_regclass(cur, schema, table),))
    if not cur.fetchone()[0]:
        cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier(schema, table)))


def _ensure_policy(cur, schema: str, table: str, name: str, using) -> None:
    """A SELECT policy `name`, created when missing (existing ones are kept: a changed
    expression needs a new policy name)."""
    from psycopg2 import sql

    cur.execute(
        "SELECT 1 FROM pg_policy WHERE polrelid = %s::regclass AND polname = %s",
        (_regclass(cur, schema, table), name),
    )
    if cur.fetchone() is None:
        cur.execute(
            sql.SQL("CREATE POLICY {} ON {} FOR SELECT USING ({})").format(
                sql.Identifier(name), sql.Identifier(schema, table), using
            )
        )


def _grant_select(cur, relation, role: str) -> None:
    """GRANT SELECT only when missing: a GRANT locks the table against the publisher."""
    from psycopg2 import sql

    cur.execute("SELECT has_table_privilege(%s, %s, 'SELECT')", (role, relation.as_string(cur)))
    if not cur.fetchone()[0]:
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(relation, sql.Identifier(role)))


def _regclass(cur, schema: str, table: str) -> str:
    from psycopg2 import sql

    return sql.Identifier(schema, table).as_string(cur)


def _exists(cur, schema: str, relation: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (_regclass(cur, schema, relation),))
    return cur.fetchone()[0] is not None


def _policy_expression(table: str):
    """Who sees a row of `table`: program-wide roles all; regional roles, for a
    region-grained table, the rows of their regions."""
    from psycopg2 import sql

    program_wide = sql.SQL("pg_catalog.pg_has_role({}, 'MEMBER')").format(sql.Literal(settings.BI_READER_ROLE))
    if table not in REGIONAL_TABLES:
        return program_wide
    return sql.SQL("{} OR {} IN (SELECT region FROM {})").format(
        program_wide, sql.Identifier(REGIONAL_TABLES[table]), sql.Identifier(ACCESS_SCHEMA, ROLE_REGIONS)
    )


def secure(cur) -> None:
    """Row-level security and grants on every published and history KPI table that
    exists (see the module's docstring). Idempotent; the caller owns the transaction."""
    from psycopg2 import sql

    history = settings.PUBLISHED_HISTORY_SCHEMA
    for schema in (settings.PUBLISHED_SCHEMA, history):
        for table in KPI_TABLES:
            if not _exists(cur, schema, table):
                continue
            _enable_rls(cur, schema, table)
            _ensure_policy(cur, schema, table, POLICY, _policy_expression(table))
            if table in REGIONAL_TABLES:
                _grant_select(cur, sql.Identifier(schema, table), settings.BI_REGIONAL_ROLE)
    for table in KPI_TABLES:
        view = f"{table}_by_run"
        if not _exists(cur, history, view):
            continue
        # A view reads its tables with its owner's rights, and the owner passes every policy:
        # the history views must read with the reader's.
        cur.execute(
            "SELECT coalesce('security_invoker=true' = ANY(reloptions), false) FROM pg_class WHERE oid = %s::regclass",
            (_regclass(cur, history, view),),
        )
        if not cur.fetchone()[0]:
            cur.execute(sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(sql.Identifier(history, view)))
        if table in REGIONAL_TABLES:
            _grant_select(cur, sql.Identifier(history, view), settings.BI_REGIONAL_ROLE)
    for schema, table in METADATA:
        if _exists(cur, schema, table):
            _grant_select(cur, sql.Identifier(schema, table), settings.BI_REGIONAL_ROLE)


def _require_access_schema(cur) -> None:
    if not _exists(cur, ACCESS_SCHEMA, ROLE_REGIONS):
        raise pg.PgError(
            f"{ACCESS_SCHEMA}.{ROLE_REGIONS} is missing in database {settings.postgres().database!r}: "
            "run `program-reporting init-warehouse`"
        )


def _regions_of(cur, role: str) -> list[str]:
    from psycopg2 import sql

    cur.execute(
        sql.SQL("SELECT region FROM {} WHERE role_name = %s ORDER BY region").format(
            sql.Identifier(ACCESS_SCHEMA, ROLE_REGIONS)
        ),
        (role,),
    )
    return [r[0] for r in cur.fetchall()]


# --------------------------------------------------------------------------- commands


def grant_region(
    role: str, regions: Sequence[str], pg_settings: settings.PostgresSettings | None = None
) -> RoleRegions:
    """Let `role` read the rows of `regions`: the role is created NOLOGIN when missing
    (an administrator gives it a login, or grants it to login roles), made a member of
    bi_regional, and mapped to the regions. Idempotent."""
    from psycopg2 import sql

    check_role(role)
    codes = check_regions(regions, known_only=True)
    conn = pg.connect(pg_settings)
    try:
        with conn, conn.cursor() as cur:
            _require_access_schema(cur)
            created = _create_group_role(cur, role)
            cur.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone()[0]:
                raise AccessError(
                    f"role {role!r} is a superuser or has BYPASSRLS: it reads every row whatever its regions"
                )
            cur.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (role, settings.BI_REGIONAL_ROLE))
            if not cur.fetchone()[0]:
                cur.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(settings.BI_REGIONAL_ROLE), sql.Identifier(role))
                )
            changed = []
            for code in codes:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (role_name, region) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING region"
                    ).format(sql.Identifier(ACCESS_SCHEMA, ROLE_REGIONS)),
                    (role, code),
                )
                if cur.fetchone() is not None:
                    changed.append(code)
            result = RoleRegions(role, changed, _regions_of(cur, role), created)
    finally:
        conn.close()
    log.info("role %s: granted %s, now reads %s", role, changed, result.regions)
    return result


def revoke_region(
    role: str,
    regions: Sequence[str] = (),
    every_region: bool = False,
    pg_settings: settings.PostgresSettings | None = None,
) -> RoleRegions:
    """Stop `role` reading the rows of `regions` (or of all its regions). A role left
    without regions leaves bi_regional; the role itself is kept (an administrator drops
    it). Regions need not be in the seed, so that a region since removed can be revoked;
    a role that no longer exists loses its mapping. Idempotent."""
    from psycopg2 import sql

    check_role(role)
    codes = [] if every_region else check_regions(regions, known_only=False)
    mapping = sql.Identifier(ACCESS_SCHEMA, ROLE_REGIONS)
    conn = pg.connect(pg_settings)
    try:
        with conn, conn.cursor() as cur:
            _require_access_schema(cur)
            if every_region:
                cur.execute(sql.SQL("DELETE FROM {} WHERE role_name = %s RETURNING region").format(mapping), (role,))
            else:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE role_name = %s AND region = ANY(%s) RETURNING region").format(
                        mapping
                    ),
                    (role, codes),
                )
            changed = sorted(r[0] for r in cur.fetchall())
            left = _regions_of(cur, role)
            cur.execute(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = %s AND r.rolname = %s",
                (settings.BI_REGIONAL_ROLE, role),
            )
            if not left and cur.fetchone() is not None:
                cur.execute(
                    sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(settings.BI_REGIONAL_ROLE), sql.Identifier(role))
                )
            result = RoleRegions(role, changed, left)
    finally:
        conn.close()
    log.info("role %s: revoked %s, now reads %s", role, changed, result.regions)
    return result
