"""Turn SBA Paycheck Protection Program (PPP) FOIA CSVs into PPP-2020 deliveries.

usage: program-reporting import-ppp FILE... [--drop DIR] [--ds YYYY-MM-DD] [--replace] [--json]
       program-reporting import-ppp --compare [--date YYYY-MM-DD] [--sba-report CSV]

example:
  program-reporting import-ppp ../shared/realdata/ppp/ppp_2020_07_release/foia_up_to_150k_VT.csv
  program-reporting run --ds 2020-06-30
  program-reporting import-ppp --compare --date 2020-06-30

Reads FOIA files of either schema (the July 2020 release: LoanAmount or
LoanRange, City, State, NAICSCode, JobsRetained, DateApproved, ...; the 2021
schema: LoanNumber, BorrowerName, BorrowerState, CurrentApprovalAmount,
JobsReported, ForgivenessAmount, ForgivenessDate, ...; snake_case copies of
either are accepted) and writes ONE delivery per source for the whole file
set into the drop folder (extracts.md), for program PPP-2020 (USD,
America/New_York). Its ds is the data's cut-off date: the latest
DateApproved/ForgivenessDate of the set, or --ds. Import every file of a
date in one command: a second delivery for the same ds replaces the first.
Then run the pipeline for that ds:  program-reporting run --ds 2020-06-30

Mapping (each loan is one merchant; all dates are approval dates, at 12:00
America/New_York; details and bad-value rules in docs/ppp.md):
  merchant_id     2021: PPP-<LoanNumber>; 2020: PPP20-<first 20 hex of the
                  sha256 of the row's fields>, "-<n>" added for the n-th (n>1)
                  exact duplicate of a row (duplicates are separate loans)
  merchants       region US-<State>; city; business_name (2020 small-loan
                  files have none: "PPP borrower (name not released)");
                  business_type from NAICS; size_class from jobs;
                  enrolled_on/updated_at = DateApproved; status active;
                  owner columns empty
  credit_events   line_opened = approved amount (CurrentApprovalAmount or
                  LoanAmount; LoanRange files: the range's lower bound) at
                  annual_interest_rate 0.01; drawdown of the disbursed amount
                  on the same day, due_on = approval + Term months (24 when
                  no Term), goods_category other; repayment =
                  ForgivenessAmount on ForgivenessDate (2021 schema)
  employment      one report, employees = baseline_employees = JobsRetained
                  (2020) / JobsReported (2021), period_month = approval month,
                  self_reported; no value -> no report
  business_type   NAICS 445120/447110 convenience_store, 445 grocery,
                  722330/454390 street_stall, 722 restaurant, 44-45
                  retail_shop, 48-49/51-56/61/62/71/721/81 service, else other
  size_class      jobs <10 micro, <50 small, else medium; without jobs from
                  the amount (2.5 months of payroll): <112,500 micro,
                  <562,500 small, else medium

Values that break the contract (unknown state codes such as XX/AE/FI, missing
or unreadable dates, negative or malformed amounts and job counts) are written
as delivered, so that landing quarantines them under its named rule; the
importer counts them per rule and warns when a source would exceed the
quarantine limit (PROGRAM_REPORTING_MAX_QUARANTINE_SHARE, default 5%), which
would fail the whole delivery. The string NA means null. Amounts of $0-$2
are kept (the SBA counted those loans) and listed in the summary.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from program_reporting.core import contract, reference
from program_reporting.core.checksums import sha256_file
from program_reporting.core.settings import Paths, parse_ds, quarantine_share_limit
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

PROGRAM_CODE = "PPP-2020"
INTEREST_RATE = "0.01"  # PPP loans: 1% a year (CARES Act / SBA interim final rule)
DEFAULT_TERM_MONTHS = 24  # loans approved in 2020 before the Flexibility Act: 2 years
TIME_OF_DAY = dt.time(12, 0)  # approval dates carry no time: noon local, a fixed convention
NO_NAME = "PPP borrower (name not released)"
TINY_AMOUNT_CENTS = 200  # $0-$2: kept, but flagged in the summary

# Each logical field, and the normalised header names (lower case, letters
# and digits only) that carry it, in order of preference.
FIELDS: dict[str, tuple[str, ...]] = {
    "loan_number": ("loannumber",),
    "business_name": ("borrowername", "businessname", "name"),
    "state": ("borrowerstate", "state", "projectstate"),
    "city": ("borrowercity", "city", "projectcity"),
    "naics": ("naicscode",),
    "jobs": ("jobsreported", "jobsretained"),
    "approved": ("dateapproved",),
    "amount": ("currentapprovalamount", "loanamount", "initialapprovalamount"),
    "loan_range": ("loanrange",),
    "undisbursed": ("undisbursedamount",),
    "term": ("term",),
    "forgiveness_amount": ("forgivenessamount",),
    "forgiveness_date": ("forgivenessdate",),
}

_MONEY = re.compile(r"^(\d+)(?:\.(\d{1,2}))?$")
_INT = re.compile(r"^\d+(?:\.0*)?$")


class PPPImportError(Exception):
    """A file set that cannot be imported; the message names file and cause."""


@dataclass
class ImportResult:
    ds: str
    files: list[str]
    rows: dict[str, int]
    delivery_dirs: dict[str, Path]
    expected_quarantine: dict[str, dict[str, int]] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "ds": self.ds,
            "files": self.files,
            "rows": self.rows,
            "delivery_dirs": {k: str(v) for k, v in self.delivery_dirs.items()},
            "expected_quarantine": self.expected_quarantine,
            "flags": self.flags,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- reading


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _read_csv(path: Path) -> pd.DataFrame:
    """Every column as text, exactly as delivered (no type guessing)."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8-sig").rstrip("\r\n")
        names = next(csv.reader([header]))
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding="utf8", block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, StopIteration) as exc:
        raise PPPImportError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc
    df = table.to_pandas()
    df.columns = [c.lstrip("\ufeff") for c in df.columns]
    return df


def _pick(df: pd.DataFrame, field_name: str) -> pd.Series | None:
    by_norm = {_norm(c): c for c in df.columns}
    for alias in FIELDS[field_name]:
        if alias in by_norm:
            return df[by_norm[alias]]
    return None


def _parse_dates(values: pd.Series) -> pd.Series:
    """MM/DD/YYYY (SBA), YYYY-MM-DD (2021 copies), M/D/YY (Excel re-saves)."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[s]")
    for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%m/%d/%y"):
        missing = out.isna() & values.ne("")
        if not missing.any():
            break
        parsed = pd.to_datetime(values[missing], format=fmt, errors="coerce")
        out[missing] = parsed.astype("datetime64[s]")
    return out


def _range_lower_bound(values: pd.Series) -> pd.Series:
    """'d $350,000-1 million' -> 350000; 'a $5-10 million' -> 5000000."""
    m = values.str.extract(r"\$\s*([\d,\.]+)")[0].str.replace(",", "", regex=False)
    num = pd.to_numeric(m, errors="coerce")
    million = values.str.contains("million", case=False, na=False) & (num < 1000)
    num = num.where(~million, num * 1_000_000)
    return num.map(lambda v: "" if pd.isna(v) else f"{Decimal(str(v)).quantize(Decimal('0.01'))}")


def read_file(path: Path) -> pd.DataFrame:
    """One FOIA file as a frame of logical fields (all text, '' for null)."""
    path = Path(path)
    raw = _read_csv(path)
    for col in raw.columns:
        s = raw[col].astype(str).str.strip()
        raw[col] = s.where(s.ne("NA"), "")  # the 2021 copies write NA for null
    n = len(raw)
    out = pd.DataFrame(index=raw.index)
    loan_number = _pick(raw, "loan_number")
    schema = "2021" if loan_number is not None else "2020"
    needed = ["state", "approved", "jobs", "city"]
    missing = [f for f in needed if _pick(raw, f) is None]
    if _pick(raw, "amount") is None and _pick(raw, "loan_range") is None:
        missing.append("amount (LoanAmount, LoanRange or CurrentApprovalAmount)")
    if missing:
        raise PPPImportError(
            f"{path}: not a PPP FOIA file: no column for {', '.join(missing)} (header: {', '.join(raw.columns)})"
        )
    empty = pd.Series([""] * n, index=raw.index, dtype=str)
    for f in FIELDS:
        s = _pick(raw, f)
        out[f] = empty if s is None else s
    ranged = out["amount"].eq("") & out["loan_range"].ne("")
    if ranged.any():
        out.loc[ranged, "amount"] = _range_lower_bound(out.loc[ranged, "loan_range"])
    out["amount_from_range"] = ranged
    out["schema"] = schema
    out["file"] = str(path)
    out["line"] = pd.RangeIndex(2, n + 2)  # the header is line 1 (no multi-line fields in FOIA files)

    if schema == "2021":
        ln = out["loan_number"]
        ok = ln.str.fullmatch(r"[A-Za-z0-9]{1,28}")
        out["merchant_id"] = ("PPP-" + ln).where(ok, "")
        if (~ok).any():
            bad = out.loc[~ok, "line"].head(5).tolist()
            raise PPPImportError(f"{path}: LoanNumber missing or not alphanumeric on line(s) {bad}")
    else:
        # No key column: the row's content is its identity. Sorted header
        # names make the id independent of column order.
        cols = sorted(raw.columns, key=_norm)
        content = pc.binary_join_element_wise(
            *[pa.array(raw[c]).cast(pa.large_string()) for c in cols], pa.scalar("\x1f", pa.large_string())
        ).to_pylist()
        prefix = "\x1e".join(_norm(c) for c in cols) + "\x1e"
        digest = pd.Series(
            [hashlib.sha256((prefix + c).encode()).hexdigest()[:20] for c in content], index=raw.index, dtype=str
        )
        occurrence = digest.groupby(digest).cumcount() + 1
        suffix = occurrence.map(lambda k: "" if k == 1 else f"-{k}")
        out["merchant_id"] = "PPP20-" + digest + suffix
    return out


# --------------------------------------------------------------------------- mapping


def business_type(naics: pd.Series) -> pd.Series:
    n = naics.fillna("").astype(str)
    s2, s3 = n.str[:2], n.str[:3]
    valid = n.str.fullmatch(r"\d{6}")
    bt = pd.Series("other", index=n.index, dtype=object)
    service = s2.isin(["48", "49", "51", "52", "53", "54", "55", "56", "61", "62", "71", "81"]) | s3.eq("721")
    bt[valid & service] = "service"
    bt[valid & s2.isin(["44", "45"])] = "retail_shop"
    bt[valid & s3.eq("722")] = "restaurant"
    bt[valid & s3.eq("445")] = "grocery"
    bt[valid & n.isin(["445120", "447110"])] = "convenience_store"
    bt[valid & n.isin(["722330", "454390"])] = "street_stall"
    return bt


def size_class(jobs: pd.Series, amount_cents: pd.Series) -> pd.Series:
    j = pd.to_numeric(jobs.where(jobs.str.fullmatch(_INT.pattern)), errors="coerce")
    by_jobs = pd.Series(pd.NA, index=jobs.index, dtype=object)
    by_jobs[j < 10] = "micro"
    by_jobs[(j >= 10) & (j < 50)] = "small"
    by_jobs[j >= 50] = "medium"
    a = amount_cents / 100
    by_amount = pd.Series("micro", index=jobs.index, dtype=object)
    by_amount[(a >= 112_500)] = "small"
    by_amount[(a >= 562_500)] = "medium"
    return by_jobs.fillna(by_amount)


def _cents(values: pd.Series) -> pd.Series:
    """Amount in cents where the text is a plain decimal with at most 2 places, else NA.
    (float64 is exact here: such amounts times 100 are integers far below 2**53.)"""
    ok = values.str.fullmatch(_MONEY.pattern)
    num = pd.to_numeric(values.where(ok), errors="coerce")
    return (num * 100).round().astype("Int64")


def _money(cents: pd.Series, raw: pd.Series) -> pd.Series:
    """Valid amounts as 'd.dd'; anything else exactly as delivered."""
    ok = cents.notna()
    c = cents.fillna(0).astype("int64")
    formatted = (c // 100).astype(str) + "." + (c % 100).astype(str).str.zfill(2)
    return formatted.where(ok, raw)


def _add_months(dates: pd.Series, months: pd.Series) -> pd.Series:
    """Calendar months (31 Jan + 1 month = 28/29 Feb), computed once per distinct pair."""
    pairs = pd.DataFrame({"d": dates, "m": months})
    uniq = pairs.dropna().drop_duplicates()
    uniq["due"] = [d + pd.DateOffset(months=int(m)) for d, m in zip(uniq["d"], uniq["m"])]
    return pairs.merge(uniq, on=["d", "m"], how="left")["due"].set_axis(dates.index)


def _stamp_map(dates: pd.Series, tz: ZoneInfo) -> pd.Series:
    """date -> 'YYYY-MM-DDT12:00:00-04:00' computed once per distinct date."""
    uniq = {d for d in dates.dropna().unique()}
    table = {d: dt.datetime.combine(pd.Timestamp(d).date(), TIME_OF_DAY, tz).isoformat() for d in uniq}
    return dates.map(table)


def _dates_or_raw(parsed: pd.Series, raw: pd.Series, kind: str, tz: ZoneInfo) -> pd.Series:
    """Formatted date/timestamp/month where the value parsed; the raw text otherwise
    (landing then quarantines the row under its date rule)."""
    if kind == "date":
        good = parsed.dt.strftime("%Y-%m-%d")
    elif kind == "month":
        good = parsed.dt.strftime("%Y-%m")
    else:
        good = _stamp_map(parsed, tz)
    return good.where(parsed.notna(), raw)


def build_deliveries(loans: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The three source frames (contract columns, text) for a set of loans."""
    program = reference.programs()[PROGRAM_CODE]
    tz = ZoneInfo(program.time_zone)
    approved = _parse_dates(loans["approved"])
    stamp = _dates_or_raw(approved, loans["approved"], "timestamp", tz)
    day = _dates_or_raw(approved, loans["approved"], "date", tz)
    mid = loans["merchant_id"]
    state = loans["state"].str.upper()
    amount_cents = _cents(loans["amount"])
    jobs = loans["jobs"].where(
        ~loans["jobs"].str.fullmatch(r"\d+\.0*"), loans["jobs"].str.replace(r"\.0*$", "", regex=True)
    )

    merchants = pd.DataFrame(
        {
            "merchant_id": mid,
            "program_code": PROGRAM_CODE,
            "business_name": loans["business_name"].where(loans["business_name"].ne(""), NO_NAME),
            "owner_name": "",
            "owner_phone": "",
            "owner_national_id": "",
            "region": ("US-" + state).where(state.ne(""), ""),
            "city": loans["city"],
            "business_type": business_type(loans["naics"]),
            "size_class": size_class(jobs, amount_cents),
            "registered_on": "",
            "enrolled_on": day,
            "status": "active",
            "updated_at": stamp,
        }
    )[contract.column_names("merchants")]

    # credit events: open, draw (and forgiveness) per loan
    term = pd.to_numeric(loans["term"].where(loans["term"].str.fullmatch(r"\d{1,3}")), errors="coerce")
    term = term.fillna(DEFAULT_TERM_MONTHS).astype(int)
    due = _add_months(approved, term)
    due_on = due.dt.strftime("%Y-%m-%d").where(due.notna(), "")
    undisbursed = _cents(loans["undisbursed"]).fillna(0)
    drawn_cents = (amount_cents - undisbursed).clip(lower=0)
    amount = _money(amount_cents, loans["amount"])
    drawn = _money(drawn_cents, loans["amount"])
    base = {"credit_line_id": mid, "merchant_id": mid, "currency": program.currency}
    opened = pd.DataFrame(
        {
            **base,
            "event_id": mid + ".open",
            "event_type": "line_opened",
            "event_at": stamp,
            "amount": amount,
            "annual_interest_rate": INTEREST_RATE,
            "due_on": "",
            "goods_category": "",
        }
    )
    draws = pd.DataFrame(
        {
            **base,
            "event_id": mid + ".draw",
            "event_type": "drawdown",
            "event_at": stamp,
            "amount": drawn,
            "annual_interest_rate": "",
            "due_on": due_on,
            "goods_category": "other",
        }
    )
    forgiven = loans["forgiveness_amount"].ne("") | loans["forgiveness_date"].ne("")
    f = loans[forgiven]
    f_dates = _parse_dates(f["forgiveness_date"])
    repay = pd.DataFrame(
        {
            "credit_line_id": f["merchant_id"],
            "merchant_id": f["merchant_id"],
            "currency": program.currency,
            "event_id": f["merchant_id"] + ".forgiven",
            "event_type": "repayment",
            "event_at": _dates_or_raw(f_dates, f["forgiveness_date"], "timestamp", tz),
            "amount": _money(_cents(f["forgiveness_amount"]), f["forgiveness_amount"]),
            "annual_interest_rate": "",
            "due_on": "",
            "goods_category": "",
        }
    )
    # Interleave per loan (open, draw, repayment) so a loan's events sit together.
    opened["_k"], draws["_k"], repay["_k"] = 0, 1, 2
    opened["_o"], draws["_o"] = range(len(opened)), range(len(draws))
    repay["_o"] = pd.Series(range(len(loans)), index=loans.index)[forgiven].to_numpy()
    events = pd.concat([opened, draws, repay], ignore_index=True).sort_values(["_o", "_k"], kind="stable")
    events = events[contract.column_names("credit_events")].reset_index(drop=True)

    reporting = loans["jobs"].ne("")
    r = loans[reporting]
    reports = pd.DataFrame(
        {
            "report_id": r["merchant_id"] + ".jobs",
            "merchant_id": r["merchant_id"],
            "period_month": _dates_or_raw(approved[reporting], r["approved"], "month", tz),
            "employees": jobs[reporting],
            "baseline_employees": jobs[reporting],
            "reported_at": stamp[reporting],
            "verification_status": "self_reported",
        }
    )[contract.column_names("employment_reports")]
    return {"merchants": merchants, "credit_events": events, "employment_reports": reports}


# --------------------------------------------------------------------------- checks


def expected_quarantine(frames: dict[str, pd.DataFrame], ds: str) -> dict[str, dict[str, int]]:
    """What landing will quarantine, by the contract's rules, for the warnings."""
    regions = set(reference.regions())
    m, e, r = frames["merchants"], frames["credit_events"], frames["employment_reports"]
    date_ok = lambda s: s.str.fullmatch(r"\d{4}-\d{2}-\d{2}") & s.le(ds)  # noqa: E731
    stamp_ok = lambda s: s.str.fullmatch(r"\d{4}-\d{2}-\d{2}T.*") & s.str[:10].le(ds)  # noqa: E731
    out = {
        "merchants": {
            "region_unknown": int((~m["region"].isin(regions)).sum()),
            "city_missing": int(m["city"].eq("").sum()),
            "enrolled_on_invalid": int((~date_ok(m["enrolled_on"])).sum()),
        },
        "credit_events": {
            "amount_invalid": int((~e["amount"].str.fullmatch(r"\d+\.\d{2}")).sum()),
            "event_at_invalid": int((~stamp_ok(e["event_at"])).sum()),
        },
        "employment_reports": {
            "employees_invalid": int((~r["employees"].str.fullmatch(r"\d{1,5}")).sum()),
            "reported_at_invalid": int((~stamp_ok(r["reported_at"])).sum()),
        },
    }
    return {k: {rule: n for rule, n in v.items() if n} for k, v in out.items()}


# --------------------------------------------------------------------------- writing


def _amount_total(amounts: pd.Series) -> str:
    """Sum of the delivered amounts that are plain decimals (-?d+[.dd]); anything else
    (exponent, 3 places, text) cannot be summed as written and counts as 0, as landing reads it."""
    plain = amounts.str.fullmatch(r"-?\d+(?:\.\d{1,2})?")
    negative = amounts.str.startswith("-")
    cents = _cents(amounts.where(plain & ~negative, "")).fillna(0).sum()
    cents -= _cents(amounts.where(plain & negative, "").str[1:]).fillna(0).sum()
    return str((Decimal(int(cents)) / 100).quantize(Decimal("0.01")))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """RFC 4180 via Arrow (fast): values quoted, empty values as bare empty fields (null)."""
    arrays = []
    for col in frame.columns:
        values = pa.array(frame[col].astype(str), type=pa.string())
        arrays.append(pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values))
    table = pa.Table.from_arrays(arrays, names=list(frame.columns))
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


@dataclass
class _Staged:
    source: str
    folder: Path
    tmp: Path
    sha256: str
    row_count: int
    amount_total: str | None


def _stage(p: Paths, source: str, ds: str, frame: pd.DataFrame) -> _Staged:
    folder = p.delivery_dir(source, ds)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{contract.data_file_name(source)}.tmp"
    _write_csv(frame, tmp)
    total = _amount_total(frame["amount"]) if source == "credit_events" else None
    return _Staged(source, folder, tmp, sha256_file(tmp), int(len(frame)), total)


def _existing_differs(st: _Staged) -> str | None:
    control = st.folder / contract.CONTROL_FILE
    if not control.exists():
        return None
    try:
        old = json.loads(control.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if old.get("sha256") == st.sha256:
        return None
    return f"{st.folder} already holds a different delivery ({old.get('row_count', '?')} rows)"


def _commit(st: _Staged, ds: str) -> Path:
    """Data file in place, then the control file, written last (extracts.md)."""
    data = st.folder / contract.data_file_name(st.source)
    control = st.folder / contract.CONTROL_FILE
    control.unlink(missing_ok=True)  # the delivery is incomplete until the new control file exists
    for stale in st.folder.glob(f"{st.source}.csv*"):
        if stale != data:
            stale.unlink()  # a .csv.gz from another producer would be a second data file
    os.replace(st.tmp, data)
    doc = {
        "source": st.source,
        "ds": ds,
        "schema_version": contract.SCHEMA_VERSION,
        "row_count": st.row_count,
        "sha256": st.sha256,
        "produced_at": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
    }
    if st.amount_total is not None:
        doc["amount_total"] = st.amount_total
    ctmp = st.folder / f".{contract.CONTROL_FILE}.tmp"
    ctmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(ctmp, control)
    return st.folder


def import_files(
    files: list[str | Path], drop: str | Path | None = None, ds: str | None = None, replace: bool = False
) -> ImportResult:
    """Import a set of PPP FOIA files as one delivery per source."""
    started = time.monotonic()
    if not files:
        raise PPPImportError("no files given")
    files = [Path(f) for f in files]
    seen: dict[str, Path] = {}
    for f in files:
        if not f.is_file():
            raise PPPImportError(f"{f}: no such file")
        digest = sha256_file(f)
        if digest in seen:
            raise PPPImportError(f"{f}: same content as {seen[digest]}; give each file once")
        seen[digest] = f
    frames = []
    for f in files:
        t = time.monotonic()
        frame = read_file(f)
        log.info(
            "read %s: %d loans (%s schema) in %.1fs",
            f,
            len(frame),
            frame["schema"].iat[0] if len(frame) else "?",
            time.monotonic() - t,
        )
        frames.append(frame)
    loans = pd.concat(frames, ignore_index=True)
    dup = loans["merchant_id"].duplicated(keep=False)
    if dup.any():
        first = loans[dup].iloc[0]
        raise PPPImportError(
            f"{first['file']} line {first['line']}: loan {first['merchant_id']} appears "
            f"{int(dup.sum())} times across the files: the files overlap"
        )

    dates = pd.concat([_parse_dates(loans["approved"]), _parse_dates(loans["forgiveness_date"])])
    cutoff = dates.max()
    if ds is None:
        if pd.isna(cutoff):
            raise PPPImportError("no readable DateApproved in the files: pass --ds")
        ds = cutoff.strftime("%Y-%m-%d")
    else:
        parse_ds(ds)
        if pd.notna(cutoff) and cutoff.strftime("%Y-%m-%d") > ds:
            later = int((dates > pd.Timestamp(ds)).sum())
            raise PPPImportError(
                f"--ds {ds} is before the data's cut-off {cutoff:%Y-%m-%d} ({later} approval or "
                "forgiveness dates after it): those rows would break 'not after ds'"
            )

    t = time.monotonic()
    deliveries = build_deliveries(loans)
    log.info("mapped %d loans in %.1fs", len(loans), time.monotonic() - t)
    quarantine = expected_quarantine(deliveries, ds)
    limit = quarantine_share_limit()
    for source, rules in quarantine.items():
        n = sum(rules.values())
        share = n / max(len(deliveries[source]), 1)
        msg = (
            f"{source}: {n} of {len(deliveries[source])} rows ({share:.1%}) break the contract and will be "
            f"quarantined by landing: {rules}"
        )
        if share > limit:
            log.warning(
                "%s; that is more than the limit of %.0f%% (PROGRAM_REPORTING_MAX_QUARANTINE_SHARE), so "
                "landing will reject this delivery whole",
                msg,
                limit * 100,
            )
        else:
            log.info(msg)
    cents = _cents(loans["amount"])
    flags = {
        "amount_0_to_2_dollars_kept": int((cents <= TINY_AMOUNT_CENTS).sum()),
        "amount_from_loan_range_lower_bound": int(loans["amount_from_range"].sum()),
        "no_jobs_value_no_report": int(loans["jobs"].eq("").sum()),
        "naics_missing_business_type_other": int(loans["naics"].eq("").sum()),
        "exact_duplicate_rows_kept": int(loans["merchant_id"].str.fullmatch(r"PPP20-[0-9a-f]{20}-\d+").sum()),
    }
    if flags["amount_0_to_2_dollars_kept"]:
        tiny = loans[cents <= TINY_AMOUNT_CENTS]
        log.warning(
            "%d loans of $0-$2 kept as delivered (SBA counted them), e.g. %s line %s",
            len(tiny),
            tiny["file"].iat[0],
            tiny["line"].iat[0],
        )

    p = default_paths()
    if drop is not None:
        p = Paths(drop=Path(drop).resolve(), home=p.home)
    # Stage every source and check before committing any, so a refusal leaves nothing half-written.
    staged = [_stage(p, source, ds, deliveries[source]) for source in contract.COLUMNS]
    conflicts = [c for c in (_existing_differs(st) for st in staged) if c]
    if conflicts and not replace:
        for st in staged:
            st.tmp.unlink(missing_ok=True)
        raise PPPImportError(
            "; ".join(conflicts) + ". A new delivery for the same ds replaces the old one entirely (extracts.md), "
            "which would remove the loans of the files imported before: import all files of this date in one "
            "command (import-ppp A.csv B.csv ...), or pass --replace."
        )
    dirs = {}
    for st in staged:  # merchants first: events never wait for their merchant
        dirs[st.source] = _commit(st, ds)
        log.info("wrote %s: %d rows, sha256 %s", dirs[st.source], st.row_count, st.sha256[:12])
    result = ImportResult(
        ds=ds,
        files=[str(f) for f in files],
        rows={s: len(d) for s, d in deliveries.items()},
        delivery_dirs=dirs,
        expected_quarantine=quarantine,
        flags=flags,
        seconds=time.monotonic() - started,
    )
    log.info("imported %d loans from %d file(s) as ds=%s in %.1fs", len(loans), len(files), ds, result.seconds)
    return result
