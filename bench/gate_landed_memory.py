"""The landed gate's peak memory and time on one large credit_events delivery.

  python bench/gate_landed_memory.py --events 5000000 [--events 20000000 ...]
      [--batch-rows N] [--duckdb-memory-limit 4GB] [--work DIR] [--keep]

For each size: writes a delivery of that many credit events (and small
merchant and employment deliveries) with DuckDB (tests/helpers/deliveries.py), lands
the three with the real landing code, then runs gate.validate_landed in a
child process and reports the child's wall time, CPU time and peak RSS
(its own VmHWM: nothing else runs in that process). --batch-rows and
--duckdb-memory-limit set PROGRAM_REPORTING_GATE_BATCH_ROWS and
PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT for the child (default: the settings'
defaults). Prints one JSON object per size; the last line is a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' helpers package

from helpers.deliveries import write_generated_delivery  # noqa: E402

DS = "2020-06-03"
MERCHANTS = 1000

# Run in the child: the gate alone, measured from inside.
# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's RSS,
# and the parent has just landed the delivery.
CHILD = """
import json, re, resource, sys, time
from pathlib import Path
from program_reporting.validation import gate
started = time.monotonic()
result = gate.validate_landed(sys.argv[1])
rows = {r.check_id: r for r in result.results}
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({
    "seconds": round(time.monotonic() - started, 1),
    "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),  # on a busy machine, steadier
    "peak_rss_bytes": peak_kib * 1024,
    "passed": result.passed, "checks": len(result.results), "evaluated": result.evaluated,
    "event_rows_checked": (rows["c_event_id_unique"].observed_value or {}).get("rows"),
    "reason": result.reason(),
}))
"""


def land(drop: Path, home: Path, events: int) -> float:
    """Write and land the three deliveries of DS; returns the seconds landing took."""
    os.environ["PROGRAM_REPORTING_DROP"], os.environ["PROGRAM_REPORTING_HOME"] = str(drop), str(home)
    from program_reporting.landing import land as landing

    write_generated_delivery(drop, "merchants", DS, MERCHANTS)
    write_generated_delivery(drop, "credit_events", DS, events, merchants=MERCHANTS)
    write_generated_delivery(drop, "employment_reports", DS, MERCHANTS, merchants=MERCHANTS)
    started = time.monotonic()
    for source in ("merchants", "credit_events", "employment_reports"):
        record = landing.land(source, DS)
        if record["loaded"] != record["delivered"]:
            raise RuntimeError(f"{source}: {record['delivered'] - record['loaded']} rows did not load: {record}")
    return time.monotonic() - started


def measure_gate(
    drop: Path, home: Path, batch_rows: int | None = None, duckdb_memory_limit: str | None = None, timeout: float = 3600
) -> dict:
    """validate_landed(DS) in a child process: its seconds, peak RSS and verdict."""
    env = dict(os.environ, PROGRAM_REPORTING_DROP=str(drop), PROGRAM_REPORTING_HOME=str(home))
    if batch_rows:
        env["PROGRAM_REPORTING_GATE_BATCH_ROWS"] = str(batch_rows)
    if duckdb_memory_limit:
        env["PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT"] = duckdb_memory_limit
    proc = subprocess.run([sys.executable, "-c", CHILD, DS], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the gate failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    # the verdict is the JSON object on the last line (DuckDB may have drawn progress bars before it)
    last = proc.stdout.replace("\r", "\n").strip().splitlines()[-1]
    return json.loads(last[last.index("{") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, action="append", help="credit events in the delivery (repeatable)")
    parser.add_argument("--batch-rows", type=int, help="PROGRAM_REPORTING_GATE_BATCH_ROWS for the gate")
    parser.add_argument("--duckdb-memory-limit", help="PROGRAM_REPORTING_DUCKDB_MEMORY_LIMIT for the gate")
    parser.add_argument("--work", type=Path, help="folder for the drop and home (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    rows = []
    for events in args.events or [5_000_000]:
        work = Path(tempfile.mkdtemp(prefix=f"gate-{events}-", dir=args.work))
        try:
            landing_seconds = land(work / "drop", work / "home", events)
            shutil.rmtree(work / "drop")  # the gate reads the raw layer only
            result = measure_gate(work / "drop", work / "home", args.batch_rows, args.duckdb_memory_limit)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        result.update(
            events=events,
            landing_seconds=round(landing_seconds, 1),
            batch_rows=args.batch_rows,
            duckdb_memory_limit=args.duckdb_memory_limit,
        )
        print(json.dumps(result), flush=True)
        rows.append(result)
    print(
        "| credit events | gate seconds | gate CPU seconds | gate peak RSS | passed |\n"
        "| ---: | ---: | ---: | ---: | --- |"
    )
    for r in rows:
        print(
            f"| {r['events']:,} | {r['seconds']} | {r['cpu_seconds']} | {r['peak_rss_bytes'] / 2**30:.2f} GiB "
            f"| {r['passed']} |"
        )
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
