"""The production database: its secrets checked and its warehouse initialised (the compose
file's airflow-init service runs both).

  program-reporting check-secrets
      refuse to start with a missing secret or an .env.example placeholder
      (allowed only when PROGRAM_REPORTING_PROFILE=local)
  program-reporting init-warehouse
      create the warehouse database, the published schema, its history schema
      published_history, the read-only bi_reader role, and regional access:
      schema published_access (the roles' regions), the group role bi_regional
      and the row-level security policies (postgres/access.py) (idempotent)
"""

from __future__ import annotations

from collections.abc import Mapping

from program_reporting.core import settings
from program_reporting.postgres import access, history

SECRETS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_ADMIN_PASSWORD",
    "PROGRAM_REPORTING_BI_READER_PASSWORD",
)
PLACEHOLDERS = {"", "change-me", "changeme", "airflow", "postgres", "password", "admin"}


def secret_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the secrets in env; empty when they may be used."""
    if env.get("PROGRAM_REPORTING_PROFILE", "production") == "local":
        return []
    problems = []
    for name in SECRETS:
        value = env.get(name)
        if value is None:
            problems.append(f"{name} is not set")
        elif value.strip().lower() in PLACEHOLDERS:
            problems.append(f"{name} has a default or placeholder value; set a real secret in .env")
        elif len(value) < 12:
            problems.append(f"{name} is shorter than 12 characters")
    return problems


def init_warehouse(pg: settings.PostgresSettings | None = None, bi_reader_password: str | None = None) -> None:
    """Create the warehouse database, the published and published_history schemas,
    bi_reader and regional access (postgres/access.py), idempotently."""
    import psycopg2
    from psycopg2 import sql

    pg = pg or settings.postgres()
    admin = psycopg2.connect(**pg.dsn(database="postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.database)))
    admin.close()

    conn = psycopg2.connect(**pg.dsn())
    with conn, conn.cursor() as cur:
        role = sql.Identifier(settings.BI_READER_ROLE)
        schema = sql.Identifier(settings.PUBLISHED_SCHEMA)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.BI_READER_ROLE,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        if bi_reader_password:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (bi_reader_password,))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        history.create_schema(cur)
        # bi_reader reads the published set and its history and nothing else; it writes nothing.
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(pg.database)))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(pg.database), role))
        cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for readable in (schema, sql.Identifier(history.HISTORY_SCHEMA)):
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(readable, role))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(readable, role))
            cur.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(readable, role)
            )
        # Regional roles (postgres/access.py): the mapping, bi_regional, and the policies
        # on the tables a warehouse initialised before regional access already has.
        access.create_schema(cur, pg.database)
        access.secure(cur)
    conn.close()
