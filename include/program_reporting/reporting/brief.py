"""The one-page KPI brief for a program director: `home/exports/kpi_brief.html`.

Self-contained HTML (inline CSS and SVG, no script, no network), written
from the published set only: per program, the latest figures and their
trend - enrolment, credit drawn and outstanding, PAR30, jobs retained
against the program's target (5,000,000 for SPARK-2020). Rates are stored
as fractions (kpis.md) and shown as percentages here.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

COLORS = ("#1f5fa8", "#d9822b", "#2a9d8f", "#c0392b")


def brief_path(paths: Paths | None = None) -> Path:
    return (paths or default_paths()).exports / "kpi_brief.html"


def write_brief(paths: Paths | None = None) -> Path:
    """Render the brief from current.duckdb; replaces the file atomically."""
    p = paths or default_paths()
    if not p.current_db.exists():
        raise FileNotFoundError(f"nothing published yet: {p.current_db} does not exist")
    con = duckdb.connect(str(p.current_db), read_only=True)
    try:
        daily = _rows(con, "select * from kpi_program_daily order by program_code, as_of_date")
        targets = _rows(con, "select * from kpi_target_progress order by program_code, as_of_date, metric")
        run = _run_info(con)
    finally:
        con.close()
    page = render(daily, targets, run)
    out = brief_path(p)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    log.info("KPI brief written: %s", out)
    return out


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _run_info(con: duckdb.DuckDBPyConnection) -> dict:
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    if "run_info" not in tables:
        return {}
    rows = _rows(con, "select * from run_info")
    return rows[0] if rows else {}


# --- rendering ------------------------------------------------------------------

def render(daily: list[dict], targets: list[dict], run: dict | None = None) -> str:
    programs: dict[str, list[dict]] = {}
    for row in daily:
        programs.setdefault(row["program_code"], []).append(row)
    currency = _currencies()
    sections = [
        _program_section(code, rows, [t for t in targets if t["program_code"] == code], currency.get(code, ""))
        for code, rows in programs.items()
    ]
    run = run or {}
    run_line = ", ".join(f"{k}: {_text(v)}" for k, v in run.items() if v is not None)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(sections) or "<p>The published set holds no program rows yet.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Program KPI brief</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 24px auto; max-width: 1080px; padding: 0 16px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #e3e7ee; padding-bottom: 4px; }}
.meta {{ color: #5b6576; font-size: 12px; }}
.cards {{ display: grid; grid-template-columns: repeat(5, 1fr); gap: 10px; margin: 10px 0; }}
.card {{ background: #f5f7fa; border-radius: 6px; padding: 8px 10px; }}
.card .v {{ font-size: 19px; font-weight: 600; }} .card .l {{ color: #5b6576; font-size: 12px; }}
.charts {{ display: grid; grid-template-columns: repeat(2, 1fr); gap: 12px; }}
.chart h3 {{ font-size: 13px; margin: 6px 0 2px; color: #38414f; }}
.progress {{ background: #e3e7ee; border-radius: 4px; height: 14px; overflow: hidden; }}
.progress span {{ display: block; height: 100%; background: #2a9d8f; }}
.legend span {{ margin-right: 12px; font-size: 12px; }} .legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
@media print {{ body {{ margin: 0; }} .charts {{ grid-template-columns: repeat(2, 1fr); }} }}
</style></head><body>
<h1>Program KPI brief</h1>
<div class="meta">From the published, validated KPI set. {html.escape(run_line)} &middot; generated {generated}.
Rates are shown as percentages; money in the program's currency.</div>
{body}
</body></html>
"""


def _currencies() -> dict[str, str]:
    try:
        from program_reporting.core.reference import programs

        return {code: p.currency for code, p in programs().items()}
    except Exception:  # the brief must render even without the seeds
        return {}


def _program_section(code: str, rows: list[dict], targets: list[dict], currency: str) -> str:
    last = rows[-1]
    dates = [r["as_of_date"] for r in rows]
    jobs_target = next(
        (t["target_value"] for t in reversed(targets) if t["metric"] == "jobs_retained" and t["target_value"]), None
    )
    money = lambda v: _money(v, currency)  # noqa: E731
    cards = [
        ("Enrolled merchants", _int(last.get("enrolled_merchants"))),
        ("Credit drawn to date", money(last.get("drawn_to_date"))),
        ("Outstanding balance", money(last.get("outstanding_balance"))),
        ("PAR30", _pct(last.get("par30_rate"))),
        ("Jobs retained", _int(last.get("jobs_retained"))),
    ]
    cards_html = "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div><div class="l">{html.escape(label)}</div></div>'
        for label, v in cards
    )
    charts = [
        ("Enrolled merchants", [("enrolled", _series(rows, "enrolled_merchants"))], _int),
        (f"Credit drawn and outstanding ({currency})" if currency else "Credit drawn and outstanding",
         [("drawn to date", _series(rows, "drawn_to_date")), ("outstanding", _series(rows, "outstanding_balance"))],
         _compact),
        ("PAR30 (share of outstanding 30+ days past due)", [("PAR30", _series(rows, "par30_rate"))], _pct),
    ]
    jobs = _series(rows, "jobs_retained")
    charts_html = "".join(_chart(title, dates, series, fmt) for title, series, fmt in charts)
    charts_html += _jobs_block(dates, jobs, jobs_target)
    return f"""<section>
<h2>{html.escape(code)} <span class="meta">as of {html.escape(str(last["as_of_date"]))}</span></h2>
<div class="cards">{cards_html}</div>
<div class="charts">{charts_html}</div>
</section>"""


def _jobs_block(dates: Sequence, jobs: list[float | None], target: Decimal | None) -> str:
    latest = next((v for v in reversed(jobs) if v is not None), None)
    if target:
        share = (latest or 0) / float(target)
        bar = (f'<div class="progress" title="{share:.1%}"><span style="width:{min(share, 1) * 100:.2f}%"></span></div>'
               f'<div class="meta">{_int(latest)} of {_int(target)} jobs retained: {share:.1%} of the target</div>')
    else:
        bar = '<div class="meta">No jobs target for this program.</div>'
    chart = _svg(dates, [("jobs retained", jobs)], _int, reference=float(target) if target else None)
    return f'<div class="chart"><h3>Jobs retained against the target</h3>{bar}{chart}</div>'


def _chart(title: str, dates: Sequence, series: list[tuple[str, list]], fmt) -> str:
    legend = ""
    if len(series) > 1:
        legend = '<div class="legend">' + "".join(
            f'<span><i style="background:{COLORS[i % len(COLORS)]}"></i>{html.escape(name)}</span>'
            for i, (name, _) in enumerate(series)
        ) + "</div>"
    return f'<div class="chart"><h3>{html.escape(title)}</h3>{legend}{_svg(dates, series, fmt)}</div>'


def _svg(dates: Sequence, series: list[tuple[str, list]], fmt, reference: float | None = None,
         width: int = 500, height: int = 150) -> str:
    left, right, top, bottom = 62, 10, 8, 22
    values = [v for _, vs in series for v in vs if v is not None]
    if not values:
        return '<div class="meta">no data yet</div>'
    lo = min(0.0, min(values))
    hi = max(values + ([reference] if reference is not None and reference <= 1.5 * max(values) else []))
    if hi <= lo:  # a flat series: a small span, so that 0% reads as 0% and not as a 100% scale
        hi = lo + (0.05 if fmt is _pct else 1)
    n = len(dates)
    x = lambda i: left + (width - left - right) * (i / (n - 1) if n > 1 else 0.5)  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        v = lo + (hi - lo) * frac
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e7ee"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" fill="#5b6576">'
                     f'{html.escape(fmt(v))}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="10" fill="#5b6576">{html.escape(str(dates[0]))}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 6}" font-size="10" text-anchor="end" fill="#5b6576">'
                 f'{html.escape(str(dates[-1]))}</text>')
    if reference is not None and reference <= hi:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(reference):.1f}" y2="{y(reference):.1f}" '
                     f'stroke="#c0392b" stroke-dasharray="4 3"/>')
    for i, (name, vs) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        for segment in _segments(vs):
            pts = " ".join(f"{x(j):.1f},{y(v):.1f}" for j, v in segment)
            if len(segment) == 1:
                j, v = segment[0]
                parts.append(f'<circle cx="{x(j):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}">'
                             f'<title>{html.escape(name)}</title></polyline>')
    parts.append("</svg>")
    return "".join(parts)


def _segments(values: Iterable) -> list[list[tuple[int, float]]]:
    """Runs of non-null points (a null rate breaks the line rather than drawing 0)."""
    out: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                out.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        out.append(current)
    return out


def _series(rows: list[dict], column: str) -> list[float | None]:
    return [None if r.get(column) is None else float(r[column]) for r in rows]


def _text(v) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _int(v) -> str:
    return "–" if v is None else f"{float(v):,.0f}"


def _pct(v) -> str:
    return "–" if v is None else f"{float(v) * 100:.2f}%"


def _money(v, currency: str) -> str:
    return "–" if v is None else f"{_compact(v)} {currency}".strip()


def _compact(v) -> str:
    if v is None:
        return "–"
    v = float(v)
    for size, suffix in ((1e12, "T"), (1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:,.2f}{suffix}"
    return f"{v:,.2f}"
