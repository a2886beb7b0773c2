"""Erasure on request (issue 28): real simulated deliveries with bad rows,
landed, built and published by the real commands; then `erase` for a merchant
whose personal data is in the quarantine and one whose data is in the
restricted layer. Afterwards no file under the home holds their personal
values (raw bytes, and the string columns of every Parquet and DuckDB file),
the published sets are byte-identical, the erasure records hold hashes not
values, the drop files still holding the data are listed, and a re-delivery
of the same data is erased again on landing."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from program_reporting.cli import main
from program_reporting.core import contract
from program_reporting.core.settings import paths

FIRST, LAST = "2020-06-01", "2020-06-04"


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    root = tmp_path_factory.mktemp("erasure")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGRAM_REPORTING_DROP", str(root / "drop"))
        mp.setenv("PROGRAM_REPORTING_HOME", str(root / "home"))
        run = lambda *argv: main(list(argv))  # noqa: E731
        assert (
            run("simulate", "--start", FIRST, "--days", "4", "--merchants", "300", "--bad-row-share", "0.02", "--quiet")
            == 0
        )
        assert run("land", "--from", FIRST, "--to", LAST) == 0
        assert run("build", "--ds", LAST, "--audit", "run-a") == 0
        assert run("publish", "--run-id", "run-a", "--ds", LAST) == 0
        yield paths(), mp


def _rows(query: str) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def _string_values(path) -> set[str]:
    """Every string value of every table of a Parquet or DuckDB file (DuckDB may compress strings on disk)."""
    con = duckdb.connect()
    try:
        if path.suffix == ".parquet":
            con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}', hive_partitioning = false)")
            tables = ["t"]
        else:
            con.execute(f"ATTACH '{path}' AS db (READ_ONLY)")
            tables = [
                f'db."{s}"."{t}"'
                for s, t in con.execute(
                    "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'db'"
                ).fetchall()
            ]
        out: set[str] = set()
        for table in tables:
            cur = con.execute(f"SELECT * FROM {table} LIMIT 0")
            for name, type_code, *_rest in cur.description:
                if str(type_code) == "VARCHAR":
                    out |= {v for (v,) in con.execute(f'SELECT DISTINCT "{name}" FROM {table}').fetchall() if v}
        return out
    finally:
        con.close()


def _found(home, values: set[str]) -> dict[str, set[str]]:
    """file -> the values it holds: raw UTF-8 bytes of every file, string columns of Parquet/DuckDB files."""
    hits: dict[str, set[str]] = {}
    for f in sorted(home.rglob("*")):
        if not f.is_file() or f.suffix == ".lock":
            continue
        data = f.read_bytes()
        found = {v for v in values if v.encode("utf-8") in data}
        if f.suffix in (".parquet", ".duckdb"):
            strings = _string_values(f)
            found |= {v for v in values if v in strings or any(v in s for s in strings)}
        if found:
            hits[str(f.relative_to(home))] = found
    return hits


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_erase_removes_every_personal_value_and_leaves_the_figures(landed, capsys):
    p, mp = landed
    restricted = _rows(
        f"SELECT merchant_id, owner_name, owner_phone, owner_national_id "
        f"FROM read_parquet('{p.restricted}/merchants_pii/*/*.parquet', hive_partitioning = false)"
    )
    quarantined = _rows(
        f"SELECT raw_text FROM read_parquet('{p.quarantine}/merchants/*/quarantine.parquet') WHERE raw_text IS NOT NULL"
    )
    header = contract.column_names("merchants")
    q_rows = [dict(zip(header, t.split(","), strict=True)) for (t,) in quarantined if t.count(",") == len(header) - 1]
    everyone = [dict(zip(["merchant_id", *contract.PII_COLUMNS], r, strict=True)) for r in restricted] + q_rows

    def values_of(row) -> set[str]:
        return {row[c] for c in contract.PII_COLUMNS if row.get(c)}

    # the simulator's bad rows reuse a real merchant's owner under another id:
    # the person to erase has rows in the restricted layer and in the quarantine
    q_row = next(r for r in q_rows if any(r["owner_phone"] == o["owner_phone"] for o in everyone[: len(restricted)]))
    merchant = next(o for o in everyone[: len(restricted)] if o["owner_phone"] == q_row["owner_phone"])["merchant_id"]
    person = [r for r in everyone if r["merchant_id"] == merchant or r["owner_phone"] == q_row["owner_phone"]]
    others = set().union(*(values_of(o) for o in everyone if o not in person))
    hashed_values = {merchant: set().union(*(values_of(r) for r in person))}
    # the values to look for: theirs that no one else shares (simulated names repeat)
    erased = {merchant: hashed_values[merchant] - others}
    assert len(erased[merchant]) >= 2
    all_values = set().union(*erased.values())
    before = _found(p.home, all_values)
    assert any(k.startswith("quarantine/merchants/") for k in before), before
    assert any(k.startswith("restricted/merchants_pii/") for k in before), before
    published = sorted(p.runs.glob("*/kpi.duckdb")) + [p.current_db]
    hashes = {str(f): _sha(f) for f in published}
    # a rejected delivery's message quotes its first malformed line: as alerted and as Airflow logged it
    quoted = f"'{merchant},{','.join(sorted(erased[merchant]))}'"
    with open(p.home / "alerts.log", "a", encoding="utf-8") as fh:
        fh.write(f"2020-06-04T02:00:00Z delivery_rejected merchants ds=2020-06-04: row_count: line 7: {quoted}\n")
    task_log = p.home / "airflow" / "logs" / "dag_id=program_reporting_nightly" / "land_merchants" / "attempt=1.log"
    task_log.parent.mkdir(parents=True)
    task_log.write_text(f"ERROR landing rejected: {quoted}\n", encoding="utf-8")

    for merchant in erased:
        capsys.readouterr()
        assert main(["erase", "--merchant", merchant, "--reason", "owner's request (test)", "--by", "dpo"]) == 0
        out = capsys.readouterr().out
        assert f"merchant {merchant}" in out and "still in the drop folder" in out
        assert "merchants/ds=" in out

    assert _found(p.home, all_values) == {}
    assert (
        "[erased]" in task_log.read_text(encoding="utf-8")
        and "delivery_rejected" in (p.home / "alerts.log").read_text()
    )
    assert {str(f): _sha(f) for f in published} == hashes
    # the quarantine rows stay, with their rule and every non-personal field
    rows = _rows(
        f"SELECT rule, raw_text FROM read_parquet('{p.quarantine}/merchants/*/quarantine.parquet') "
        f"WHERE raw_text LIKE '{q_row['merchant_id']},%'"
    )
    assert rows and all(q_row["business_name"] in t for _r, t in rows)
    assert all(t.split(",")[3:6] == ["", "", ""] for _r, t in rows)

    records = [json.loads(line) for line in (p.home / "audit_trail" / "erasures.jsonl").read_text().splitlines()]
    assert [r["merchant_id"] for r in records] == list(erased)
    text = json.dumps(records, ensure_ascii=False)
    assert not any(v in text for v in all_values)
    for record in records:
        assert record["by"] == "dpo" and record["reason"] == "owner's request (test)" and record["erased_at"]
        hashed = {h for hs in record["value_sha256"].values() for h in hs}
        assert hashed == {hashlib.sha256(v.encode()).hexdigest() for v in hashed_values[record["merchant_id"]]}
        assert record["changed"] and record["drop_files_holding_data"]
        for name in record["drop_files_holding_data"]:  # listed, and really holding the data; not changed
            data = (p.drop / name).read_bytes() if not name.endswith(".gz") else b""
            assert not data or any(v.encode() in data for v in erased[record["merchant_id"]])

    # a re-delivery of the same day is erased again on landing
    day = sorted({r.split("/")[2][3:] for r in before if r.startswith("restricted/")})[0]
    assert main(["simulate", "--redeliver", day, "--source", "merchants", "--quiet"]) == 0
    assert main(["land", "--source", "merchants", "--ds", day]) == 0
    assert _found(p.home, all_values) == {}
    assert {str(f): _sha(f) for f in published} == hashes
