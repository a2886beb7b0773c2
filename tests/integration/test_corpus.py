"""The bad-input corpus (tests/data/corpus/cases.yaml): every malformed delivery gets
exactly the outcome it names, and whatever the outcome, no row is lost:
a landed delivery satisfies delivered = loaded + quarantined + held with the
files to prove it, and a rejected one leaves nothing behind but its failure
record. Outcomes go into RELIABILITY.md."""

from __future__ import annotations

import json
import shutil
import stat

import duckdb
import pytest
from helpers import corpus_kit, reliability_log

from program_reporting.core.settings import Paths


def _one(sql: str):
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


CASES = corpus_kit.load_cases()
reliability_log.expect("corpus", [c["id"] for c in CASES])


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Paths:
    root = tmp_path_factory.mktemp("corpus-base")
    p = Paths(drop=root / "drop", home=root / "home")
    p.drop.mkdir()
    p.home.mkdir()
    corpus_kit.base_home(p)
    return p


def _count(path) -> int:
    return _one(f"SELECT count(*) FROM read_parquet('{path}')")[0][0]


def _check_landed(p: Paths, case: dict, record: dict) -> None:
    source, ds = case.get("source", "credit_events"), case.get("ds", corpus_kit.DS)
    # the identity, and the files behind each number
    assert record["delivered"] == record["loaded"] + record["quarantined"] + record["held"]
    assert record["delivered"] == record["control_row_count"]
    raw = p.raw / source / f"ds={ds}"
    assert json.loads((raw / "_reconciliation.json").read_text()) == record
    assert _count(raw / "rows.parquet") == record["loaded"]
    qfile = p.quarantine / source / f"ds={ds}" / "quarantine.parquet"
    if record["quarantined"]:
        assert _count(qfile) == record["quarantined"]
        # quarantine keeps the raw row: owner-only
        assert stat.S_IMODE(qfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(qfile.parent.stat().st_mode) == 0o700
        rules = dict(_one(f"SELECT rule, count(*) FROM read_parquet('{qfile}') GROUP BY 1"))
        assert rules == record["quarantine_by_rule"]
        assert (
            _one(
                f"SELECT count(*) FROM read_parquet('{qfile}') WHERE line IS NULL OR raw_text IS NULL OR detail IS NULL"
            )[0][0]
            == 0
        )
    else:
        assert not qfile.exists()
    hfile = p.held / source / f"ds={ds}" / "rows.parquet"
    assert (_count(hfile) if hfile.exists() else 0) == record["held"]


def _check_nothing_landed(p: Paths, case: dict) -> None:
    source, ds = case.get("source", "credit_events"), case.get("ds", corpus_kit.DS)
    for layer in (p.raw, p.quarantine, p.held):
        assert not (layer / source / f"ds={ds}").exists(), f"something of a refused delivery landed in {layer}"
    # base merchants untouched
    assert (p.raw / "merchants" / "ds=2020-06-02" / "_reconciliation.json").is_file()
    assert not [t for t in (p.tmp.iterdir() if p.tmp.exists() else []) if t.name != "locks"], "temp files left"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case, base, tmp_path, monkeypatch, reliability):
    p = Paths(drop=tmp_path / "drop", home=tmp_path / "home")
    shutil.copytree(base.drop, p.drop, symlinks=True)
    shutil.copytree(base.home, p.home, symlinks=True)
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(p.drop))
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(p.home))
    if case.get("share", 1.0) == "default":
        monkeypatch.delenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", raising=False)
    else:
        monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", str(case.get("share", 1.0)))
    corpus_kit.build(case, p)
    expect = case["expect"]
    if case.get("isolate"):
        out = corpus_kit.land_in_subprocess(case, p, timeout=case.get("max_seconds", 60) * 2)
    else:
        out = corpus_kit.land_in_process(case, p)
    entry = {
        "id": case["id"],
        "source": case.get("source", "credit_events"),
        "why": case["why"],
        "expected": corpus_kit.expected_text(expect),
        "actual": out.describe(),
        "seconds_bound": case.get("max_seconds"),
        "rss_bound_mb": case.get("max_rss_mb"),
    }
    reliability.record(
        "corpus", case["id"], entry, measured={"seconds": round(out.seconds, 2), "max_rss_mb": out.max_rss_mb}
    )

    assert out.kind != "crash", f"landing crashed: {out.cause}: {out.message}"
    if case.get("isolate"):
        assert out.seconds < case["max_seconds"], f"took {out.seconds:.1f} s"
        assert out.max_rss_mb is not None and out.max_rss_mb < case["max_rss_mb"], f"peak RSS {out.max_rss_mb} MB"
    if "rejected" in expect:
        assert (out.kind, out.cause) == ("rejected", expect["rejected"]), out.describe() + " " + out.message
        _check_nothing_landed(p, case)
        failures = list((p.landing_failures / case.get("source", "credit_events")).rglob("*.json"))
        assert len(failures) == 1 and json.loads(failures[0].read_text())["cause"] == expect["rejected"]
    elif expect.get("not_ready"):
        assert out.kind == "not_ready", out.describe()
        _check_nothing_landed(p, case)
    elif expect.get("bad_ds"):
        assert out.kind == "bad_ds", out.describe()
        assert sorted(x.name for x in p.home.iterdir()) == sorted(x.name for x in base.home.iterdir())
    else:
        assert out.kind == "landed", out.describe() + " " + out.message
        r = out.record
        got = {"loaded": r["loaded"], "quarantined": r["quarantine_by_rule"], "held": r["held"]}
        want = {
            "loaded": expect.get("loaded", 0),
            "quarantined": expect.get("quarantined", {}),
            "held": expect.get("held", 0),
        }
        assert got == want
        for column, value in expect.get("kept", {}).items():  # kept byte for byte, not truncated
            raw = p.raw / case.get("source", "credit_events") / f"ds={corpus_kit.DS}" / "rows.parquet"
            con = duckdb.connect()
            hits = con.execute(
                f"SELECT count(*) FROM read_parquet('{raw}') WHERE {column} = ?",
                [corpus_kit.unescape(value).decode("utf-8")],
            ).fetchone()[0]
            con.close()
            assert hits == 1, f"{column} {value!r} not kept verbatim"
        if "extra_columns" in expect:
            assert r["extra_columns"] == expect["extra_columns"]
        _check_landed(p, case, r)
    reliability.passed("corpus", case["id"])


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    rejected = {c["expect"]["rejected"] for c in CASES if "rejected" in c["expect"]}
    # every cause docs/landing.md names has a case
    assert {
        "control_file",
        "data_file",
        "checksum",
        "row_count",
        "amount_total",
        "missing_column",
        "duplicate_column",
        "invalid_utf8",
        "unparseable_csv",
        "unreadable_gzip",
        "line_too_long",
        "quarantine_share",
    } <= rejected
