"""The one-page KPI brief for a program director: `home/exports/kpi_brief.html`.

Self-contained HTML (inline CSS and SVG, no script, no network), written
from the published set only, from templates/brief.html.j2 with charts drawn
by matplotlib's SVG backend: per program, the latest figures and their
trend - enrolment, credit drawn and outstanding, PAR30, jobs retained
against the program's target (5,000,000 for SPARK-2020). Rates are stored
as fractions (kpis.md) and shown as percentages here.

Restated dates are marked: the dates on which the publication of the
current set changed at least one cell that an earlier publication had shown
(its report's restatements section, restatements.py), listed
under the program's heading and drawn as dotted lines on its charts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import duckdb
from markupsafe import Markup, escape

from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths
from program_reporting.reporting.templating import render as render_template

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
    page = render(daily, targets, run, restated_dates(run.get("run_id"), p))
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


def restated_dates(run_id: str | None, paths: Paths) -> dict[str, dict[str, int]] | None:
    """{program: {date: restated cells}} from the report of the run that published
    the current set; None when that report or its restatements cannot be read."""
    if not run_id:
        return None
    try:
        doc = json.loads((paths.reports / str(run_id) / "report.json").read_text(encoding="utf-8"))
        section = doc.get("restatements") or {}
        if section.get("status") not in ("computed", "first publication"):
            return None
        out: dict[str, dict[str, int]] = {}
        for d in section.get("dates") or []:
            out.setdefault(str(d["program_code"]), {})[str(d["as_of_date"])] = int(d["cells"])
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("the brief marks no restated dates: the report of run %s is unreadable (%s)", run_id, exc)
        return None


# --- rendering ------------------------------------------------------------------


def render(
    daily: list[dict],
    targets: list[dict],
    run: dict | None = None,
    restated: dict[str, dict[str, int]] | None = None,
) -> str:
    """The page. `restated`: {program: {date: cells}} the publication restated
    (restated_dates); None when unknown, which the page says."""
    programs: dict[str, list[dict]] = {}
    for row in daily:
        programs.setdefault(row["program_code"], []).append(row)
    currency = _currencies()
    run = run or {}
    return render_template(
        "brief.html.j2",
        programs=[
            _program(
                code,
                rows,
                [t for t in targets if t["program_code"] == code],
                currency.get(code, ""),
                (restated or {}).get(code, {}),
            )
            for code, rows in programs.items()
        ],
        restated_known=restated is not None,
        run_line=", ".join(f"{k}: {_text(v)}" for k, v in run.items() if v is not None),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _currencies() -> dict[str, str]:
    try:
        from program_reporting.core.reference import programs

        return {code: p.currency for code, p in programs().items()}
    except Exception:  # the brief must render even without the seeds
        return {}


def _program(code: str, rows: list[dict], targets: list[dict], currency: str, restated: dict[str, int]) -> dict:
    """What the brief shows of one program: its latest figures and their charts,
    the dates the publication restated marked."""
    last = rows[-1]
    dates = [r["as_of_date"] for r in rows]
    marks = [i for i, d in enumerate(dates) if _text(d) in restated]
    jobs_target = next(
        (t["target_value"] for t in reversed(targets) if t["metric"] == "jobs_retained" and t["target_value"]), None
    )
    money = lambda v: _money(v, currency)  # noqa: E731
    charts = [
        ("Enrolled merchants", [("enrolled", _series(rows, "enrolled_merchants"))], _int),
        (
            f"Credit drawn and outstanding ({currency})" if currency else "Credit drawn and outstanding",
            [("drawn to date", _series(rows, "drawn_to_date")), ("outstanding", _series(rows, "outstanding_balance"))],
            _compact,
        ),
        ("PAR30 (share of outstanding 30+ days past due)", [("PAR30", _series(rows, "par30_rate"))], _pct),
    ]
    chart_id = lambda n: f"chart-{_id_part(code)}-{n}"  # noqa: E731 - unique in the page: charts share one document
    return {
        "code": code,
        "as_of": str(last["as_of_date"]),
        "cards": [
            ("Enrolled merchants", _int(last.get("enrolled_merchants"))),
            ("Credit drawn to date", money(last.get("drawn_to_date"))),
            ("Outstanding balance", money(last.get("outstanding_balance"))),
            ("PAR30", _pct(last.get("par30_rate"))),
            ("Jobs retained", _int(last.get("jobs_retained"))),
        ],
        "charts": [
            {
                "title": title,
                "series": [(name, COLORS[i % len(COLORS)]) for i, (name, _) in enumerate(series)],
                "svg": _svg(chart_id(n), title, dates, series, fmt, marks=marks),
            }
            for n, (title, series, fmt) in enumerate(charts)
        ],
        "jobs": _jobs(chart_id(len(charts)), dates, _series(rows, "jobs_retained"), jobs_target, marks),
        "restated": [(day, cells) for day, cells in sorted(restated.items())],
        "anchor": _id_part(code),
    }


def _jobs(
    chart_id: str, dates: Sequence, jobs: list[float | None], target: Decimal | None, marks: Sequence[int] = ()
) -> dict:
    latest = next((v for v in reversed(jobs) if v is not None), None)
    share = (latest or 0) / float(target) if target else 0.0
    return {
        "target": _int(target) if target else None,
        "latest": _int(latest),
        "share": f"{share:.1%}",
        "bar_width": f"{min(share, 1) * 100:.2f}%",
        "svg": _svg(
            chart_id,
            "Jobs retained against the target",
            dates,
            [("jobs retained", jobs)],
            _int,
            reference=float(target) if target else None,
            marks=marks,
        ),
    }


def _id_part(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in text)


# The brief's look, kept from the hand-drawn charts it replaced: 500 x 150 units (1 unit = 1 pt), 10-unit labels.
WIDTH, HEIGHT = 500, 150
LEFT, RIGHT, TOP, BOTTOM = 62, 10, 8, 22
GRID, LABEL, REFERENCE, RESTATED = "#e3e7ee", "#5b6576", "#c0392b", "#8e44ad"
CHART_STYLE = {
    "svg.hashsalt": "program-reporting-kpi-brief",  # element ids from content, not from a random salt
    "svg.fonttype": "none",  # text stays text: small, selectable, read by screen readers
    # DejaVu Sans ships with matplotlib: layout never depends on the machine's fonts
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 10,
}
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}  # no timestamp, no version, no RDF


def _svg(
    chart_id: str,
    title: str,
    dates: Sequence,
    series: list[tuple[str, list]],
    fmt,
    reference: float | None = None,
    marks: Sequence[int] = (),
) -> Markup | None:
    """A line chart as inline SVG, identical bytes for identical data; None when
    there is nothing to draw. `marks`: positions of restated dates, drawn as dotted lines."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not values:
        return None
    lo = min(0.0, min(values))
    hi = max(values + ([reference] if reference is not None and reference <= 1.5 * max(values) else []))
    if hi <= lo:  # a flat series: a small span, so that 0% reads as 0% and not as a 100% scale
        hi = lo + (0.05 if fmt is _pct else 1)

    # Imported here, not with the module: matplotlib takes seconds to import, and only a drawn chart needs it.
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(CHART_STYLE):
        fig = Figure(figsize=(WIDTH / 72, HEIGHT / 72))
        fig.patch.set_visible(False)
        ax = fig.add_axes(
            (LEFT / WIDTH, BOTTOM / HEIGHT, (WIDTH - LEFT - RIGHT) / WIDTH, (HEIGHT - TOP - BOTTOM) / HEIGHT)
        )
        ax.patch.set_visible(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        n = len(dates)
        ax.set_xlim(*((0, n - 1) if n > 1 else (-1, 1)))  # a single date sits in the middle
        ax.set_xticks([])
        ticks = [lo, (lo + hi) / 2, hi]
        ax.set_ylim(lo, hi)
        ax.set_yticks(ticks, [fmt(v) for v in ticks])
        ax.tick_params(axis="y", length=0, pad=4, labelcolor=LABEL)
        for v in ticks:
            ax.axhline(v, color=GRID, linewidth=1, clip_on=False, zorder=0)
        fig.text(LEFT / WIDTH, 6 / HEIGHT, str(dates[0]), color=LABEL, ha="left", va="baseline")
        fig.text((WIDTH - RIGHT) / WIDTH, 6 / HEIGHT, str(dates[-1]), color=LABEL, ha="right", va="baseline")
        for x in marks:
            ax.axvline(x, color=RESTATED, linewidth=1, linestyle=(0, (1, 2)), clip_on=False, zorder=1)
        if reference is not None and reference <= hi:
            ax.axhline(reference, color=REFERENCE, linewidth=1, linestyle=(0, (4, 3)), clip_on=False, zorder=1)
        for i, (_, vs) in enumerate(series):
            color = COLORS[i % len(COLORS)]
            for segment in _segments(vs):
                xs, ys = zip(*segment, strict=True)
                if len(segment) == 1:
                    ax.plot(
                        xs,
                        ys,
                        linestyle="none",
                        marker="o",
                        markersize=5,
                        markeredgewidth=0,
                        color=color,
                        clip_on=False,
                        zorder=2,
                    )
                else:
                    ax.plot(xs, ys, color=color, linewidth=2, clip_on=False, zorder=2)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata=NO_METADATA)
    return _inline(out.getvalue(), chart_id, title)


def _inline(svg: str, chart_id: str, title: str) -> Markup:
    """matplotlib's standalone SVG file as an element of the HTML page."""
    svg = svg[svg.index("<svg") :]  # the XML declaration and DOCTYPE belong to files, not to an HTML body
    # HTML's parser puts xlink:href in its namespace itself; the declaration would be the page's only URL.
    svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "", 1)
    # Every chart numbers its groups, markers and clip paths alike: prefix them so ids stay unique in the page.
    svg = re.sub(r'(\bid="|href="#|url\(#)', rf"\1{chart_id}-", svg)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    return Markup(svg)


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
