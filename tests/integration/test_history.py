"""What did we report, and what changed (issue 26): `figures` and `diff` on the
published sets of a simulated month with late postings and a correction,
landed, built, gated and published by the real commands (no Airflow: the
history reads only what publishing leaves in published/runs/).

Nights: June 1-27 as one backlog night, then the 28th, then the 29th after the
source corrected the 28th (a re-delivery). The 28th's figures as published on
the night of the 28th must come back with --as-of before the correction, and
the corrected ones after it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from decimal import Decimal

import duckdb
import pytest

from program_reporting.cli import main
from program_reporting.core import published
from program_reporting.core.published import KPI_KEYS
from program_reporting.core.settings import paths

BACKLOG_TO, NIGHT_B, NIGHT_C = "2020-06-27", "2020-06-28", "2020-06-29"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        run = lambda *argv: main(list(argv))  # noqa: E731
        assert run("simulate", "--start", "2020-06-01", "--days", "30", "--merchants", "150", "--quiet") == 0
        assert run("land", "--from", "2020-06-01", "--to", BACKLOG_TO) == 0
        assert run("build", "--ds", BACKLOG_TO, "--audit", "run-a") == 0
        assert run("publish", "--run-id", "run-a", "--ds", BACKLOG_TO) == 0
        assert run("land", "--ds", NIGHT_B, "--release-orphans") == 0
        assert run("build", "--ds", NIGHT_B, "--audit", "run-b") == 0
        assert run("publish", "--run-id", "run-b", "--ds", NIGHT_B) == 0
        time.sleep(0.01)
        between = dt.datetime.now(dt.UTC)  # after the 28th's publication, before the correction's
        time.sleep(0.01)
        assert run("simulate", "--redeliver", NIGHT_B, "--source", "credit_events", "--quiet") == 0
        assert run("land", "--source", "credit_events", "--ds", NIGHT_B) == 0
        assert run("land", "--ds", NIGHT_C, "--release-orphans") == 0
        assert run("build", "--ds", NIGHT_C, "--audit", "run-c") == 0
        assert run("publish", "--run-id", "run-c", "--ds", NIGHT_C) == 0
        yield {"between": between, "paths": paths()}


def _rows(db, table: str) -> dict[tuple, dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cur.description]
        return {
            tuple(row[columns.index(k)] for k in KPI_KEYS[table]): dict(zip(columns, row, strict=True))
            for row in cur.fetchall()
        }
    finally:
        con.close()


def _text(value) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _expected_diff(db_a, db_b) -> list[list[str]]:
    """The changed cells, computed by hand in Python: the rows of both sets by key, cell by cell."""
    out = []
    for table, key in KPI_KEYS.items():
        old, new = _rows(db_a, table), _rows(db_b, table)
        for k in sorted(old.keys() | new.keys(), key=lambda k: tuple(_text(v) for v in k)):
            key_text = ";".join(f"{name}={_text(v)}" for name, v in zip(key, k, strict=True))
            a, b = old.get(k), new.get(k)
            columns = list((b or a).keys())
            for c in columns:
                va, vb = (a or {}).get(c), (b or {}).get(c)
                if a is None or b is None or va != vb:
                    out.append([table, key_text, c, _text(va) if a else "", _text(vb) if b else ""])
    return out


def test_figures_as_of_before_the_correction_give_what_was_published_then(month, capsys, monkeypatch):
    p = month["paths"]
    monkeypatch.setenv("PROGRAM_REPORTING_DROP", str(p.drop))
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(p.home))
    runs = [r.run_id for r in published.published_runs(p)]
    assert runs == ["run-a", "run-b", "run-c"]

    def the_28th(*when) -> list[dict]:
        code, out, err = _cli(
            capsys, "figures", "--ds", NIGHT_B, "--table", "kpi_program_daily", "--format", "csv", *when
        )
        assert code == 0, err
        return list(csv.DictReader(io.StringIO(out)))

    before = the_28th("--as-of", month["between"].isoformat())
    after = the_28th("--as-of", dt.datetime.now(dt.UTC).isoformat())
    assert before == the_28th("--run", "run-b") and after == the_28th("--run", "run-c") == the_28th()
    # the re-delivered drawdowns were corrected to 90%: the 28th's drawn figure went down
    assert {r["program_code"] for r in before} == {r["program_code"] for r in after} and before
    drawn = {r["program_code"]: Decimal(r["drawn_to_date"]) for r in before}
    corrected = {r["program_code"]: Decimal(r["drawn_to_date"]) for r in after}
    assert any(corrected[k] < drawn[k] for k in drawn), (drawn, corrected)
    assert all(r["as_of_date"] == NIGHT_B for r in before + after)
    with duckdb.connect(str(p.runs / "run-b" / "kpi.duckdb"), read_only=True) as con:
        header = [d[0] for d in con.execute("SELECT * FROM kpi_program_daily LIMIT 0").description]
    assert list(before[0].keys()) == header  # the published column names, in order

    # a bare date is the end of that day; the month's runs were all published today
    code, out, err = _cli(capsys, "figures", "--as-of", "2020-06-05", "--table", "kpi_program_daily")
    assert code == 1 and "nothing had been published by 2020-06-05T23:59:59" in err and not out
    code, out, err = _cli(capsys, "figures", "--ds", NIGHT_B, "--format", "csv")
    assert code == 2 and "give --table" in err
    code, out, err = _cli(capsys, "figures", "--run", "no-such-run")
    assert code == 1 and "no-such-run" in err and "run-c" in err

    code, out, _ = _cli(capsys, "figures", "--program", "SPARK-2020", "--ds", NIGHT_B, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["run_id"] == "run-c" and doc["superseded_at"] is None
    assert set(doc["tables"]) == set(KPI_KEYS)
    assert {r["program_code"] for t in doc["tables"].values() for r in t} == {"SPARK-2020"}
    code, out, _ = _cli(capsys, "figures", "--run", "run-a", "--ds", BACKLOG_TO, "--table", "kpi_program_daily")
    assert code == 0 and "run run-a (ds 2020-06-27)" in out and "until" in out and "kpi_program_daily: 2 row(s)" in out


def test_diff_is_every_changed_cell_as_computed_by_hand(month, capsys, monkeypatch):
    p = month["paths"]
    monkeypatch.setenv("PROGRAM_REPORTING_HOME", str(p.home))
    for a, b, ds in (("run-a", "run-b", NIGHT_B), ("run-b", "run-c", NIGHT_C)):
        code, out, err = _cli(capsys, "diff", a, b, "--format", "csv")
        assert code == 0, err
        got = list(csv.reader(io.StringIO(out)))
        assert got[0] == ["table", "key", "column", "old", "new"]
        expected = _expected_diff(p.runs / a / "kpi.duckdb", p.runs / b / "kpi.duckdb")
        assert got[1:] == expected
        # the new business date appears, every cell of its rows with an empty old
        appeared = [r for r in got[1:] if f"as_of_date={ds}" in r[1]]
        assert appeared and all(r[3] == "" for r in appeared) and any(r[4] != "" for r in appeared)
        # and something published before changed (late postings; the correction of the 28th)
        assert any(r[3] != "" and f"as_of_date={ds}" not in r[1] for r in got[1:])
    corrected = _expected_diff(p.runs / "run-b" / "kpi.duckdb", p.runs / "run-c" / "kpi.duckdb")
    assert any(
        r[0] == "kpi_program_daily" and f"as_of_date={NIGHT_B}" in r[1] and r[2] == "drawn_to_date" for r in corrected
    )

    code, out, _ = _cli(capsys, "diff", "run-c", "run-c")
    assert code == 0 and "0 cell(s) changed" in out
    code, _, err = _cli(capsys, "diff", "run-a", "nope")
    assert code == 1 and "nope" in err
    code, _, err = _cli(capsys, "diff", "run-a", "run-b", "--table", "kpi_nothing")
    assert code == 2 and "unknown table kpi_nothing" in err
