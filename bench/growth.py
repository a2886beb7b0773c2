"""How cost grows with scale: one Markdown row per benchmark result in
bench/results/ (or the files given), ordered by days then merchants.

    .venv/bin/python bench/growth.py [bench/results/*.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_bench import BUILD_FLOOR, LAND_AT_ONCE, LAND_FLOOR, NIGHT, PREPARATION, REFERENCES  # noqa: E402

LEGACY_LAND_FLOOR = "land floor (duckdb read_csv)"  # runs before 2026-11-26: all days in one read
# Runs before 2026-11-26 measured the landing floor as one read of all the
# days' files at once; later runs measure it day by day, and that one beside it.
COLUMNS = [
    (("land (history)",), "land"),
    ((LAND_FLOOR,), "read_csv day by day (floor)"),
    ((LAND_AT_ONCE, LEGACY_LAND_FLOOR), "read_csv all days at once"),
    (("build (dbt, full)",), "dbt full build"),
    ((BUILD_FLOOR,), "SQL floor"),
    ((NIGHT,), "night"),
]


def _seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.1f} min"


def table(files: list[Path]) -> str:
    runs = [json.loads(f.read_text()) for f in files]
    runs.sort(key=lambda r: (r["days"], r["merchants"], r["date"]))
    head = (
        ["merchants x days", "date", "rows landed"]
        + [c for _k, c in COLUMNS]
        + ["published", "landing / floor (day by day)", "night / full build", "peak RSS", "warehouse"]
    )
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for r in runs:
        by = {s["name"]: s for s in r["stages"]}
        land = by.get("land (history)", {})
        # the pipeline's peak: not the simulator's, nor the floors' (references, run beside it)
        peak = max(
            (s.get("peak_rss_bytes") or 0)
            for s in r["stages"]
            if s["name"] not in (*PREPARATION, LEGACY_LAND_FLOOR, *REFERENCES)
        )
        history = " (one file)" if r.get("history") == "one-file" else ""
        cells = [f"{r['merchants']:,} x {r['days']}{history}", r["date"], f"{land.get('rows') or 0:,}"]
        for names, _c in COLUMNS:
            stage = next((by[k] for k in names if k in by), {})
            error = stage.get("error", "")
            cells.append(
                "not run"
                if not stage
                else "skipped"
                if error.startswith("skipped")
                else "failed (out of memory)"
                if "OutOfMemory" in error
                else "failed"
                if error
                else _seconds(stage.get("seconds"))
            )
        floor = by.get(LAND_FLOOR)
        ratio = f"{land['rows_per_second'] / floor['rows_per_second']:.2f}" if floor and land else ""
        full, night = by.get("build (dbt, full)", {}).get("seconds"), by.get(NIGHT, {}).get("seconds")
        cells += [
            "yes" if r["targets"].get("night published") else "NO",
            ratio,
            f"{night / full:.2f}" if full and night else "",
            f"{peak / 2**30:.1f} GiB",
            f"{r.get('warehouse_bytes', 0) / 2**30:.2f} GiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_order(f: Path) -> tuple:
    """A day's runs in the order they ran: <date>-<scale>-1 ... -10 ..., then
    the unsuffixed latest (not the names' order, where -10 comes before -2)."""
    m = re.fullmatch(r"(.+?x\d+(?:-one-file)?)(?:-(\d+))?", f.stem)
    return (m.group(1), m.group(2) is None, int(m.group(2) or 0)) if m else (f.stem, True, 0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    files = [Path(a) for a in args] or sorted((HERE / "results").glob("*.json"), key=run_order)
    if not files:
        print("no results: run `make bench` first", file=sys.stderr)
        return 1
    print(table(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
