"""The PPP importer (issue 6) on the permitted real files: VT, AS (July 2020
release) and the WV ZIP 25401 file (2021 schema). Expected figures are computed
here from the raw CSVs with the csv module, independently of the importer."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import DATA, REALDATA

from program_reporting.core import contract, reference
from program_reporting.tools.ppp import compare as ppp_compare
from program_reporting.tools.ppp import convert as ppp

# AS ships with the tests (tests/data/ppp/SOURCE.md); the others are read from ../shared/realdata/ppp/.
AS = DATA / "ppp" / "foia_up_to_150k_AS.csv"
VT = REALDATA / "ppp_2020_07_release" / "foia_up_to_150k_VT.csv"
WV = REALDATA / "ppp_2021_schema" / "wv_25401_ppp.csv"
SBA_STATE = REALDATA / "sba_reports" / "sba_ppp_report_20200630_state.csv"


def needs(*files: Path):
    """Skip, naming the real PPP files that are missing."""
    missing = [str(f) for f in files if not f.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"needs the real PPP file(s) {', '.join(missing)}")


def raw_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def raw_figures(path: Path, as_of: str = "2020-06-30") -> dict:
    """kpi_program_daily figures a July 2020 file must produce, from the raw CSV alone."""
    rows = [
        r
        for r in raw_rows(path)
        if r["DateApproved"] and dt.datetime.strptime(r["DateApproved"], "%m/%d/%Y").date().isoformat() <= as_of
    ]
    return {
        "enrolled_merchants": len(rows),
        "credit_limit_total": sum((Decimal(r["LoanAmount"]) for r in rows), Decimal(0)),
        "jobs_current": sum(int(r["JobsRetained"]) for r in rows if r["JobsRetained"] != ""),
        "loans_without_jobs": sum(1 for r in rows if r["JobsRetained"] == ""),
    }


def read_delivery(drop: Path, source: str, ds: str) -> tuple[list[dict[str, str]], dict]:
    folder = drop / source / f"ds={ds}"
    with open(folder / f"{source}.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows, json.loads((folder / "_control.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the raw files


@pytest.mark.parametrize(
    "path, expected",
    [
        pytest.param(
            VT,
            {
                "enrolled_merchants": 10387,
                "credit_limit_total": Decimal("367908247.80"),
                "jobs_current": 45179,
                "loans_without_jobs": 690,
            },
            marks=needs(VT),
        ),
        (
            AS,
            {
                "enrolled_merchants": 204,
                "credit_limit_total": Decimal("5387688.81"),
                "jobs_current": 2166,
                "loans_without_jobs": 2,
            },
        ),
    ],
)
def test_issue_figures_hold_in_the_raw_files(path, expected):
    """The issue's figures: every row of VT and AS is a loan approved by 2020-06-30."""
    assert raw_figures(path) == expected
    rows = raw_rows(path)
    assert len(rows) == expected["enrolled_merchants"]  # no row lacks or postdates its approval date
    assert all(Decimal(r["LoanAmount"]) > 2 for r in rows)  # no $0-$2 loans in these two files


# --------------------------------------------------------------------------- deliveries


@needs(VT)
def test_import_writes_contract_deliveries(env_paths):
    result = ppp.import_files([VT, AS])
    assert result.ds == "2020-06-30"  # the latest DateApproved
    vt, as_ = raw_figures(VT), raw_figures(AS)
    loans = vt["enrolled_merchants"] + as_["enrolled_merchants"]
    reports = loans - vt["loans_without_jobs"] - as_["loans_without_jobs"]
    assert result.rows == {"merchants": loans, "credit_events": 2 * loans, "employment_reports": reports}
    assert result.expected_quarantine == {"merchants": {}, "credit_events": {}, "employment_reports": {}}

    for source in contract.COLUMNS:
        folder = env_paths.drop / source / "ds=2020-06-30"
        assert sorted(p.name for p in folder.iterdir()) == sorted([f"{source}.csv", "_control.json"])
        data = (folder / f"{source}.csv").read_bytes()
        rows, control = read_delivery(env_paths.drop, source, "2020-06-30")
        assert list(rows[0].keys()) == contract.column_names(source)
        assert control["source"] == source and control["ds"] == "2020-06-30"
        assert control["schema_version"] == contract.SCHEMA_VERSION
        assert control["row_count"] == len(rows) == result.rows[source]
        assert control["sha256"] == hashlib.sha256(data).hexdigest()
        assert dt.datetime.fromisoformat(control["produced_at"]).utcoffset() is not None
        # control written last
        assert (folder / "_control.json").stat().st_mtime_ns >= (folder / f"{source}.csv").stat().st_mtime_ns
        if source == "credit_events":
            assert control["amount_total"] == str(sum((Decimal(r["amount"]) for r in rows), Decimal(0)))

    merchants, _ = read_delivery(env_paths.drop, "merchants", "2020-06-30")
    events, _ = read_delivery(env_paths.drop, "credit_events", "2020-06-30")
    reports_, _ = read_delivery(env_paths.drop, "employment_reports", "2020-06-30")
    regions = set(reference.regions())
    assert Counter(m["region"] for m in merchants) == {"US-VT": 10387, "US-AS": 204}
    assert all(m["region"] in regions for m in merchants)
    assert all(m["program_code"] == "PPP-2020" and m["status"] == "active" for m in merchants)
    assert all(m["owner_name"] == m["owner_phone"] == m["owner_national_id"] == "" for m in merchants)
    assert {m["business_type"] for m in merchants} <= set(contract.BUSINESS_TYPES)
    assert {m["size_class"] for m in merchants} <= set(contract.SIZE_CLASSES)
    assert all(len(m["merchant_id"]) <= 32 for m in merchants)
    assert len({m["merchant_id"] for m in merchants}) == len(merchants)
    # approval dates at noon New York time (EDT in April-June 2020)
    assert all(m["updated_at"] == f"{m['enrolled_on']}T12:00:00-04:00" for m in merchants)
    assert min(m["enrolled_on"] for m in merchants) == "2020-04-03"

    opened = [e for e in events if e["event_type"] == "line_opened"]
    draws = [e for e in events if e["event_type"] == "drawdown"]
    assert len(opened) == len(draws) == loans
    assert all(e["annual_interest_rate"] == "0.01" and e["currency"] == "USD" for e in opened)
    assert sum(Decimal(e["amount"]) for e in opened) == vt["credit_limit_total"] + as_["credit_limit_total"]
    assert sum(Decimal(e["amount"]) for e in draws) == vt["credit_limit_total"] + as_["credit_limit_total"]
    enrolled = {m["merchant_id"]: m["enrolled_on"] for m in merchants}
    for e in draws:  # due 24 months after approval
        y, mth, d = map(int, enrolled[e["merchant_id"]].split("-"))
        assert e["due_on"] == f"{y + 2:04d}-{mth:02d}-{d:02d}" and e["goods_category"] == "other"
        assert all(len(e[c]) <= lim for c, lim in (("event_id", 40), ("credit_line_id", 32)))

    assert sum(int(r["employees"]) for r in reports_) == vt["jobs_current"] + as_["jobs_current"]
    assert all(r["employees"] == r["baseline_employees"] for r in reports_)
    assert all(r["period_month"] == enrolled[r["merchant_id"]][:7] for r in reports_)
    assert all(r["reported_at"] == f"{enrolled[r['merchant_id']]}T12:00:00-04:00" for r in reports_)


@needs(VT)
def test_ids_are_stable_across_imports_and_column_order(env_paths, tmp_path):
    first = ppp.import_files([VT, AS])
    ids1 = [m["merchant_id"] for m in read_delivery(env_paths.drop, "merchants", first.ds)[0]]
    # the same file set again, into the same drop: the same bytes, so no --replace needed
    ppp.import_files([VT, AS])
    again = [m["merchant_id"] for m in read_delivery(env_paths.drop, "merchants", first.ds)[0]]
    assert again == ids1

    # another drop, the AS file with its columns reversed: same ids for the same loans
    rows = raw_rows(AS)
    reordered = tmp_path / "as_reordered.csv"
    with open(reordered, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(reversed(list(rows[0].keys()))))
        w.writeheader()
        w.writerows(rows)
    ppp.import_files([reordered], drop=tmp_path / "drop2")
    ids2 = [m["merchant_id"] for m in read_delivery(tmp_path / "drop2", "merchants", "2020-06-30")[0]]
    assert ids2 == ids1[-len(rows) :]


@needs(VT)
def test_exact_duplicate_rows_stay_separate_loans(env_paths):
    rows = raw_rows(VT)
    counts = Counter(tuple(r.values()) for r in rows)
    dup_groups = {k: n for k, n in counts.items() if n > 1}
    assert sum(n - 1 for n in dup_groups.values()) == 6  # SOURCE.txt: VT has 6 exact duplicate rows

    ppp.import_files([VT])
    merchants, _ = read_delivery(env_paths.drop, "merchants", "2020-06-30")
    assert len(merchants) == len(rows) == len({m["merchant_id"] for m in merchants})
    # the n-th copy of a row gets the first copy's id plus "-n"
    by_row = {}
    for raw, m in zip(rows, merchants):
        by_row.setdefault(tuple(raw.values()), []).append(m["merchant_id"])
    for key, n in dup_groups.items():
        ids = by_row[key]
        assert ids == [ids[0]] + [f"{ids[0]}-{k}" for k in range(2, n + 1)]


@needs(WV)
def test_2021_schema_with_forgiveness(env_paths):
    raw = raw_rows(WV)
    result = ppp.import_files([WV])
    # cut-off: the latest approval or forgiveness date in the file
    assert result.ds == max(
        max(r["date_approved"] for r in raw), max(r["forgiveness_date"] for r in raw if r["forgiveness_date"] != "NA")
    )
    assert result.ds == "2021-06-30"
    merchants, _ = read_delivery(env_paths.drop, "merchants", result.ds)
    events, control = read_delivery(env_paths.drop, "credit_events", result.ds)
    reports, _ = read_delivery(env_paths.drop, "employment_reports", result.ds)
    assert [m["merchant_id"] for m in merchants] == [f"PPP-{r['loan_number']}" for r in raw]
    assert [m["business_name"] for m in merchants] == [r["name"] for r in raw]
    assert {m["region"] for m in merchants} == {"US-WV"}

    opened = {e["merchant_id"]: e for e in events if e["event_type"] == "line_opened"}
    draws = {e["merchant_id"]: e for e in events if e["event_type"] == "drawdown"}
    repaid = {e["merchant_id"]: e for e in events if e["event_type"] == "repayment"}
    assert sum(Decimal(e["amount"]) for e in opened.values()) == Decimal("6314354.65")  # SOURCE.txt
    forgiven = [r for r in raw if r["forgiveness_amount"] != "NA"]
    assert len(repaid) == len(forgiven) == 38
    assert sum(Decimal(e["amount"]) for e in repaid.values()) == Decimal("2126561.72")
    for r in forgiven:
        e = repaid[f"PPP-{r['loan_number']}"]
        assert Decimal(e["amount"]) == Decimal(r["forgiveness_amount"])
        assert e["event_at"].startswith(r["forgiveness_date"] + "T12:00:00")
    for r in raw:  # drawdown = disbursed amount, due after the loan's Term in months
        e = draws[f"PPP-{r['loan_number']}"]
        assert Decimal(e["amount"]) == Decimal(r["current_approval_amount"]) - Decimal(r["undisbursed_amount"])
        y, m, d = map(int, r["date_approved"].split("-"))
        months = m - 1 + int(r["term"])
        assert e["due_on"] == f"{y + months // 12:04d}-{months % 12 + 1:02d}-{d:02d}"
    assert sum(int(r["employees"]) for r in reports) == 801
    # the NA NAICS code maps to business type "other"
    na_naics = [f"PPP-{r['loan_number']}" for r in raw if r["naics_code"] == "NA"]
    assert len(na_naics) == 1
    assert {m["business_type"] for m in merchants if m["merchant_id"] in na_naics} == {"other"}
    # winter dates carry the EST offset
    assert any(m["updated_at"].endswith("-05:00") for m in merchants)
    assert result.expected_quarantine == {"merchants": {}, "credit_events": {}, "employment_reports": {}}


def test_bad_values_follow_the_documented_rules(env_paths, tmp_path):
    """Rows made from real AS rows with the bad values the national files hold."""
    rows = raw_rows(AS)[:40]
    header = list(rows[0].keys())
    bad = {
        0: {"LoanAmount": "0"},
        1: {"LoanAmount": "1.5"},
        2: {"LoanAmount": "2"},
        3: {"State": "XX"},
        4: {"State": "AE"},
        5: {"State": "FI"},
        6: {"NAICSCode": ""},
        7: {"NAICSCode": "NA"},
        8: {"JobsRetained": ""},
        9: {"JobsRetained": "NA"},
        10: {"DateApproved": ""},
        11: {"LoanAmount": "-100"},
        12: {"JobsRetained": "-3"},
        13: {"JobsRetained": "12.0"},
        14: {"City": ""},
        15: {"LoanAmount": "1.234"},
        16: {"DateApproved": "13/45/2020"},
    }
    for i, change in bad.items():
        rows[i] = {**rows[i], **change}
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    result = ppp.import_files([path])
    merchants, _ = read_delivery(env_paths.drop, "merchants", result.ds)
    events, control = read_delivery(env_paths.drop, "credit_events", result.ds)
    reports, _ = read_delivery(env_paths.drop, "employment_reports", result.ds)
    assert len(merchants) == len(rows)  # nothing dropped
    assert len(events) == 2 * len(rows)
    opened = [e for e in events if e["event_type"] == "line_opened"]
    # $0-$2 loans kept as the SBA published them
    assert [opened[i]["amount"] for i in (0, 1, 2)] == ["0.00", "1.50", "2.00"]
    assert result.flags["amount_0_to_2_dollars_kept"] == 3
    # unknown state codes emitted faithfully: landing quarantines them (region not in reference data)
    assert [merchants[i]["region"] for i in (3, 4, 5)] == ["US-XX", "US-AE", "US-FI"]
    assert result.expected_quarantine["merchants"]["region_unknown"] == 3
    # blank or NA NAICS: business type other
    assert merchants[6]["business_type"] == merchants[7]["business_type"] == "other"
    # no jobs value (blank or NA): no employment report
    reported = {r["merchant_id"] for r in reports}
    assert merchants[8]["merchant_id"] not in reported and merchants[9]["merchant_id"] not in reported
    # missing approval date: written empty, quarantined by landing as a missing required value
    assert merchants[10]["enrolled_on"] == merchants[10]["updated_at"] == ""
    assert opened[10]["event_at"] == ""
    # negative amount / job count as delivered, for landing to quarantine
    assert opened[11]["amount"] == "-100"
    assert result.expected_quarantine["credit_events"]["amount_invalid"] == 4  # open + draw, twice
    # an unreadable approval date is written as delivered
    assert merchants[16]["enrolled_on"] == "13/45/2020" and merchants[16]["updated_at"] == "13/45/2020"
    assert result.expected_quarantine["merchants"]["enrolled_on_invalid"] == 2
    by_id = {r["merchant_id"]: r for r in reports}
    assert by_id[merchants[12]["merchant_id"]]["employees"] == "-3"
    assert by_id[merchants[13]["merchant_id"]]["employees"] == "12"  # 12.0 is the integer 12
    assert merchants[14]["city"] == "" and result.expected_quarantine["merchants"]["city_missing"] == 1
    # the control total sums the plain decimals as delivered (the 3-place amount cannot be summed: 0)
    assert opened[15]["amount"] == "1.234"
    plain = [Decimal(e["amount"]) for e in events if re.fullmatch(r"-?\d+(\.\d{1,2})?", e["amount"])]
    assert control["amount_total"] == str(sum(plain, Decimal(0)).quantize(Decimal("0.01")))


@needs(VT, WV)
def test_quarantine_shares_of_the_permitted_files_are_below_the_limit():
    for files in ([VT], [AS], [WV]):
        loans = ppp.read_file(files[0])
        frames = ppp.build_deliveries(loans)
        ds = "2021-06-30" if files[0] == WV else "2020-06-30"
        assert ppp.expected_quarantine(frames, ds) == {"merchants": {}, "credit_events": {}, "employment_reports": {}}


def test_loan_range_file_uses_the_lower_bound(env_paths, tmp_path):
    """The >= $150k files: a range instead of an amount, Excel dates, a BOM."""
    path = tmp_path / "ranges.csv"
    path.write_bytes(
        "\ufeffLoanRange,BusinessName,Address,City,State,Zip,NAICSCode,BusinessType,RaceEthnicity,Gender,"
        "Veteran,NonProfit,JobsRetained,DateApproved,Lender,CD\n"
        'a $5-10 million,"BIG, INC",1 Main St,BILLINGS,MT,59101,561330,Corporation,U,U,U,,348,4/14/20,Bank,MT - 00\n'
        '"d $350,000-1 million",CAFE LLC,2 Main St,HELENA,MT,59601,722511,LLC,U,U,U,,,6/30/20,Bank,MT - 00\n'.encode(
            "utf-8"
        )
    )
    ppp.import_files([path])
    merchants, _ = read_delivery(env_paths.drop, "merchants", "2020-06-30")
    events, _ = read_delivery(env_paths.drop, "credit_events", "2020-06-30")
    assert [m["business_name"] for m in merchants] == ["BIG, INC", "CAFE LLC"]
    assert [m["enrolled_on"] for m in merchants] == ["2020-04-14", "2020-06-30"]
    assert [m["business_type"] for m in merchants] == ["service", "restaurant"]
    assert [m["size_class"] for m in merchants] == ["medium", "small"]  # 348 jobs; no jobs: $350k by amount
    assert [e["amount"] for e in events if e["event_type"] == "line_opened"] == ["5000000.00", "350000.00"]


@needs(VT)
def test_refusals_name_the_cause(env_paths, tmp_path):
    with pytest.raises(ppp.PPPImportError, match="before the data's cut-off 2020-06-30"):
        ppp.import_files([AS], ds="2020-06-01")
    ppp.import_files([AS])
    # another file set for the same ds would replace AS's delivery: refused, nothing changed
    before = (env_paths.drop / "merchants" / "ds=2020-06-30" / "merchants.csv").read_bytes()
    with pytest.raises(ppp.PPPImportError, match="already holds a different delivery"):
        ppp.import_files([VT])
    assert (env_paths.drop / "merchants" / "ds=2020-06-30" / "merchants.csv").read_bytes() == before
    assert not list(env_paths.drop.rglob("*.tmp"))
    ppp.import_files([VT], replace=True)
    assert len(read_delivery(env_paths.drop, "merchants", "2020-06-30")[0]) == 10387
    with pytest.raises(ppp.PPPImportError, match="same content"):
        ppp.import_files([AS, AS], drop=tmp_path / "d3")
    other = tmp_path / "not_ppp.csv"
    other.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ppp.PPPImportError, match="not a PPP FOIA file"):
        ppp.import_files([other], drop=tmp_path / "d4")


def test_explicit_ds_later_than_the_data(env_paths):
    result = ppp.import_files([AS], ds="2020-07-06")
    assert result.ds == "2020-07-06"
    merchants, control = read_delivery(env_paths.drop, "merchants", "2020-07-06")
    assert control["ds"] == "2020-07-06" and max(m["enrolled_on"] for m in merchants) == "2020-06-30"


def test_cli_help_and_run(env_paths):
    exe = Path(sys.executable).with_name("program-reporting")
    out = subprocess.run([str(exe), "import-ppp", "--help"], capture_output=True, text=True, check=True).stdout
    assert "merchant_id" in out and "business_type" in out and "--drop" in out and "--ds" in out
    proc = subprocess.run(
        [str(exe), "import-ppp", str(AS), "--drop", str(env_paths.drop / "cli")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "ds=2020-06-30" in proc.stdout and "program-reporting run --ds 2020-06-30" in proc.stdout
    assert (env_paths.drop / "cli" / "merchants" / "ds=2020-06-30" / "_control.json").exists()
    proc = subprocess.run(
        [str(exe), "import-ppp", str(AS), "--ds", "2020-05-01", "--drop", str(env_paths.drop / "cli")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "cut-off" in proc.stderr.strip().splitlines()[-1]


@needs(VT)
def test_import_of_a_big_state_keeps_every_loan(env_paths, tmp_path):
    """A big state (CA: ~500k small loans): 20x VT here (~208k rows), every loan kept.
    How long it takes is for bench/, not for a timed test on a shared machine."""
    lines = VT.read_text(encoding="utf-8").splitlines(keepends=True)
    big = tmp_path / "big.csv"
    big.write_text(lines[0] + "".join(lines[1:]) * 20, encoding="utf-8")
    result = ppp.import_files([big])
    assert result.rows["merchants"] == 20 * 10387
    distinct_rows = 10387 - 6
    assert result.flags["exact_duplicate_rows_kept"] == 20 * 10387 - distinct_rows


@needs(VT, SBA_STATE)
def test_comparison_report(env_paths, tmp_path):
    """Against a hand-made published set (the real one is checked in test_ppp_e2e.py)."""
    import duckdb

    env_paths.published.mkdir(parents=True)
    con = duckdb.connect(str(env_paths.current_db))
    con.execute("""create table kpi_segment_daily (program_code varchar, as_of_date date, region varchar,
                   business_type varchar, size_class varchar, open_credit_lines bigint,
                   credit_limit_total decimal(18,2))""")
    con.execute("""insert into kpi_segment_daily values
        ('PPP-2020', '2020-06-30', 'US-VT', 'service', 'micro', 10000, 300000000.00),
        ('PPP-2020', '2020-06-30', 'US-VT', 'other', 'small', 387, 67908247.80),
        ('PPP-2020', '2020-06-29', 'US-VT', 'other', 'small', 5, 5.00),
        ('SPARK-2020', '2020-06-30', 'CN-GD', 'other', 'small', 9, 9.00)""")
    con.close()
    out = ppp_compare.write_comparison("2020-06-30", SBA_STATE)
    with open(out["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["region"] for r in rows] == ["US-VT", "TOTAL"]
    vt = rows[0]
    assert (vt["warehouse_loans"], vt["warehouse_dollars"]) == ("10387", "367908247.80")
    assert (vt["sba_loans"], vt["sba_dollars"]) == ("11929", "1187439086")  # PUBLISHED_FIGURES.md
    assert Decimal(vt["loan_share"]) == (Decimal(10387) / 11929).quantize(Decimal("0.000001"))
    assert Decimal(vt["dollar_share"]) == (Decimal("367908247.80") / 1187439086).quantize(Decimal("0.000001"))
    assert out["csv"].parent == env_paths.reports / "ppp_comparison"
    assert "87.1%" in out["md"].read_text(encoding="utf-8")  # 10,387 / 11,929 loans
    assert "<table>" in out["html"].read_text(encoding="utf-8")


@needs(WV)
def test_landed_deliveries_give_the_issue_figures(env_paths):
    """Landing accepts the AS and WV deliveries whole, and kpis.md read by the
    independent oracle (tests/helpers/kpi_oracle.py, no dbt) gives the issue's figures.
    The dbt marts are checked against the same figures in test_ppp_e2e.py."""
    from helpers import kpi_oracle

    from program_reporting.landing import land as landing

    result = ppp.import_files([AS, WV])
    assert result.ds == "2021-06-30"
    for source in contract.COLUMNS:
        record = landing.land(source, result.ds)
        assert (record["delivered"], record["loaded"], record["quarantined"], record["held"]) == (
            result.rows[source],
            result.rows[source],
            0,
            0,
        ), record
    program, segments = kpi_oracle.compute(env_paths.home)
    by_day = {str(r["as_of_date"]): r for r in program if r["program_code"] == "PPP-2020"}
    as_ = raw_figures(AS)
    day = by_day["2020-06-30"]  # AS loans only: the WV sample's loans of that date are added below
    wv_rows = raw_rows(WV)
    wv_by_then = [r for r in wv_rows if r["date_approved"] <= "2020-06-30"]
    assert day["enrolled_merchants"] == as_["enrolled_merchants"] + len(wv_by_then)
    assert day["credit_limit_total"] == as_["credit_limit_total"] + sum(
        (Decimal(r["current_approval_amount"]) for r in wv_by_then), Decimal(0)
    )
    assert day["jobs_current"] == as_["jobs_current"] + sum(int(r["jobs_retained"]) for r in wv_by_then)
    seg_as = [s for s in segments if str(s["as_of_date"]) == "2020-06-30" and s["region"] == "US-AS"]
    assert sum(s["enrolled_merchants"] for s in seg_as) == 204
    assert sum((s["credit_limit_total"] for s in seg_as), Decimal(0)) == Decimal("5387688.81")
    assert sum(s["jobs_current"] for s in seg_as) == 2166
    assert sum(s["reporting_merchants"] for s in seg_as) == 204 - 2
    last = by_day["2021-06-30"]
    forgiven = sum((Decimal(r["forgiveness_amount"]) for r in wv_rows if r["forgiveness_amount"] != "NA"), Decimal(0))
    assert last["repaid_to_date"] == forgiven == Decimal("2126561.72")
