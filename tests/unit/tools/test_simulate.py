"""The source simulator: deliveries follow ../shared/spec/extracts.md, are
deterministic for a seed, and carry the realism and the contract breaks the
warehouse must handle. Every check re-reads the files with the standard
library (csv, gzip, hashlib, decimal), independently of the simulator's own
pyarrow writer."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from program_reporting import cli
from program_reporting.core import contract, reference
from program_reporting.tools.simulate.simulator import INJECT_KINDS, read_delivery, redeliver_ds, simulate

SOURCES = ("merchants", "credit_events", "employment_reports")
SHANGHAI = ZoneInfo("Asia/Shanghai")
START = dt.date(2020, 6, 2)
DAYS = 5
DS = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
CONTROL_KEYS = {"source", "ds", "schema_version", "row_count", "sha256", "produced_at"}
KEY = {"merchants": "merchant_id", "credit_events": "event_id", "employment_reports": "report_id"}


def data_file(drop: Path, source: str, ds: str) -> Path:
    folder = drop / source / f"ds={ds}"
    files = [p for p in folder.iterdir() if p.name != "_control.json"]
    assert len(files) == 1, f"{folder}: expected one data file, found {[p.name for p in files]}"
    return files[0]


def text_of(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")  # strict: must be valid UTF-8


def records(drop: Path, source: str, ds: str) -> tuple[list[str], list[dict]]:
    """Header and rows (empty field -> None), with the CSV record number in '_line'."""
    text = text_of(data_file(drop, source, ds)).removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    rows = []
    for i, rec in enumerate(reader):
        assert len(rec) == len(header), f"{source} {ds} line {i + 2}: {len(rec)} fields"
        row = {k: (v if v != "" else None) for k, v in zip(header, rec)}
        row["_line"] = i + 2
        rows.append(row)
    return header, rows


def ts(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, value
    return parsed


def end_of(ds: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(ds) + dt.timedelta(days=1), dt.time(), SHANGHAI)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    drop = tmp_path_factory.mktemp("sim") / "drop"
    summary = simulate(
        start=START,
        days=DAYS,
        merchants=300,
        seed=7,
        drop=drop,
        bad_row_share=0.03,
        gzip_share=0.3,
        crlf_share=0.3,
        bom_share=0.2,
        extra_column_share=0.2,
        shuffle_share=0.2,
    )
    data = {s: {ds: records(drop, s, ds) for ds in DS} for s in SOURCES}
    injected = {(i["source"], i["ds"], i["line"]): i for i in summary["injected"]}
    return drop, summary, data, injected


def clean_rows(run, source):
    _drop, _summary, data, injected = run
    for ds in DS:
        for row in data[source][ds][1]:
            if (source, ds, row["_line"]) not in injected:
                yield ds, row


# ---------------------------------------------------------------------- layout and control files
def test_layout_and_control_files_match_the_data(run):
    drop, summary, data, _ = run
    for source in SOURCES:
        assert sorted(p.name for p in (drop / source).iterdir()) == [f"ds={d}" for d in DS]
        for ds in DS:
            folder = drop / source / f"ds={ds}"
            path = data_file(drop, source, ds)
            assert path.name in (f"{source}.csv", f"{source}.csv.gz")
            assert sorted(p.name for p in folder.iterdir()) == sorted(["_control.json", path.name])
            control = json.loads((folder / "_control.json").read_text(encoding="utf-8"))
            expected_keys = CONTROL_KEYS | ({"amount_total"} if source == "credit_events" else set())
            assert set(control) == expected_keys
            assert control["source"] == source and control["ds"] == ds and control["schema_version"] == "1"
            header, rows = data[source][ds]
            assert control["row_count"] == len(rows) == summary["rows"][source][ds]
            assert control["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert ts(control["produced_at"]) > end_of(ds) - dt.timedelta(seconds=1)
            if source == "credit_events":
                total = sum((Decimal(r["amount"]) for r in rows), Decimal(0))
                assert control["amount_total"] == str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
                assert re.fullmatch(r"-?\d+\.\d{2}", control["amount_total"])
            # every contract column is in the header; extra columns are only the announced ones
            assert set(contract.column_names(source)) <= set(header)
            extra = [c for c in header if c not in contract.column_names(source)]
            assert extra == summary["deliveries"][source][ds]["extra_columns"]
            assert len(header) == len(set(header))


def test_no_leftover_temporary_files(run):
    drop = run[0]
    assert not [p for p in drop.rglob(".*") if p.is_file()]


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    kwargs = dict(start="2020-06-02", days=3, merchants=120, bad_row_share=0.02, progress=False)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate(seed=11, drop=a, **kwargs)
    simulate(seed=11, drop=b, **kwargs)
    simulate(seed=12, drop=c, **kwargs)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files_a) == 3 * 3 * 2
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    differs = [rel for rel in files_a if (c / rel).exists() and (c / rel).read_bytes() != (a / rel).read_bytes()]
    assert differs


def test_a_day_without_activity_is_a_header_only_delivery(tmp_path):
    summary = simulate(start="2020-06-02", days=2, merchants=0, drop=tmp_path, gzip_share=0.5, progress=False)
    assert summary["injected"] == []
    for source in SOURCES:
        for ds in ("2020-06-02", "2020-06-03"):
            header, rows = records(tmp_path, source, ds)
            assert rows == []
            assert set(contract.column_names(source)) <= set(header)
            control = json.loads((tmp_path / source / f"ds={ds}" / "_control.json").read_text())
            assert control["row_count"] == 0
            if source == "credit_events":
                assert control["amount_total"] == "0.00"


def test_a_quiet_source_day_in_a_busy_run_is_header_only(tmp_path):
    # Before any program has launched there is nothing to deliver, but every day is delivered.
    summary = simulate(
        start="2020-04-01", days=7, merchants=50, drop=tmp_path, programs=["SPRING-THUNDER-2020"], progress=False
    )
    assert summary["programs"]["SPRING-THUNDER-2020"]["first_ds"] == "2020-04-07"
    for ds in ("2020-04-01", "2020-04-06"):
        for source in SOURCES:
            assert summary["rows"][source][ds] == 0
            assert records(tmp_path, source, ds)[1] == []
    # launch day: full load of everything enrolled so far, pilots included
    _, merchants = records(tmp_path, "merchants", "2020-04-07")
    assert merchants and any(r["enrolled_on"] < "2020-04-07" for r in merchants)


def test_gzip_crlf_bom_extra_column_and_column_order_all_occur(run):
    drop, summary, _, _ = run
    kinds = Counter()
    for source in SOURCES:
        for ds in DS:
            path = data_file(drop, source, ds)
            raw = path.read_bytes()
            body = gzip.decompress(raw) if path.name.endswith(".gz") else raw
            d = summary["deliveries"][source][ds]
            assert path.name.endswith(".gz") == d["gzip"]
            if d["gzip"]:
                assert raw[:2] == b"\x1f\x8b"
                kinds["gzip"] += 1
            assert body.startswith(b"\xef\xbb\xbf") == d["bom"]
            kinds["bom"] += d["bom"]
            lines = body.split(b"\n")[:-1]
            assert body.endswith(b"\n")
            if d["crlf"]:
                assert all(line.endswith(b"\r") for line in lines)
                kinds["crlf"] += 1
            else:
                assert not any(line.endswith(b"\r") for line in lines)
            kinds["extra"] += bool(d["extra_columns"])
            header = records(drop, source, ds)[0]
            kinds["shuffled"] += [c for c in header if c in contract.column_names(source)] != contract.column_names(
                source
            )
    assert kinds["gzip"] and kinds["crlf"] and kinds["bom"] and kinds["extra"] and kinds["shuffled"]
    assert kinds["gzip"] < 3 * DAYS and kinds["crlf"] < 3 * DAYS


# ---------------------------------------------------------------------- injected bad rows
def test_injected_rows_are_in_the_files_as_recorded(run):
    drop, summary, data, injected = run
    assert summary["injected"], "bad_row_share=0.03 must inject rows"
    seen_events: dict[str, dict] = {}
    merchant_ids = {r["merchant_id"] for ds in DS for r in data["merchants"][ds][1]}
    for ds in DS:
        rows_by_line = {s: {r["_line"]: r for r in data[s][ds][1]} for s in SOURCES}
        for (source, ds_, line), inj in injected.items():
            if ds_ != ds:
                continue
            row = rows_by_line[source][line]
            assert row[KEY[source]] == inj["key"], inj
            kind = inj["kind"]
            assert kind in INJECT_KINDS[source]
            if kind == "amount_negative":
                assert Decimal(row["amount"]) < 0
            elif kind == "amount_too_many_decimals":
                assert re.fullmatch(r"\d+\.\d{3}", row["amount"])
            elif kind in ("event_type_unknown",):
                assert row["event_type"] not in contract.EVENT_TYPES
            elif kind == "goods_category_unknown":
                assert row["goods_category"] not in contract.GOODS_CATEGORIES
            elif kind == "currency_wrong":
                assert row["currency"] != "CNY"
            elif kind == "event_at_after_ds":
                assert ts(row["event_at"]) >= end_of(ds)
            elif kind in ("event_at_invalid",):
                with pytest.raises(ValueError):
                    ts(row["event_at"])
            elif kind == "due_on_invalid":
                with pytest.raises(ValueError):
                    dt.date.fromisoformat(row["due_on"])
            elif kind == "due_on_missing":
                assert row["event_type"] == "drawdown" and row["due_on"] is None
            elif kind in ("event_id_too_long", "merchant_id_too_long", "report_id_too_long"):
                assert len(row[KEY[source]]) > (32 if source == "merchants" else 40)
            elif kind == "merchant_unknown":
                assert row["merchant_id"] not in merchant_ids and inj["expect"] == "held"
            elif kind == "event_id_conflict":
                earlier = seen_events[row["event_id"]]
                assert earlier["amount"] != row["amount"]
            elif kind == "duplicate_event_same_values":
                earlier = seen_events[row["event_id"]]
                assert {k: v for k, v in earlier.items() if k in contract.column_names(source)} == {
                    k: v for k, v in row.items() if k in contract.column_names(source)
                }
                assert inj["expect"] == "duplicate"
            elif kind == "region_unknown":
                assert row["region"] not in reference.regions()
            elif kind == "region_other_country":
                assert reference.regions()[row["region"]] != "CN"
            elif kind == "program_unknown":
                assert row["program_code"] not in reference.programs()
            elif kind == "business_type_unknown":
                assert row["business_type"] not in contract.BUSINESS_TYPES
            elif kind == "size_class_unknown":
                assert row["size_class"] not in contract.SIZE_CLASSES
            elif kind == "status_unknown":
                assert row["status"] not in contract.MERCHANT_STATUSES
            elif kind == "duplicate_merchant_id":
                assert sum(r["merchant_id"] == row["merchant_id"] for r in data[source][ds][1]) == 2
            elif kind == "employees_too_large":
                assert int(row["employees"]) >= 100_000
            elif kind == "employees_negative":
                assert int(row["employees"]) < 0
            elif kind == "period_month_after_ds":
                assert row["period_month"] > ds[:7]
            elif kind == "registered_after_enrolled":
                assert row["registered_on"] > row["enrolled_on"]
            elif kind == "enrolled_on_after_ds":
                assert row["enrolled_on"] > ds
            elif kind == "business_name_missing":
                assert row["business_name"] is None
        for row in data["credit_events"][ds][1]:
            if ("credit_events", ds, row["_line"]) not in injected:
                seen_events.setdefault(row["event_id"], row)
    kinds = Counter(i["kind"] for i in summary["injected"])
    assert len(kinds) >= 15, kinds


def test_bad_rows_stay_well_below_the_delivery_failure_share(run):
    _drop, summary, _, _ = run
    per_delivery = Counter((i["source"], i["ds"]) for i in summary["injected"] if i["expect"] != "duplicate")
    for (source, ds), n in per_delivery.items():
        assert n < 0.05 * summary["rows"][source][ds], (source, ds, n)


def test_bad_row_share_zero_injects_nothing_and_too_high_is_refused(tmp_path):
    summary = simulate(start="2020-06-02", days=2, merchants=100, drop=tmp_path, bad_row_share=0, progress=False)
    assert summary["injected"] == []
    with pytest.raises(ValueError, match="bad_row_share"):
        simulate(start="2020-06-02", days=1, merchants=10, drop=tmp_path, bad_row_share=0.06)


# ---------------------------------------------------------------------- clean rows follow the contract
def test_clean_rows_follow_the_contract(run):
    drop, summary, data, _ = run
    regions_cn = set(reference.regions_of("CN"))
    for source in SOURCES:
        for ds, row in clean_rows(run, source):
            for col in contract.COLUMNS[source]:
                value = row[col.name]
                if col.max_length:
                    assert value is None or len(value) <= col.max_length
                if col.enum and value is not None:
                    assert value in col.enum, (source, ds, col.name, value)
            if source == "merchants":
                assert row["program_code"] in reference.programs()
                assert row["region"] in regions_cn and row["city"]
                assert row["enrolled_on"] <= ds
                assert row["registered_on"] is None or row["registered_on"] <= row["enrolled_on"]
                assert ts(row["updated_at"]) < end_of(ds)
            elif source == "credit_events":
                assert re.fullmatch(r"\d+\.\d{2}", row["amount"]) and row["currency"] == "CNY"
                assert ts(row["event_at"]) < end_of(ds)
                assert Decimal(row["amount"]) <= 100000 or row["event_type"] not in ("line_opened", "limit_changed")
                if row["event_type"] == "drawdown":
                    assert row["due_on"] > ts(row["event_at"]).astimezone(SHANGHAI).date().isoformat()
                    assert row["goods_category"] in contract.GOODS_CATEGORIES
                if row["event_type"] == "line_opened":
                    assert Decimal(row["annual_interest_rate"]) >= 0
                if row["event_type"] == "line_closed":
                    assert row["amount"] == "0.00"
            else:
                assert 0 <= int(row["employees"]) < 100_000 and int(row["baseline_employees"]) >= 0
                assert re.fullmatch(r"\d{4}-\d{2}", row["period_month"]) and row["period_month"] <= ds[:7]
                assert ts(row["reported_at"]) < end_of(ds)
    for ds in DS:
        ids = Counter(r["merchant_id"] for r in data["merchants"][ds][1])
        dups = {m for m, c in ids.items() if c > 1}
        assert all(m.startswith("MQ") for m in dups)  # only the injected duplicate pairs
    event_ids = Counter(r["event_id"] for _ds, r in clean_rows(run, "credit_events"))
    assert max(event_ids.values()) == 1
    report_ids = Counter(r["report_id"] for ds in DS for r in data["employment_reports"][ds][1])
    assert max(report_ids.values()) == 1


def test_orphans_are_the_recorded_ones(run):
    """A clean row's merchant reaches the registry by the end of the same ds,
    except for the merchants the registry delivers late (recorded in the summary;
    the warehouse holds those rows until the merchant arrives)."""
    _drop, summary, data, _ = run
    first_seen = {}
    for ds in DS:
        for r in data["merchants"][ds][1]:
            first_seen.setdefault(r["merchant_id"], ds)
    for source in ("credit_events", "employment_reports"):
        orphans = Counter(ds for ds, r in clean_rows(run, source) if first_seen.get(r["merchant_id"], "9999") > ds)
        assert dict(orphans) == summary["orphans_expected"][source]
    assert sum(sum(v.values()) for v in summary["orphans_expected"].values()) > 0


# ---------------------------------------------------------------------- realism
def test_first_delivery_is_a_full_load_with_history(run):
    _drop, summary, data, _ = run
    first = data["merchants"][DS[0]][1]
    spark = [r for r in first if r["program_code"] == "SPARK-2020"]
    thunder = [r for r in first if r["program_code"] == "SPRING-THUNDER-2020"]
    assert any(r["enrolled_on"] < "2020-06-02" for r in spark), "SPARK pilots enrolled before launch"
    assert thunder and min(r["enrolled_on"] for r in thunder) < "2020-04-07"
    assert len(first) > sum(summary["rows"]["merchants"][ds] for ds in DS[1:])
    history = [
        r
        for _ds, r in clean_rows(run, "credit_events")
        if _ds == DS[0] and ts(r["event_at"]).astimezone(SHANGHAI).date().isoformat() < "2020-05-01"
    ]
    assert history, "the first credit delivery carries the history"
    assert any(r["period_month"] < "2020-05" for r in data["employment_reports"][DS[0]][1])


def test_credit_ledger_is_realistic(run):
    _drop, summary, _, _ = run
    rows = list(clean_rows(run, "credit_events"))
    types = Counter(r["event_type"] for _ds, r in rows)
    assert {"line_opened", "drawdown", "repayment"} <= set(types)
    assert types["drawdown"] > types["line_opened"]
    rates = {r["annual_interest_rate"] for _ds, r in rows if r["event_type"] == "line_opened"}
    assert "0" in rates and rates - {"0"}
    terms = {
        (dt.date.fromisoformat(r["due_on"]) - ts(r["event_at"]).astimezone(SHANGHAI).date()).days
        for _ds, r in rows
        if r["event_type"] == "drawdown"
    }
    assert min(terms) >= 30 and max(terms) <= 90
    # late postings: event local date before the delivery's ds, after the first delivery
    late = Counter(
        ds for ds, r in rows if ds > DS[0] and ts(r["event_at"]).astimezone(SHANGHAI).date().isoformat() < ds
    )
    assert late and dict(late) == summary["late_postings"]
    # offsets: mostly +08:00, some Z and +09:00; some rendered dates differ from the local date
    offsets = Counter(r["event_at"][19:] for _ds, r in rows)
    assert offsets.most_common(1)[0][0] == "+08:00" and offsets["Z"] and offsets["+09:00"]
    crossing = [r for _ds, r in rows if r["event_at"][:10] != ts(r["event_at"]).astimezone(SHANGHAI).date().isoformat()]
    assert crossing


def test_history_has_write_offs_closures_and_late_repayments(tmp_path):
    # Starting in December, the first delivery carries six months of ledger history.
    summary = simulate(start="2020-12-01", days=2, merchants=300, drop=tmp_path, bad_row_share=0, progress=False)
    rows = records(tmp_path, "credit_events", "2020-12-01")[1]
    types = Counter(r["event_type"] for r in rows)
    assert types["written_off"] and types["line_closed"] and types["limit_changed"]
    assert types["drawdown"] > types["repayment"] > types["line_opened"]
    limits = [Decimal(r["amount"]) for r in rows if r["event_type"] in ("line_opened", "limit_changed")]
    assert max(limits) <= 100000
    due, repaid = defaultdict(list), defaultdict(list)
    for r in rows:
        day = ts(r["event_at"]).astimezone(SHANGHAI).date()
        if r["event_type"] == "drawdown":
            due[r["credit_line_id"]].append(dt.date.fromisoformat(r["due_on"]))
        elif r["event_type"] == "repayment":
            repaid[r["credit_line_id"]].append(day)
    late = [line for line in repaid if max(repaid[line]) > min(due[line]) + dt.timedelta(days=30)]
    assert late, "some repayments come more than 30 days after a due date"
    statuses = Counter(r["status"] for r in records(tmp_path, "merchants", "2020-12-01")[1])
    assert 0.05 < statuses["exited"] / sum(statuses.values()) < 0.5
    assert summary["rows"]["merchants"]["2020-12-01"] >= 290  # the full load: nearly all 300 enrolled by then


def test_merchants_carry_realistic_personal_data_and_unicode_names(run):
    rows = [r for _ds, r in clean_rows(run, "merchants")]
    phones = [r["owner_phone"] for r in rows if r["owner_phone"]]
    ids = [r["owner_national_id"] for r in rows if r["owner_national_id"]]
    assert phones and all(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
    assert ids and all(re.fullmatch(r"\d{17}[\dX]", i) for i in ids)
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    for i in ids:  # GB 11643 check character
        assert "10X98765432"[sum(int(c) * w for c, w in zip(i[:17], weights)) % 11] == i[17]
    assert all(re.search(r"[\u4e00-\u9fff]", r["business_name"]) for r in rows)
    assert all(r["owner_name"] is None or re.fullmatch(r"[\u4e00-\u9fff]{2,3}", r["owner_name"]) for r in rows)
    statuses = Counter(r["status"] for r in rows)
    assert statuses["active"] > statuses["exited"]


def test_employment_reports_have_baselines_and_corrections(run):
    _drop, summary, _, _ = run
    rows = [r for _ds, r in clean_rows(run, "employment_reports")]
    by_key = defaultdict(list)
    for r in rows:
        by_key[(r["merchant_id"], r["period_month"])].append(r)
    corrected = [v for v in by_key.values() if len(v) > 1]
    assert corrected, "corrections: same merchant and month reported again"
    for reports in corrected:
        assert len({r["report_id"] for r in reports}) == len(reports)
        assert len({r["reported_at"] for r in reports}) == len(reports)
    baselines = defaultdict(set)
    for r in rows:
        baselines[r["merchant_id"]].add(r["baseline_employees"])
    assert all(len(b) == 1 for b in baselines.values()), "the December-2019 baseline is fixed per merchant"
    assert sum(summary["corrections"].values()) >= len(corrected)


# ---------------------------------------------------------------------- re-delivery and the command line
def test_redelivery_replaces_a_ds_with_corrected_content(env_paths):
    simulate(start="2020-06-02", days=2, merchants=200, seed=3, progress=False)
    ds = "2020-06-02"
    before_header, before = records(env_paths.drop, "credit_events", ds)
    old_control = json.loads((env_paths.drop / "credit_events" / f"ds={ds}" / "_control.json").read_text())
    result = redeliver_ds("credit_events", ds, seed=3)
    header, after = records(env_paths.drop, "credit_events", ds)
    path = data_file(env_paths.drop, "credit_events", ds)
    control = json.loads((path.parent / "_control.json").read_text())
    assert header == before_header and len(after) == len(before)
    assert [r["event_id"] for r in after] == [r["event_id"] for r in before]
    changed = {r["event_id"] for r, b in zip(after, before) if r != b}
    assert changed and changed == set(result["changed_keys"])
    assert control["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() != old_control["sha256"]
    total = sum((Decimal(r["amount"]) for r in after), Decimal(0))
    assert control["amount_total"] == str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    assert control["produced_at"] > old_control["produced_at"]
    for source in ("merchants", "employment_reports"):
        assert redeliver_ds(source, ds, seed=3)["changed_keys"]
        table, _fmt = read_delivery(source, ds)
        assert (
            table.num_rows
            == json.loads((env_paths.drop / source / f"ds={ds}" / "_control.json").read_text())["row_count"]
        )


def test_cli_writes_into_the_configured_drop_folder(env_paths, capsys):
    assert cli.main(["simulate", "--start", "2020-06-02", "--days", "2", "--merchants", "40", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    for source in SOURCES:
        for ds in ("2020-06-02", "2020-06-03"):
            assert (env_paths.drop / source / f"ds={ds}" / "_control.json").exists()
    assert cli.main(["simulate", "--redeliver", "2020-06-03", "--source", "merchants"]) == 0
    assert "redelivered merchants ds=2020-06-03" in capsys.readouterr().out
    assert cli.main(["simulate", "--redeliver", "2021-01-01"]) == 2
    assert "no merchants delivery" in capsys.readouterr().err


def test_cli_help_and_argument_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "_control.json" in out and "--bad-row-share" in out and "--redeliver" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--start", "2020-13-01"])
    assert exc.value.code == 2
    assert "2020-13-01" in capsys.readouterr().err
