"""How much of the SBA's published PPP figures do the loaded files cover?

Sets the published warehouse figures per state (kpi_segment_daily of
current.duckdb, program PPP-2020: open credit lines = loans, credit_limit_total
= approved dollars, summed over the state's segments) against the SBA's "PPP
Report - Approvals through 06/30/2020" state table, for the same date. The July
2020 loan-level files hold only loans under $150,000 (86.5% of loans, ~27% of
dollars nationally), so a state fully loaded from its foia_up_to_150k file
shows a high loan share and a low dollar share.

Run after a published run:  program-reporting import-ppp --compare [--date 2020-06-30]
Writes $PROGRAM_REPORTING_HOME/reports/ppp_comparison/ppp_comparison_<date>.{csv,md,html}.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from decimal import Decimal
from pathlib import Path

import duckdb

from program_reporting.core.settings import REPO_ROOT, Paths, parse_ds
from program_reporting.core.settings import paths as default_paths
from program_reporting.reporting.templating import render

log = logging.getLogger(__name__)

PROGRAM_CODE = "PPP-2020"
DEFAULT_SBA_REPORT = (
    REPO_ROOT.parent / "shared" / "realdata" / "ppp" / "sba_reports" / "sba_ppp_report_20200630_state.csv"
)
COLUMNS = [
    "region",
    "state",
    "warehouse_as_of",
    "warehouse_loans",
    "warehouse_dollars",
    "sba_loans",
    "sba_dollars",
    "loan_share",
    "dollar_share",
]


def read_sba_state_table(path: str | Path) -> dict[str, tuple[int, Decimal]]:
    """State -> (LoanCount, NetDollars) of an SBA report's state table."""
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            out[row["State"].strip()] = (int(row["LoanCount"]), Decimal(row["NetDollars"]))
    return out


def warehouse_by_state(current_db: Path, as_of: str) -> tuple[str | None, dict[str, tuple[int, Decimal]]]:
    """Region -> (open credit lines, credit_limit_total) on the latest published date <= as_of."""
    if not current_db.exists():
        raise FileNotFoundError(
            f"{current_db}: nothing published yet; run the pipeline first (program-reporting run --ds YYYY-MM-DD)"
        )
    con = duckdb.connect(str(current_db), read_only=True)
    try:
        day = con.execute(
            "select max(as_of_date) from kpi_segment_daily where program_code = ? and as_of_date <= ?",
            [PROGRAM_CODE, as_of],
        ).fetchone()[0]
        if day is None:
            return None, {}
        rows = con.execute(
            """select region, sum(open_credit_lines), sum(credit_limit_total)
               from kpi_segment_daily where program_code = ? and as_of_date = ?
               group by region order by region""",
            [PROGRAM_CODE, day],
        ).fetchall()
    finally:
        con.close()
    return str(day), {r: (int(n or 0), Decimal(str(d or 0))) for r, n, d in rows}


def _share(part, whole) -> Decimal | None:
    return None if not whole else (Decimal(part) / Decimal(whole)).quantize(Decimal("0.000001"))


def compare(as_of: str = "2020-06-30", sba_report: str | Path | None = None, p: Paths | None = None) -> list[dict]:
    parse_ds(as_of)
    p = p or default_paths()
    sba = read_sba_state_table(sba_report or DEFAULT_SBA_REPORT)
    day, wh = warehouse_by_state(p.current_db, as_of)
    rows = []
    for region, (loans, dollars) in sorted(wh.items()):
        state = region.split("-", 1)[1] if region.startswith("US-") else region
        sba_loans, sba_dollars = sba.get(state, (None, None))
        rows.append(
            {
                "region": region,
                "state": state,
                "warehouse_as_of": day,
                "warehouse_loans": loans,
                "warehouse_dollars": dollars,
                "sba_loans": sba_loans,
                "sba_dollars": sba_dollars,
                "loan_share": _share(loans, sba_loans) if sba_loans is not None else None,
                "dollar_share": _share(dollars, sba_dollars) if sba_dollars is not None else None,
            }
        )
    if rows:
        matched = [r for r in rows if r["sba_loans"] is not None]
        tl = sum(r["warehouse_loans"] for r in matched)
        td = sum((r["warehouse_dollars"] for r in matched), Decimal(0))
        sl = sum(r["sba_loans"] for r in matched)
        sd = sum((r["sba_dollars"] for r in matched), Decimal(0))
        rows.append(
            {
                "region": "TOTAL",
                "state": "loaded states",
                "warehouse_as_of": day,
                "warehouse_loans": tl,
                "warehouse_dollars": td,
                "sba_loans": sl,
                "sba_dollars": sd,
                "loan_share": _share(tl, sl),
                "dollar_share": _share(td, sd),
            }
        )
    return rows


def _fmt(v) -> str:
    return "" if v is None else str(v)


def _pct(v) -> str:
    return "n/a" if v is None else f"{float(v) * 100:.1f}%"


def write_comparison(
    as_of: str = "2020-06-30", sba_report: str | Path | None = None, p: Paths | None = None
) -> dict[str, Path]:
    p = p or default_paths()
    rows = compare(as_of, sba_report, p)
    out_dir = p.reports / "ppp_comparison"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ppp_comparison_{as_of}"
    source = Path(sba_report or DEFAULT_SBA_REPORT).name
    written = dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")

    with open(f"{stem}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(r[c]) for c in COLUMNS])

    title = f"PPP-2020: published warehouse figures vs. the SBA state table, {as_of}"
    note = (
        "Warehouse: published kpi_segment_daily (open credit lines = loans, credit_limit_total = dollars) "
        f"on {rows[0]['warehouse_as_of'] if rows else 'no published date'}. SBA: {source} (approvals through "
        "06/30/2020, all loan sizes). The July 2020 loan-level files for loans under $150,000 cover about 86.5% "
        "of loans but only about 27% of dollars nationally; loans of $150,000 and more are in separate "
        "files with a loan-size range instead of an amount."
    )
    head = ["region", "warehouse loans", "SBA loans", "loan share", "warehouse dollars", "SBA dollars", "dollar share"]

    def cells(r):
        return [
            r["region"],
            f"{r['warehouse_loans']:,}",
            "" if r["sba_loans"] is None else f"{r['sba_loans']:,}",
            _pct(r["loan_share"]),
            f"{r['warehouse_dollars']:,.2f}",
            "" if r["sba_dollars"] is None else f"{r['sba_dollars']:,.0f}",
            _pct(r["dollar_share"]),
        ]

    md = [f"# {title}", "", note, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    if not rows:
        md.append("\nNo PPP-2020 figures are published for this date.")
    md += ["", f"Written {written}."]
    Path(f"{stem}.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    Path(f"{stem}.html").write_text(
        render(
            "ppp_comparison.html.j2", title=title, note=note, head=head, rows=[cells(r) for r in rows], written=written
        ),
        encoding="utf-8",
    )
    log.info("PPP comparison for %s: %d state(s) -> %s.{csv,md,html}", as_of, len(rows) - (1 if rows else 0), stem)
    return {"csv": Path(f"{stem}.csv"), "md": Path(f"{stem}.md"), "html": Path(f"{stem}.html"), "rows": rows}
