"""The production profile's warehouse set-up, against the real PostgreSQL server."""

from __future__ import annotations

import psycopg2
import pytest

from program_reporting.core import settings
from program_reporting.postgres.production import init_warehouse

pytestmark = pytest.mark.postgres


def _connect_as_bi_reader(db: str):
    return psycopg2.connect(host="127.0.0.1", port=5432, user=settings.BI_READER_ROLE, dbname=db)


def test_init_warehouse_is_idempotent_and_bi_reader_sees_only_published(pg_database):
    init_warehouse()
    init_warehouse()  # a second init changes nothing and does not fail
    pg = settings.postgres()
    with psycopg2.connect(**pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.raw_secret (owner_phone text)")
        cur.execute("INSERT INTO public.raw_secret VALUES ('13812345678')")
        cur.execute("CREATE TABLE published.kpi_example (x int)")
        cur.execute("INSERT INTO published.kpi_example VALUES (1)")
    reader = _connect_as_bi_reader(pg_database)
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT x FROM published.kpi_example")
            assert cur.fetchall() == [(1,)]
        with reader.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM public.raw_secret")
        reader.rollback()
        with reader.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE published.bi_scribble (x int)")
    finally:
        reader.close()
