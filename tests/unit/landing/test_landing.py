"""Landing of whole deliveries: formats accepted, every way a delivery fails
whole, re-delivery, reconciliation, orphans and personal data. Real files in a
temporary drop folder, the real landing code and DuckDB."""

from __future__ import annotations

import gzip
import json
import stat

import duckdb
import pytest
from helpers.deliveries import csv_text, row, write_delivery

from program_reporting import cli
from program_reporting.core import contract
from program_reporting.landing import land as landing

DS = "2020-06-02"


def rows_of(paths, source, ds=DS, layer="raw", name="rows.parquet", order="_line"):
    f = getattr(paths, layer) / source / f"ds={ds}" / name
    if not f.exists():
        return []
    return duckdb.sql(f"SELECT * FROM read_parquet('{f}', hive_partitioning = false) ORDER BY {order}").fetchall()


def quarantine(paths, source, ds=DS):
    return [(r[3], r[4]) for r in rows_of(paths, source, ds, "quarantine", "quarantine.parquet", "line")]


def merchants_day(paths, ds=DS, ids=(1, 2, 3)):
    write_delivery(
        paths.drop,
        "merchants",
        ds,
        [row("merchants", i, updated_at=f"{ds}T09:00:00+08:00", enrolled_on=ds) for i in ids],
    )
    return landing.land("merchants", ds, paths)


# --- formats ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kw", [{}, {"bom": True}, {"crlf": True}, {"gz": True}, {"gz": True, "bom": True, "crlf": True}]
)
def test_formats_land_the_same_rows(env_paths, kw):
    rows = [row("merchants", i) for i in range(1, 6)]
    rows[2]["business_name"] = 'Li\'s "Best", shop\nsecond line'
    write_delivery(env_paths.drop, "merchants", DS, rows, **kw)
    record = landing.land("merchants", DS, env_paths)
    assert record["loaded"] == 5 and record["quarantined"] == 0
    got = duckdb.sql(
        f"SELECT merchant_id, business_name, _line FROM '{env_paths.raw}/merchants/ds={DS}/rows.parquet' ORDER BY _line"
    ).fetchall()
    assert got[2] == ("M3", rows[2]["business_name"], 4)  # an embedded newline is kept as delivered
    assert [g[2] for g in got] == [2, 3, 4, 5, 6]
    assert record["file"].endswith(".csv.gz" if kw.get("gz") else ".csv")


def test_columns_reordered_and_extra_column_kept(env_paths):
    cols = list(reversed(contract.column_names("merchants")))
    cols.insert(3, "loyalty_tier")
    rows = [row("merchants", 1, loyalty_tier="gold"), row("merchants", 2)]
    write_delivery(env_paths.drop, "merchants", DS, rows, columns=cols)
    record = landing.land("merchants", DS, env_paths)
    assert record["extra_columns"] == ["loyalty_tier"] and record["loaded"] == 2
    got = duckdb.sql(
        f"SELECT merchant_id, region, _extra FROM '{env_paths.raw}/merchants/ds={DS}/rows.parquet' ORDER BY _line"
    ).fetchall()
    assert got[0][:2] == ("M1", "CN-GD") and json.loads(got[0][2]) == {"loyalty_tier": "gold"}
    assert json.loads(got[1][2]) == {"loyalty_tier": None}


def test_typed_raw_schema(env_paths):
    merchants_day(env_paths)
    write_delivery(
        env_paths.drop,
        "credit_events",
        DS,
        [row("credit_events", 1, event_type="line_opened", annual_interest_rate="0.0435", amount="100000.00")],
    )
    landing.land("credit_events", DS, env_paths)
    f = env_paths.raw / "credit_events" / f"ds={DS}" / "rows.parquet"
    types = dict(duckdb.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{f}')").fetchall())
    assert types["amount"] == "DECIMAL(14,2)" and types["annual_interest_rate"] == "DECIMAL(12,6)"
    assert types["event_at"] == "TIMESTAMP WITH TIME ZONE" and types["due_on"] == "DATE"
    assert types["_ds"] == "DATE" and types["_line"] == "BIGINT" and types["_landed_at"].startswith("TIMESTAMP")
    write_delivery(env_paths.drop, "employment_reports", DS, [row("employment_reports", 1)])
    landing.land("employment_reports", DS, env_paths)
    got = rows_of(env_paths, "employment_reports")
    assert str(got[0][2]) == "2020-06-01" and got[0][3] == 4  # period_month first of month; employees BIGINT


def test_header_only_delivery(env_paths):
    write_delivery(env_paths.drop, "merchants", DS, [])
    record = landing.land("merchants", DS, env_paths)
    assert (record["delivered"], record["loaded"]) == (0, 0)
    assert (env_paths.raw / "merchants" / f"ds={DS}" / "rows.parquet").exists()


def test_field_count_rows_quarantined_with_record_line_numbers(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    header = contract.column_names("merchants")
    text = csv_text([row("merchants", 1, business_name="two\nlines"), row("merchants", 2)], header)
    text += "M3,too,few\n"
    text += csv_text([row("merchants", 4)], header).split("\n", 1)[1]
    text += csv_text([row("merchants", 5, city="x,extra")], header).split("\n", 1)[1].replace('"x,extra"', "x,extra")
    text += csv_text([row("merchants", 6)], header).split("\n", 1)[1]
    write_delivery(env_paths.drop, "merchants", DS, data=text.encode(), row_count=6)
    record = landing.land("merchants", DS, env_paths)
    assert quarantine(env_paths, "merchants") == [(4, "field_count"), (6, "field_count")]
    assert [r[-3] for r in rows_of(env_paths, "merchants")] == [2, 3, 5, 7]  # _line: header = 1, records counted
    q = rows_of(env_paths, "merchants", layer="quarantine", name="quarantine.parquet", order="line")
    assert q[0][6] == "M3,too,few"
    assert record["delivered"] == 6 == record["loaded"] + record["quarantined"] + record["held"]


def test_blank_line_inside_file_keeps_line_numbers(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    header = contract.column_names("merchants")
    body = csv_text([row("merchants", 1), row("merchants", 2, region="XX-YY")], header)
    write_delivery(
        env_paths.drop, "merchants", DS, data=(body.replace("\nM2", "\n\nM2") + "\n\n").encode(), row_count=2
    )
    landing.land("merchants", DS, env_paths)
    assert quarantine(env_paths, "merchants") == [(4, "region_unknown")]


# --- deliveries that fail whole ----------------------------------------------


def _rejected(paths, source, cause, ds=DS):
    with pytest.raises(landing.DeliveryRejected) as info:
        landing.land(source, ds, paths)
    assert info.value.cause == cause, str(info.value)
    assert source in str(info.value) and ds in str(info.value)
    failures = sorted((paths.landing_failures / source / f"ds={ds}").glob("*.json"))
    assert failures and json.loads(failures[-1].read_text())["cause"] == cause
    return str(info.value)


def test_no_control_file_is_not_ready(env_paths):
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], write_control=False)
    with pytest.raises(landing.DeliveryNotReady):
        landing.land("merchants", DS, env_paths)
    assert not (env_paths.raw / "merchants").exists()


@pytest.mark.parametrize(
    "control, text",
    [
        (None, "{not json"),
        (None, "[1, 2]"),
        ({"ds": "2020-06-03"}, None),
        ({"source": "credit_events"}, None),
        ({"schema_version": "2"}, None),
        ({"row_count": "1"}, None),
        ({"sha256": "abc"}, None),
        ({"produced_at": None}, None),
        ({"produced_at": "2020-06-02T23:00:00"}, None),
    ],
)
def test_bad_control_file(env_paths, control, text):
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], control=control, control_text=text)
    _rejected(env_paths, "merchants", "control_file")


def test_credit_control_needs_amount_total(env_paths):
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)], control={"amount_total": None})
    _rejected(env_paths, "credit_events", "control_file")


def test_wrong_sha_count_and_total(env_paths):
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], control={"sha256": "0" * 64})
    assert "SHA-256" in _rejected(env_paths, "merchants", "checksum")
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], row_count=2)
    _rejected(env_paths, "merchants", "row_count")
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)], control={"amount_total": "1.00"})
    assert "1200.50" in _rejected(env_paths, "credit_events", "amount_total")


def test_amount_total_counts_quarantined_rows(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    merchants_day(env_paths)
    rows = [row("credit_events", 1), row("credit_events", 2, amount="-5.00"), row("credit_events", 3, amount="1e3")]
    write_delivery(env_paths.drop, "credit_events", DS, rows)  # total 1200.50 - 5 + 1000 (lenient reading)
    record = landing.land("credit_events", DS, env_paths)
    assert record["quarantine_by_rule"] == {"amount_negative": 1, "amount_invalid": 1}
    write_delivery(env_paths.drop, "credit_events", DS, rows, control={"amount_total": "1195.50"})  # 1e3 as 0
    assert landing.land("credit_events", DS, env_paths)["loaded"] == 1


def test_missing_and_doubled_columns(env_paths):
    cols = [c for c in contract.column_names("merchants") if c != "city"]
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], columns=cols)
    assert "city" in _rejected(env_paths, "merchants", "missing_column")
    write_delivery(
        env_paths.drop, "merchants", DS, [row("merchants", 1)], columns=contract.column_names("merchants") + ["city"]
    )
    _rejected(env_paths, "merchants", "duplicate_column")


def test_invalid_utf8_and_unparseable_csv(env_paths):
    good = csv_text([row("merchants", 1), row("merchants", 2)], contract.column_names("merchants")).encode()
    write_delivery(env_paths.drop, "merchants", DS, data=good.replace(b"Guangzhou", b"Guangzh\xffou", 1), row_count=2)
    assert "line 2" in _rejected(env_paths, "merchants", "invalid_utf8")
    write_delivery(env_paths.drop, "merchants", DS, data=good.replace(b"Zhang's", b"\"Zhang's", 1), row_count=2)
    _rejected(env_paths, "merchants", "unparseable_csv")
    write_delivery(env_paths.drop, "merchants", DS, data=good, gz=True, row_count=2)
    (env_paths.drop / "merchants" / f"ds={DS}" / "merchants.csv").write_bytes(good)
    _rejected(env_paths, "merchants", "data_file")  # both .csv and .csv.gz


def test_too_many_quarantined_rows_fail_whole_and_keep_previous(env_paths):
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", i) for i in range(1, 21)])
    landing.land("merchants", DS, env_paths)
    before = rows_of(env_paths, "merchants")
    rows = [row("merchants", i) for i in range(1, 21)]
    rows[0]["region"] = "XX"
    write_delivery(env_paths.drop, "merchants", DS, rows)
    assert landing.land("merchants", DS, env_paths)["quarantined"] == 1  # 5% is allowed
    rows[1]["region"] = "XX"
    write_delivery(env_paths.drop, "merchants", DS, rows)
    msg = _rejected(env_paths, "merchants", "quarantine_share")
    assert "region_unknown" in msg and "line 2" in msg
    assert len(rows_of(env_paths, "merchants")) == 19 and len(before) == 20


# --- re-delivery, reconciliation, orphans, PII --------------------------------


def test_landing_a_day_twice_replaces_it(env_paths):
    merchants_day(env_paths)
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", i) for i in range(1, 4)])
    landing.land("credit_events", DS, env_paths)
    first = [r[:-1] for r in rows_of(env_paths, "credit_events")]
    landing.land("credit_events", DS, env_paths)
    assert [r[:-1] for r in rows_of(env_paths, "credit_events")] == first  # all but _landed_at
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)])  # a correction
    record = landing.land("credit_events", DS, env_paths)
    assert len(rows_of(env_paths, "credit_events")) == 1 and record["delivered"] == 1
    assert not list(env_paths.tmp.glob("land-*"))


def test_reconciliation_identity_and_touches_from(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    merchants_day(env_paths)
    write_delivery(
        env_paths.drop,
        "credit_events",
        DS,
        [
            row("credit_events", 1, event_at="2020-05-10T01:00:00+08:00"),
            row("credit_events", 2, amount="-1"),
            row("credit_events", 3, merchant_id="M404"),
        ],
    )
    landing.land("credit_events", DS, env_paths)
    records = {(r["source"], r["ds"]): r for r in landing.reconciliation(env_paths)}
    ce = records[("credit_events", DS)]
    assert (ce["delivered"], ce["loaded"], ce["quarantined"], ce["held"]) == (3, 1, 1, 1)
    assert ce["touches_from"] == "2020-05-08"  # UTC date of 2020-05-09T17:00Z minus a day
    assert records[("merchants", DS)]["touches_from"] == "2020-06-01"
    for r in records.values():
        assert r["delivered"] == r["loaded"] + r["quarantined"] + r["held"]
    # the replaced partition's reach is kept
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)])
    assert landing.land("credit_events", DS, env_paths)["touches_from"] == "2020-05-08"


def test_orphans_are_held_released_and_expire(env_paths):
    merchants_day(env_paths, ids=(1,))
    write_delivery(
        env_paths.drop,
        "credit_events",
        DS,
        [row("credit_events", 1), row("credit_events", 2, merchant_id="M2"), row("credit_events", 3, merchant_id="M3")],
    )
    write_delivery(env_paths.drop, "employment_reports", DS, [row("employment_reports", 1, merchant_id="M2")])
    assert landing.land("credit_events", DS, env_paths)["held"] == 2
    assert landing.land("employment_reports", DS, env_paths)["held"] == 1
    assert len(rows_of(env_paths, "credit_events", layer="held")) == 2
    assert quarantine(env_paths, "credit_events") == []

    merchants_day(env_paths, "2020-06-04", ids=(2,))
    summary = landing.release_orphans("2020-06-04", env_paths)
    assert summary["credit_events"][DS]["released"] == 1 and summary["employment_reports"][DS]["released"] == 1
    released = rows_of(env_paths, "credit_events", name="released-2020-06-04.parquet")
    assert [(r[0], str(r[-5])) for r in released] == [("E2", DS)]  # _ds is still the delivery's ds
    assert landing.release_orphans("2020-06-04", env_paths)["credit_events"][DS]["released"] == 0

    assert landing.release_orphans("2020-06-08", env_paths)["credit_events"][DS]["held"] == 1  # 6 days: waits
    summary = landing.release_orphans("2020-06-09", env_paths)
    assert summary["credit_events"][DS]["quarantined"] == 1
    assert quarantine(env_paths, "credit_events") == [(4, "orphan_merchant_unknown")]
    assert not (env_paths.held / "credit_events" / f"ds={DS}").exists()
    rec = next(r for r in landing.reconciliation(env_paths) if r["source"] == "credit_events")
    assert (rec["loaded"], rec["quarantined"], rec["held"]) == (2, 1, 0)
    assert rec["quarantine_by_rule"] == {"orphan_merchant_unknown": 1}


class _Killed(Exception):
    pass


@pytest.mark.parametrize("swaps_done", [1, 2])
def test_release_interrupted_between_its_swaps_loses_and_doubles_nothing(env_paths, monkeypatch, swaps_done):
    """A release commits a partition by three swaps (quarantine, raw with its
    record, held). Stopped after any of them, the next release finishes the
    job: every row in exactly one place and the record's counts true."""
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    merchants_day(env_paths, ids=(1,))
    write_delivery(
        env_paths.drop,
        "credit_events",
        DS,
        [
            row("credit_events", 1),
            row("credit_events", 2, merchant_id="M2"),
            row("credit_events", 3, merchant_id="M3"),
            row("credit_events", 4, amount="-5.00"),
        ],
    )
    assert landing.land("credit_events", DS, env_paths)["held"] == 2
    day = "2020-06-09"  # E2's merchant arrives; E3 has waited 7 days and expires
    merchants_day(env_paths, day, ids=(2,))

    real_swap, calls = landing.swap, []

    def swap_then_die(*args, **kwargs):
        real_swap(*args, **kwargs)
        calls.append(args[1])
        if len(calls) == swaps_done:
            raise _Killed(f"stopped after swapping {args[1]}")

    monkeypatch.setattr(landing, "swap", swap_then_die)
    with pytest.raises(_Killed):
        landing.release_orphans(day, env_paths)
    monkeypatch.setattr(landing, "swap", real_swap)
    landing.release_orphans(day, env_paths)

    loaded = [r[0] for r in rows_of(env_paths, "credit_events")] + [
        r[0] for r in rows_of(env_paths, "credit_events", name=f"released-{day}.parquet")
    ]
    assert sorted(loaded) == ["E1", "E2"]
    assert quarantine(env_paths, "credit_events") == [(4, "orphan_merchant_unknown"), (5, "amount_negative")]
    assert not (env_paths.held / "credit_events" / f"ds={DS}").exists()
    rec = next(r for r in landing.reconciliation(env_paths) if r["source"] == "credit_events")
    assert (rec["delivered"], rec["loaded"], rec["quarantined"], rec["held"]) == (4, 2, 2, 0)
    assert rec["quarantine_by_rule"] == {"amount_negative": 1, "orphan_merchant_unknown": 1}


def test_released_orphan_still_checked_against_its_merchant(env_paths):
    merchants_day(env_paths, ids=(1,))
    write_delivery(
        env_paths.drop,
        "credit_events",
        DS,
        [row("credit_events", 1), row("credit_events", 2, merchant_id="MUS", currency="CNY")],
    )
    landing.land("credit_events", DS, env_paths)
    write_delivery(
        env_paths.drop,
        "merchants",
        "2020-06-03",
        [
            row(
                "merchants",
                None,
                merchant_id="MUS",
                program_code="PPP-2020",
                region="US-VT",
                updated_at="2020-06-03T09:00:00-04:00",
                enrolled_on="2020-06-03",
            )
        ],
    )
    landing.land("merchants", "2020-06-03", env_paths)
    landing.release_orphans("2020-06-03", env_paths)
    assert quarantine(env_paths, "credit_events") == [(3, "currency_not_program_currency")]


def test_held_days_released_together_each_against_its_own_past(env_paths, monkeypatch):
    """Held partitions of several days are evaluated in one pass; each row is
    still compared with the deliveries before its own ds (not before the
    latest held day), and each day's outcome stays its own."""
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    d2, d3, d4 = "2020-06-03", "2020-06-04", "2020-06-05"
    merchants_day(env_paths, ids=(1,))
    e5, e6 = row("credit_events", 5, merchant_id="M9"), row("credit_events", 6, merchant_id="M9")
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)])
    landing.land("credit_events", DS, env_paths)
    write_delivery(env_paths.drop, "credit_events", d2, [row("credit_events", 2), e5])
    assert landing.land("credit_events", d2, env_paths)["held"] == 1
    # e5's differing twin lands on d3: later than e5's own day, so no conflict for e5
    write_delivery(env_paths.drop, "credit_events", d3, [dict(e5, merchant_id="M1", amount="1.00")])
    assert landing.land("credit_events", d3, env_paths)["loaded"] == 1
    write_delivery(env_paths.drop, "credit_events", d4, [row("credit_events", 3), e6])
    assert landing.land("credit_events", d4, env_paths)["held"] == 1
    # a re-delivery of DS, older than both held days, brings a differing e6
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1), dict(e6, merchant_id="M1")])
    landing.land("credit_events", DS, env_paths)
    merchants_day(env_paths, d4, ids=(9,))
    summary = landing.release_orphans(d4, env_paths)
    assert summary["credit_events"][d2] == {"released": 1, "quarantined": 0, "held": 0, "touches_from": "2020-06-01"}
    assert summary["credit_events"][d4]["quarantined"] == 1
    assert quarantine(env_paths, "credit_events", d4) == [(3, "event_id_conflict")]
    assert [r[0] for r in rows_of(env_paths, "credit_events", d2, name=f"released-{d4}.parquet")] == ["E5"]
    # each release records its own reach, which is what the next build restates from
    releases = {
        d: json.loads((env_paths.raw / "credit_events" / f"ds={d}" / "_reconciliation.json").read_text())["releases"][
            -1
        ]
        for d in (d2, d4)
    }
    assert releases[d2]["touches_from"] == "2020-06-01" and releases[d4]["touches_from"] is None


def test_pii_only_in_restricted_and_private(env_paths):
    merchants_day(env_paths)
    raw_cols = duckdb.sql(f"DESCRIBE SELECT * FROM '{env_paths.raw}/merchants/ds={DS}/rows.parquet'").fetchall()
    assert not {c[0] for c in raw_cols} & set(contract.PII_COLUMNS)
    pii = env_paths.restricted / "merchants_pii" / f"ds={DS}" / "rows.parquet"
    assert duckdb.sql(f"SELECT owner_name FROM '{pii}' ORDER BY _line").fetchall()[0] == ("Zhang San",)
    for d in (env_paths.restricted, pii.parent.parent, pii.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(pii.stat().st_mode) == 0o600


def test_quarantine_file_is_private(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "1")
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1, region="XX")])
    landing.land("merchants", DS, env_paths)
    q = env_paths.quarantine / "merchants" / f"ds={DS}" / "quarantine.parquet"
    assert stat.S_IMODE(q.stat().st_mode) == 0o600
    assert "Zhang San" in rows_of(env_paths, "merchants", layer="quarantine", name=q.name, order="line")[0][6]


# --- command line -------------------------------------------------------------


def test_cli_lands_all_and_says_why_on_rejection(env_paths, capsys):
    merchants_day(env_paths)
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)])
    write_delivery(env_paths.drop, "employment_reports", DS, [row("employment_reports", 1)])
    assert cli.main(["land", "--ds", DS, "--release-orphans"]) == 0
    write_delivery(env_paths.drop, "credit_events", DS, [row("credit_events", 1)], control={"row_count": 5})
    assert cli.main(["land", "--source", "credit_events", "--ds", DS]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "row_count" in last and "credit_events" in last
    assert cli.main(["land", "--source", "merchants", "--ds", "2020-06-09", "--wait", "0.2"]) == 3


def test_gzip_with_corrupt_bytes_is_rejected(env_paths):
    write_delivery(env_paths.drop, "merchants", DS, [row("merchants", 1)], gz=True)
    f = env_paths.drop / "merchants" / f"ds={DS}" / "merchants.csv.gz"
    data = gzip.compress(b"not,the,header\n")[:-6]
    f.write_bytes(data)
    ctl = json.loads((f.parent / "_control.json").read_text())
    import hashlib

    ctl["sha256"] = hashlib.sha256(data).hexdigest()
    (f.parent / "_control.json").write_text(json.dumps(ctl))
    with pytest.raises(landing.DeliveryRejected):
        landing.land("merchants", DS, env_paths)


def _held_by_someone(paths, source: str) -> bool:
    import fcntl

    with open(paths.tmp / "locks" / f"{source}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_kept_source_holds_its_lock_and_index_across_dates(env_paths, monkeypatch):
    """A backlog's process keeps a source's lock and index from one date to
    the next (landing.Kept): each commit is in the index it keeps, so the
    next date is still compared with it, and its half of a release does what
    release_orphans does. The lock goes when it closes."""
    monkeypatch.setenv("PROGRAM_REPORTING_MAX_QUARANTINE_SHARE", "0.9")
    d2 = "2020-06-03"
    merchants_day(env_paths, ids=(1,))
    write_delivery(
        env_paths.drop, "credit_events", DS, [row("credit_events", 1), row("credit_events", 2, merchant_id="M2")]
    )
    write_delivery(
        env_paths.drop, "credit_events", d2, [row("credit_events", 3), row("credit_events", 1, amount="999.00")]
    )
    kept = landing.Kept("credit_events", env_paths)
    try:
        assert _held_by_someone(env_paths, "credit_events")
        assert landing.land("credit_events", DS, env_paths, kept=kept)["held"] == 1
        assert _held_by_someone(env_paths, "credit_events")  # still, between the dates
        record = landing.land("credit_events", d2, env_paths, kept=kept)
        assert record["quarantine_by_rule"] == {"event_id_conflict": 1}  # E1 of d1, committed under the same lock
        assert landing.release_kept(kept, d2) == {DS: {"released": 0, "quarantined": 0, "held": 1}}
        merchants_day(env_paths, d2, ids=(2,))
        assert landing.release_kept(kept, d2)[DS]["released"] == 1
        assert not (env_paths.held / "credit_events" / f"ds={DS}").exists()
        assert [r[0] for r in rows_of(env_paths, "credit_events", DS, name=f"released-{d2}.parquet")] == ["E2"]
        assert (
            kept.con.execute(
                "SELECT database_name, table_name FROM duckdb_tables() WHERE database_name <> 'idx'"
            ).fetchall()
            == []
        )
        assert kept.con.execute("SELECT current_setting('allocator_background_threads')").fetchall() == [(True,)]
    finally:
        kept.close()
    assert not _held_by_someone(env_paths, "credit_events")
    # the released row is in the index the next holder opens: E2 again, changed, conflicts
    write_delivery(
        env_paths.drop,
        "credit_events",
        "2020-06-04",
        [row("credit_events", 4), row("credit_events", 2, merchant_id="M2", amount="5.00")],
    )
    assert landing.land("credit_events", "2020-06-04", env_paths)["quarantine_by_rule"] == {"event_id_conflict": 1}


def test_backlog_lands_dates_in_order_and_stops_at_a_rejected_delivery(env_paths, capsys):
    """`land --from --to`: each date's three deliveries (in parallel processes),
    then its release, then the next date; a rejected delivery stops the
    backlog, names itself, and the range from that date lands once fixed."""
    d1, d2, d3 = DS, "2020-06-03", "2020-06-04"
    for ds, ids in ((d1, (1,)), (d2, (2,)), (d3, (3,))):
        write_delivery(
            env_paths.drop,
            "merchants",
            ds,
            [row("merchants", i, enrolled_on=ds, updated_at=f"{ds}T09:00:00+08:00") for i in ids],
        )
        write_delivery(
            env_paths.drop, "employment_reports", ds, [row("employment_reports", ids[0], merchant_id=f"M{ids[0]}")]
        )
    # E2's merchant is registered a day after the ledger saw it: held on d1, released on d2
    write_delivery(
        env_paths.drop, "credit_events", d1, [row("credit_events", 1), row("credit_events", 2, merchant_id="M2")]
    )
    write_delivery(env_paths.drop, "credit_events", d2, [row("credit_events", 3)])
    write_delivery(env_paths.drop, "credit_events", d3, [row("credit_events", 4)], control={"row_count": 2})

    assert cli.main(["land", "--from", d1, "--to", d3]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "credit_events delivery for 2020-06-04 rejected (row_count)" in err
    # E1 lands on d1 (held, then released the same day, when its merchant's landing came second)
    d1_files = str(env_paths.raw / "credit_events" / f"ds={d1}" / "*.parquet")
    assert duckdb.execute("SELECT list(event_id ORDER BY event_id) FROM read_parquet(?)", [d1_files]).fetchall() == [
        (["E1", "E2"],)
    ]
    assert [r[0] for r in rows_of(env_paths, "credit_events", d1, name=f"released-{d2}.parquet")] == ["E2"]
    assert [r[0] for r in rows_of(env_paths, "credit_events", d2)] == ["E3"]
    assert not (env_paths.raw / "credit_events" / f"ds={d3}").exists()
    assert (env_paths.raw / "merchants" / f"ds={d3}" / "_reconciliation.json").is_file()  # d3's other sources landed

    write_delivery(env_paths.drop, "credit_events", d3, [row("credit_events", 4)])
    assert cli.main(["land", "--from", d3, "--to", d3]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"landed 1 date(s), {d3} to {d3}: 3 rows")
    records = {(r["source"], r["ds"]): r for r in landing.reconciliation(env_paths)}
    assert len(records) == 9 and all(r["held"] == 0 for r in records.values())
    assert cli.main(["land", "--from", d3, "--to", d1]) == 2  # a range backwards is refused


def test_lock_holder_sweeps_only_the_spill_folders_of_dead_landings(env_paths):
    """A landing reads its delivery before it takes the source's lock, so a
    folder it spills into may belong to a landing still running: the next
    holder of the lock removes it only when its process is gone."""
    import os

    from program_reporting.landing.store import source_lock

    env_paths.tmp.mkdir(parents=True, exist_ok=True)
    dead = env_paths.tmp / "read-credit_events-2147483646-abc"  # above any pid this machine hands out
    live = env_paths.tmp / f"read-credit_events-{os.getpid()}-abc"
    other = env_paths.tmp / "read-merchants-2147483646-abc"
    for d in (dead, live, other):
        d.mkdir()
    with source_lock(env_paths, "credit_events"):
        pass
    assert not dead.exists() and live.exists() and other.exists()
