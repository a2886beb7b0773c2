"""Apache Superset 6.1 for real (program_reporting.bi, `make bi`): its own virtual environment,
its SQLite metadata, the "Program KPIs" bundle, one gunicorn server for the module.

A set is published the real way (write-audit-publish, files and the PostgreSQL serving
schema of a database of our own); then, through Superset's API and in headless Chromium:

1. every chart's data (/api/v1/chart/<id>/data/, the query saved with the chart) equals
   the published tables, read with DuckDB: figures by program straight from
   kpi_program_daily and kpi_target_progress, while most charts read kpi_segment_daily
   through the semantic layer's metrics;
2. a new publication (current.duckdb replaced by a rename) is what the next query reads;
3. the same charts on the serving schema, as bi_reader, give the same figures;
4. a "KPI Viewer" reads the dashboard and its data but cannot edit or delete it, nor run SQL;
5. Chromium shows the dashboard with no console error and no request leaving 127.0.0.1
   (screenshot: test-output/superset_dashboard.png, copied to /tmp/superset-dashboard.png),
   and the native filters reach the charts they are scoped to;
6. the server stops with its whole process group.

The metrics come from the project's semantic layer (dbt_project/models/semantic/), or from
tests/data/semantic/ while the project has none. Skips only where Superset's environment
cannot be created (no package index), or PostgreSQL is not reachable, and says which."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import requests
from helpers.airflow_db import free_port
from helpers.console_page import open_page
from helpers.marts import mutate, write_audit
from helpers.offline_page import chromium

from program_reporting.bi import server
from program_reporting.core import settings
from program_reporting.warehouse.semantic import SEMANTIC_DIR

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
FIXTURE_LAYER = REPO / "tests" / "data" / "semantic"
OUTPUT = REPO / "test-output"
SCREENSHOT = OUTPUT / "superset_dashboard.png"
FIGURES = OUTPUT / "superset_figures.txt"
DS = "2020-06-10"
PROGRAMS = ("SPARK-2020", "SPRING-THUNDER-2020", "PPP-2020")
SEGMENT_CHARTS = {"Enrolment", "Credit drawn and outstanding", "Interest subsidy cost"}

# What each chart must show, read straight from the published tables: (date, program) -> figures.
PUBLISHED = {
    "Enrolment": "SELECT as_of_date, program_code, enrolled_merchants FROM kpi_program_daily",
    "Credit drawn and outstanding": (
        "SELECT as_of_date, program_code, drawn_to_date, outstanding_balance FROM kpi_program_daily"
    ),
    "PAR30 and PAR90": "SELECT as_of_date, program_code, par30_rate, par90_rate FROM kpi_program_daily",
    "Jobs retained against the target": (
        "SELECT as_of_date, program_code, actual_value, target_value FROM kpi_target_progress "
        "WHERE metric = 'jobs_retained'"
    ),
    "Interest subsidy cost": "SELECT as_of_date, program_code, interest_subsidy_cost_to_date FROM kpi_program_daily",
}
RATES = {"PAR30 and PAR90"}  # published to 6 decimals; Superset divides the sums exactly


@dataclass
class Bi:
    url: str
    paths: settings.Paths
    setup: server.Setup
    server: server.Server
    python: Path
    admin: requests.Session
    admin_password: str
    pg_database: str


def semantic_layer() -> Path:
    return SEMANTIC_DIR if SEMANTIC_DIR.is_dir() else FIXTURE_LAYER


def api_session(url: str, user: str, password: str) -> requests.Session:
    """A session logged in through the API (JWT), with the CSRF token writing calls need."""
    s = requests.Session()
    login = s.post(
        f"{url}/api/v1/security/login",
        json={"username": user, "password": password, "provider": "db", "refresh": False},
        timeout=60,
    )
    assert login.status_code == 200, login.text
    s.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    s.headers["X-CSRFToken"] = s.get(f"{url}/api/v1/security/csrf_token/", timeout=60).json()["result"]
    s.headers["Referer"] = url
    return s


def publish_run(paths: settings.Paths, run_id: str, bump: int) -> None:
    """A valid set through write-audit-publish: the files (current.duckdb) and, since
    PROGRAM_REPORTING_TARGET=postgres, the serving schema. Its PAR90 is made non-zero
    (helpers.marts leaves it 0), so that the chart's PAR90, rebuilt from the published
    rate and balance by the semantic layer, is tested on real figures."""
    from program_reporting.publishing import wap

    db = write_audit(paths, run_id, DS, programs=PROGRAMS, bump=bump)
    mutate(db, "UPDATE kpi_program_daily SET par90_rate = round(par30_rate / 3, 6)")
    outcome = wap.audit_and_publish(run_id, DS, paths=paths, landed=False)
    assert outcome.published, outcome.reason


def published(paths: settings.Paths, chart: str) -> dict[tuple, tuple]:
    con = duckdb.connect(str(paths.current_db), read_only=True)
    try:
        rows = con.execute(PUBLISHED[chart]).fetchall()
    finally:
        con.close()
    return {(r[0], r[1]): tuple(None if v is None else float(v) for v in r[2:]) for r in rows}


def chart_rows(bi: Bi, session: requests.Session, chart: str) -> dict[tuple, tuple]:
    response = session.get(f"{bi.url}/api/v1/chart/{bi.setup.charts[chart]}/data/", timeout=120)
    assert response.status_code == 200, (chart, response.text[:500])
    (result,) = response.json()["result"]
    assert result["status"] == "success" and not result.get("error"), result
    names = result["colnames"][2:]
    out = {}
    for row in result["data"]:
        day = dt.datetime.fromtimestamp(row["as_of_date"] / 1000, dt.UTC).date()
        out[(day, row["program_code"])] = tuple(None if row[n] is None else float(row[n]) for n in names)
    return out


def assert_same_figures(chart: str, shown: dict, expected: dict) -> int:
    """Every (date, program) and every figure; returns how many figures were compared."""
    assert set(shown) == set(expected), chart
    compared = 0
    for key, values in expected.items():
        for got, want in zip(shown[key], values):
            compared += 1
            if want is None:
                assert got is None, (chart, key)
            elif chart in RATES:
                assert got == pytest.approx(want, abs=5e-7), (chart, key)  # the rate's 6 decimals
            else:
                assert got == pytest.approx(want, rel=1e-12), (chart, key)
    return compared


@pytest.fixture(scope="module")
def bi(tmp_path_factory):
    import psycopg2

    from program_reporting.postgres.production import init_warehouse

    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres").close()
    except psycopg2.OperationalError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    try:
        python = server.ensure_venv(log=lambda _m: None)
    except server.BiError as exc:
        pytest.skip(f"Superset's virtual environment (.venv-bi/) cannot be created here: {exc}")

    root = tmp_path_factory.mktemp("superset")
    database = f"pr_test_{secrets.token_hex(5)}"
    admin_db = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin_db.autocommit = True
    with admin_db.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    password = secrets.token_urlsafe(16)
    srv = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
            mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
            mp.setenv("PROGRAM_REPORTING_PG_HOST", "127.0.0.1")
            mp.setenv("PROGRAM_REPORTING_PG_PORT", "5432")
            mp.setenv("PROGRAM_REPORTING_PG_USER", "postgres")
            mp.setenv("PROGRAM_REPORTING_PG_DATABASE", database)
            mp.setenv("PROGRAM_REPORTING_TARGET", "postgres")  # publish to the serving schema too
            mp.setenv("PROGRAM_REPORTING_BI_ADMIN_USER", "admin")
            for name in ("PROGRAM_REPORTING_BI_SECRET_KEY", "PROGRAM_REPORTING_BI_READER_PASSWORD"):
                mp.delenv(name, raising=False)
            paths = settings.paths()
            paths.drop.mkdir(parents=True)
            paths.home.mkdir(parents=True)
            init_warehouse()
            publish_run(paths, "r1", bump=0)
            started = time.monotonic()
            done = server.setup(password, paths=paths, semantic_dir=semantic_layer(), python=python, target="duckdb")
            srv = server.start(paths, port=free_port(), python=python)
            up = time.monotonic() - started
            OUTPUT.mkdir(exist_ok=True)
            FIGURES.write_text(
                f"Superset setup {done.seconds:.1f}s ({done.timings}), from setup to /health {up:.1f}s; "
                f"metrics from {semantic_layer().relative_to(REPO)}\n"
            )
            yield Bi(srv.url, paths, done, srv, python, api_session(srv.url, "admin", password), password, database)
    finally:
        if srv is not None:
            srv.stop()
        with admin_db.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin_db.close()


def test_make_bi_set_up_the_dashboard_and_both_databases(bi):
    a = bi.admin
    dashboard = a.get(f"{bi.url}/api/v1/dashboard/program-kpis", timeout=60).json()["result"]
    assert dashboard["dashboard_title"] == "Program KPIs" and dashboard["published"]
    assert {c["slice_name"] for c in a.get(f"{bi.url}/api/v1/dashboard/program-kpis/charts").json()["result"]} == set(
        PUBLISHED
    )
    databases = {d["database_name"]: d for d in a.get(f"{bi.url}/api/v1/database/").json()["result"]}
    assert {d["backend"] for d in databases.values()} == {"duckdb", "postgresql"}
    duck = a.get(f"{bi.url}/api/v1/database/{databases['Published set (DuckDB)']['id']}/connection").json()["result"]
    assert duck["sqlalchemy_uri"] == f"duckdb:///{bi.paths.current_db.resolve()}"
    assert json.loads(duck["extra"])["engine_params"]["connect_args"]["read_only"] is True
    assert not duck["allow_dml"] and not duck["allow_file_upload"]
    pg = a.get(f"{bi.url}/api/v1/database/{databases['Serving schema (PostgreSQL)']['id']}/connection").json()["result"]
    assert pg["sqlalchemy_uri"] == f"postgresql+psycopg2://bi_reader@127.0.0.1:5432/{bi.pg_database}"
    # Metadata and secret under the home, the key readable by its owner only.
    assert (bi.paths.bi / "superset.db").is_file()
    assert (bi.paths.bi / "secret_key").stat().st_mode & 0o777 == 0o600
    # Every dataset's metrics are the semantic layer's, over the columns Superset has.
    from program_reporting.bi.metrics import dataset_metrics

    datasets = {
        table: a.get(f"{bi.url}/api/v1/dataset/{ident}").json()["result"] for table, ident in bi.setup.datasets.items()
    }
    generated = dataset_metrics(
        semantic_layer(), {table: {c["column_name"] for c in d["columns"]} for table, d in datasets.items()}
    )
    for table, dataset in datasets.items():
        assert {m["metric_name"]: m["expression"] for m in dataset["metrics"]} == {
            m["metric_name"]: m["expression"] for m in generated[table]
        }, table
    par30 = {m["metric_name"]: m["expression"] for m in generated["kpi_program_daily"]}["par30_rate"]
    assert par30 == "CAST(SUM(par30_balance) AS DOUBLE PRECISION) / NULLIF(SUM(outstanding_balance), 0)"


def test_every_chart_shows_the_published_figures(bi):
    compared, lines = 0, []
    for chart in PUBLISHED:
        shown, expected = chart_rows(bi, bi.admin, chart), published(bi.paths, chart)
        compared += assert_same_figures(chart, shown, expected)
        last = max(d for d, _p in expected)
        for (day, program), values in sorted(expected.items()):
            if day == last:
                lines.append(f"  {chart} | {day} | {program} | Superset {shown[(day, program)]} | published {values}")
    assert compared > 150
    with FIGURES.open("a") as out:
        out.write(f"run r1 (DuckDB file): {compared} figures compared, every chart; the last date:\n")
        out.write("\n".join(lines) + "\n")


def test_a_new_publication_is_what_the_next_query_reads(bi):
    before = chart_rows(bi, bi.admin, "Enrolment")
    inode = bi.paths.current_db.stat().st_ino
    publish_run(bi.paths, "r2", bump=7)
    assert bi.paths.current_db.stat().st_ino != inode  # replaced by a rename, not written in place
    after = chart_rows(bi, bi.admin, "Enrolment")
    assert after != before
    compared = sum(assert_same_figures(c, chart_rows(bi, bi.admin, c), published(bi.paths, c)) for c in PUBLISHED)
    with FIGURES.open("a") as out:
        out.write(f"run r2 (published while Superset ran): {compared} figures compared\n")


def test_a_viewer_reads_the_dashboard_but_cannot_change_it_or_run_sql(bi):
    a = bi.admin
    roles = a.get(f"{bi.url}/api/v1/security/roles/", params={"q": "(page_size:100)"}).json()["result"]
    role = next(r["id"] for r in roles if r["name"] == server.VIEWER_ROLE)
    created = a.post(
        f"{bi.url}/api/v1/security/users/",
        json={
            "active": True,
            "email": "viewer@localhost",
            "first_name": "KPI",
            "last_name": "Viewer",
            "username": "viewer",
            "password": "viewer-password-1",
            "roles": [role],
        },
    )
    assert created.status_code == 201, created.text
    v = api_session(bi.url, "viewer", "viewer-password-1")
    dashboard = v.get(f"{bi.url}/api/v1/dashboard/program-kpis")
    assert dashboard.status_code == 200 and dashboard.json()["result"]["dashboard_title"] == "Program KPIs"
    dashboard_id = dashboard.json()["result"]["id"]
    for chart in PUBLISHED:
        assert chart_rows(bi, v, chart) == chart_rows(bi, a, chart)
    chart_id = bi.setup.charts["Enrolment"]
    refused = {
        "PUT dashboard": v.put(f"{bi.url}/api/v1/dashboard/{dashboard_id}", json={"dashboard_title": "Changed"}),
        "DELETE dashboard": v.delete(f"{bi.url}/api/v1/dashboard/{dashboard_id}"),
        "PUT chart": v.put(f"{bi.url}/api/v1/chart/{chart_id}", json={"slice_name": "Changed"}),
        "DELETE chart": v.delete(f"{bi.url}/api/v1/chart/{chart_id}"),
        "SQL Lab": v.post(
            f"{bi.url}/api/v1/sqllab/execute/",
            json={"database_id": bi.setup.databases["Published set (DuckDB)"], "sql": "SELECT 1", "runAsync": False},
        ),
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    # The same calls are allowed to the admin: what refused them is the role, not the request.
    assert (
        a.put(f"{bi.url}/api/v1/dashboard/{dashboard_id}", json={"dashboard_title": "Program KPIs"}).status_code == 200
    )
    sql = a.post(
        f"{bi.url}/api/v1/sqllab/execute/",
        json={
            "database_id": bi.setup.databases["Published set (DuckDB)"],
            "sql": "SELECT count(*) AS n FROM kpi_program_daily",
            "runAsync": False,
        },
    )
    assert sql.status_code == 200 and sql.json()["data"][0]["n"] == len(published(bi.paths, "Enrolment"))


def browser_cookies(url: str, user: str, password: str) -> list[dict]:
    """Log in through Superset's login form; the session cookie for Chromium."""
    s = requests.Session()
    form = s.get(f"{url}/login/", timeout=60).text
    token = re.search(r'id="csrf_token"\s+value="([^"]+)"', form).group(1)
    s.post(f"{url}/login/", data={"csrf_token": token, "username": user, "password": password}, timeout=60)
    assert "session" in s.cookies
    return [{"name": c.name, "value": c.value, "url": url + "/"} for c in s.cookies]


CHARTS_DRAWN = "document.querySelectorAll('.dashboard-component-chart-holder canvas').length >= 5"


def test_chromium_shows_the_dashboard_with_no_console_error(bi, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.fail("chromium is not installed (.ci/run installs it)")
    cookies = browser_cookies(bi.url, "viewer", "viewer-password-1")
    # Tall enough for the whole dashboard: five charts and the notes.
    page = open_page(
        browser,
        f"{bi.url}{bi.setup.dashboard_url}",
        SCREENSHOT,
        tmp_path / "plain",
        cookies,
        CHARTS_DRAWN,
        size=(1600, 1560),
    )
    shutil.copyfile(SCREENSHOT, "/tmp/superset-dashboard.png")
    assert page.shown, page.text[:2000]
    assert page.errors == []
    outside = [u for u in page.requests if not u.startswith((bi.url + "/", "data:", "blob:"))]
    assert outside == [], "the page must load nothing from outside this server"
    for text in ("Program KPIs", *PUBLISHED, "Program", "Region", "Business type", "Size class", "Date"):
        assert text in page.text
    assert "Edit dashboard" not in page.text  # a viewer

    # The native filters, as a dashboard link carries them: program everywhere, region
    # only where the dataset has one.
    state = (
        "(NATIVE_FILTER-program:(extraFormData:(filters:!((col:program_code,op:IN,val:!(SPARK-2020)))),"
        "filterState:(value:!(SPARK-2020)),id:NATIVE_FILTER-program),"
        "NATIVE_FILTER-region:(extraFormData:(filters:!((col:region,op:IN,val:!(CN-GD)))),"
        "filterState:(value:!(CN-GD)),id:NATIVE_FILTER-region))"
    )
    filtered = open_page(
        browser,
        f"{bi.url}{bi.setup.dashboard_url}?native_filters={urllib.parse.quote(state)}",
        tmp_path / "filtered.png",
        tmp_path / "filtered",
        cookies,
        CHARTS_DRAWN,
    )
    assert filtered.shown and filtered.errors == []
    names = {chart_id: name for name, chart_id in bi.setup.charts.items()}
    seen = {}
    for url, body in filtered.posts:
        query = json.loads(body) if "/api/v1/chart/data" in url else {}
        chart_id = query.get("form_data", {}).get("slice_id")  # none: a filter's own list of values
        if chart_id:
            seen[names[chart_id]] = {
                (f["col"], tuple(f["val"])) for f in query["queries"][0]["filters"] if f["op"] == "IN"
            }
    assert set(seen) == set(PUBLISHED)
    for chart, applied in seen.items():
        expected = {("program_code", ("SPARK-2020",))}
        if chart in SEGMENT_CHARTS:
            expected.add(("region", ("CN-GD",)))
        assert applied == expected, chart


def test_the_serving_schema_as_bi_reader_gives_the_same_figures(bi):
    """The production profile: the same bundle, its datasets moved to the PostgreSQL
    serving schema (which holds the same published set), read as bi_reader."""
    moved = server.setup(
        bi.admin_password, paths=bi.paths, semantic_dir=semantic_layer(), python=bi.python, target="postgres"
    )
    assert moved.charts == bi.setup.charts and moved.datasets == bi.setup.datasets
    for name, dataset_id in moved.datasets.items():
        dataset = bi.admin.get(f"{bi.url}/api/v1/dataset/{dataset_id}").json()["result"]
        assert dataset["database"]["backend"] == "postgresql" and dataset["schema"] == settings.PUBLISHED_SCHEMA, name
    compared = sum(assert_same_figures(c, chart_rows(bi, bi.admin, c), published(bi.paths, c)) for c in PUBLISHED)
    with FIGURES.open("a") as out:
        out.write(f"run r2 on the PostgreSQL serving schema as bi_reader: {compared} figures compared\n")


def test_the_server_stops_with_its_process_group(bi):
    pgid = bi.server.proc.pid
    bi.server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{bi.url}/health", timeout=5)
