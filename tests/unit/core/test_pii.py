"""Personal data stays in the restricted raw layer.

A real small pipeline (simulated deliveries of two days, landing, dbt build,
audit, GX gate, publish, validation report, Parquet exports, KPI brief; no
mocks), then every file it wrote outside home/restricted/ and home/quarantine/
is scanned for the owner names, phones and national ids the simulator put
into merchants.csv: literally, by the patterns of redaction.py, and by column
name in every table. The restricted layer and the quarantine (which keeps raw
rows) must be owner-only."""

from __future__ import annotations

import csv
import gzip
import io
import re
import stat
from pathlib import Path

import duckdb
import pytest
from helpers import reliability_log

from program_reporting.core import redaction
from program_reporting.core.settings import Paths

pytestmark = [pytest.mark.e2e]

SCANS = [
    "published tables",
    "Parquet exports",
    "KPI brief",
    "validation reports",
    "warehouse and raw layer",
    "every other file",
    "restricted layer",
    "quarantine",
]
reliability_log.expect("pii", SCANS)
PII = ("owner_name", "owner_phone", "owner_national_id")
PATTERNS = {k: re.compile(v) for k, v in redaction.PII_VALUE_PATTERNS.items()}
COLUMN = re.compile(redaction.PII_COLUMN_NAME_PATTERN)


def _pii_values(drop: Path) -> set[str]:
    values = set()
    for f in drop.glob("merchants/ds=*/merchants.csv*"):
        raw = f.read_bytes()
        text = (gzip.decompress(raw) if f.name.endswith(".gz") else raw).decode("utf-8-sig")
        for r in csv.DictReader(io.StringIO(text, newline="")):
            values.update(v for k in PII if (v := (r.get(k) or "").strip()))
    return values


class Scan:
    def __init__(self, values: set[str]):
        self.values = values
        self.hits: list[str] = []
        self.files = 0
        self.tables = 0
        self.cells = 0

    def text(self, where: str, text: str) -> None:
        for v in self.values:
            if v in text:
                self.hits.append(f"{where}: value {v!r}")
        for name, rx in PATTERNS.items():
            for m in rx.finditer(text):
                # the digits after a decimal point (0.029621601104736328 s in dbt's timings) are no id
                if m.start() > 0 and text[m.start() - 1] == ".":
                    continue
                self.hits.append(f"{where}: {name} pattern {m.group(0)!r}")

    def relation(self, where: str, con, rel_sql: str) -> None:
        cols = con.execute(f"DESCRIBE SELECT * FROM {rel_sql}").fetchall()
        for name, *_ in cols:
            if COLUMN.search(name):
                self.hits.append(f"{where}: column {name}")
        text_cols = [n for n, t, *_ in cols if "VARCHAR" in t or "JSON" in t]
        self.tables += 1
        if text_cols:
            for row in con.execute(
                f"SELECT {', '.join(chr(34) + c + chr(34) for c in text_cols)} FROM {rel_sql}"
            ).fetchall():
                self.cells += len(row)
                self.text(where, "\x1f".join(str(v) for v in row if v is not None))

    def duckdb_file(self, path: Path, label: str) -> None:
        self.files += 1
        con = duckdb.connect(str(path), read_only=True)
        try:
            for schema, table in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall():
                self.relation(f"{label}:{table}", con, f'"{schema}"."{table}"')
        finally:
            con.close()

    def parquet_file(self, path: Path, label: str) -> None:
        self.files += 1
        con = duckdb.connect()
        try:
            self.relation(label, con, "read_parquet('" + str(path).replace("'", "''") + "')")
        finally:
            con.close()

    def any_file(self, path: Path, label: str) -> None:
        if path.suffix == ".duckdb":
            self.duckdb_file(path, label)
        elif path.suffix == ".parquet":
            self.parquet_file(path, label)
        else:
            self.files += 1
            self.text(label, path.read_bytes().decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Two simulated days through every stage, in this process, on real components."""
    import os

    from program_reporting.core import settings
    from program_reporting.landing import land as landing
    from program_reporting.publishing import exports
    from program_reporting.publishing.wap import audit_and_publish
    from program_reporting.reporting import brief
    from program_reporting.tools.simulate.simulator import simulate
    from program_reporting.warehouse import build

    root = tmp_path_factory.mktemp("pii")
    saved = {k: os.environ.get(k) for k in ("PROGRAM_REPORTING_DROP", "PROGRAM_REPORTING_HOME")}
    os.environ["PROGRAM_REPORTING_DROP"] = str(root / "drop")
    os.environ["PROGRAM_REPORTING_HOME"] = str(root / "home")
    try:
        p = settings.paths()
        simulate(start="2020-06-02", days=2, merchants=40, seed=11, drop=p.drop, progress=False)
        for ds in ("2020-06-02", "2020-06-03"):
            for source in settings.SOURCES:
                landing.land(source, ds, p)
            landing.release_orphans(ds, p)
            run_id = f"pii-{ds}"
            build.build(ds, run_id, paths=p)
            build.stage_audit(run_id, ds, paths=p)
            outcome = audit_and_publish(run_id, ds, paths=p)
            assert outcome.published, outcome.reason
        exports.export_parquet(p)
        brief.write_brief(p)
        yield p
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _files(p: Paths, pattern: str) -> list[Path]:
    return sorted(f for f in p.home.glob(pattern) if f.is_file())


def _check(reliability, key: str, how: str, scan: Scan, what: str) -> None:
    assert scan.hits == [], scan.hits[:10]
    reliability.record(
        "pii",
        key,
        {"what": key, "how": how, "finding": f"no personal data ({what})"},
        measured={"files": scan.files, "tables": scan.tables, "cells": scan.cells},
    )
    reliability.passed("pii", key)


HOW = "column names; every text cell for the delivered owner names, phones, national ids and the PII patterns"


def test_published_tables(pipeline, reliability):
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    assert len(scan.values) > 20  # the simulator did write personal data
    published = [p.current_db] + sorted(p.runs.glob("*/kpi.duckdb"))
    assert len(published) == 3
    for f in published:
        scan.duckdb_file(f, f.relative_to(p.home).as_posix())
    assert scan.tables >= 3 * 3
    _check(reliability, "published tables", HOW, scan, "current.duckdb and every published run")


def test_parquet_exports(pipeline, reliability):
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    files = sorted(f for f in (p.exports / "parquet").rglob("*.parquet") if f.is_file())
    assert len(files) >= 3
    for f in files:
        scan.parquet_file(f, f.relative_to(p.home).as_posix())
    _check(reliability, "Parquet exports", HOW, scan, "every exported Parquet file")


def test_kpi_brief(pipeline, reliability):
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    from program_reporting.reporting import brief

    path = brief.brief_path(p)
    scan.any_file(path, "kpi_brief.html")
    _check(
        reliability, "KPI brief", "the whole HTML for the delivered values and the PII patterns", scan, "kpi_brief.html"
    )


def test_validation_reports(pipeline, reliability):
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    files = _files(p, "reports/**/*")
    assert any(f.name == "report.json" for f in files) and any(f.name == "index.html" for f in files)
    for f in files:
        scan.any_file(f, f.relative_to(p.home).as_posix())
    _check(
        reliability,
        "validation reports",
        "report.json, report.html, Data Docs and the index: whole text",
        scan,
        "every file under reports/",
    )


def test_warehouse_and_raw_layer(pipeline, reliability):
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    scan.duckdb_file(p.warehouse_db, "warehouse.duckdb")
    for f in _files(p, "raw/**/*.parquet") + _files(p, "held/**/*.parquet"):
        scan.parquet_file(f, f.relative_to(p.home).as_posix())
    _check(reliability, "warehouse and raw layer", HOW, scan, "warehouse.duckdb, raw/ and held/ Parquet")


def test_every_other_file(pipeline, reliability):
    """Whatever else the pipeline wrote (records, audit sets, logs, alerts, dbt artifacts)."""
    p = pipeline
    scan = Scan(_pii_values(p.drop))
    skip = (
        "restricted/",
        "quarantine/",
        "reports/",
        "raw/",
        "held/",
        "published/",
        "exports/",
        "warehouse/warehouse.duckdb",
    )
    for f in _files(p, "**/*"):
        rel = f.relative_to(p.home).as_posix()
        if rel.startswith(skip) or rel.endswith((".wal", ".lock")):
            continue
        scan.any_file(f, rel)
    assert scan.files > 0
    _check(
        reliability,
        "every other file",
        "whole text (DuckDB and Parquet files by table)",
        scan,
        "everything else under PROGRAM_REPORTING_HOME outside restricted/ and quarantine/",
    )


def _owner_only(paths: list[Path]) -> None:
    for f in paths:
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o700 if f.is_dir() else 0o600), f"{f}: {oct(mode)}"


def test_restricted_layer_is_owner_only(pipeline, reliability):
    p = pipeline
    files = sorted(p.restricted.rglob("*"))
    assert any(f.suffix == ".parquet" for f in files)
    _owner_only([p.restricted] + files)
    # and it really holds the personal data (the split happened, it did not vanish)
    con = duckdb.connect()
    cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{p.restricted}/**/*.parquet')").fetchall()}
    con.close()
    assert set(PII) <= cols
    reliability.record(
        "pii",
        "restricted layer",
        {
            "what": "restricted layer (home/restricted/)",
            "how": "modes of every folder and file",
            "finding": "holds owner name, phone, national id; folders 0700, files 0600",
        },
    )
    reliability.passed("pii", "restricted layer")


def test_quarantine_is_owner_only(pipeline, reliability):
    p = pipeline
    files = sorted(p.quarantine.rglob("*"))
    parts = [f for f in files if f.is_dir() and f.name.startswith("ds=")]
    _owner_only(parts + [f for f in files if f.is_file()])
    reliability.record(
        "pii",
        "quarantine",
        {
            "what": "quarantine (home/quarantine/, keeps raw rows)",
            "how": "modes of every partition and file",
            "finding": "partitions 0700, files 0600 (the corpus checks the same for every quarantining case)",
        },
        measured={"files": len([f for f in files if f.is_file()])},
    )
    reliability.passed("pii", "quarantine")


def test_file_modes(pipeline, reliability):
    """What the pipeline writes: nothing world-writable; personal and
    quarantined data owner-only; published sets and reports read-only."""
    p = pipeline
    writable = [f for f in p.home.rglob("*") if not f.is_symlink() and f.stat().st_mode & 0o002]
    assert writable == [], writable[:5]
    published = [f for f in p.runs.rglob("*") if f.is_file()]
    assert published and all(f.stat().st_mode & 0o222 == 0 for f in published), "a published file is writable"
    reports = [f for f in p.reports.glob("*/report.*")]
    assert reports and all(f.stat().st_mode & 0o222 == 0 for f in reports), "a report is writable"
    for layer in (p.restricted, p.quarantine, p.held):
        for f in layer.rglob("*"):
            if f.is_file():
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(p.warehouse_db.stat().st_mode) & 0o002 == 0
    reliability.record(
        "safety",
        "file modes",
        {
            "check": "modes of everything under PROGRAM_REPORTING_HOME after a real two-day run",
            "outcome": "nothing world-writable (the rest follows the umask); published sets and reports read-only "
            "(0444); restricted, quarantine and held files 0600; warehouse.duckdb holds no personal data "
            "(scanned above)",
        },
    )
    reliability.passed("safety", "file modes")
