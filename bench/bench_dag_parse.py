"""DAG parse time: each file of dags/ must parse well within Airflow's budget.

The DAG processor re-parses every file periodically and kills a parse that
exceeds [core] dagbag_import_timeout (30 s); a slow top level also slows every
`airflow dags test` and every task start. Our files import only the thin
program_reporting.orchestration.nightly (no dbt, GX, DuckDB or pandas at parse time).

  .venv/bin/python bench/bench_dag_parse.py [--repeat 5] [--limit-ms 1000]

Each repetition parses the whole folder in a fresh interpreter (cold imports,
as the DAG processor's child does), with the project's Airflow environment.
Exit 1 when any file's median parse time exceeds the limit."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from program_reporting.orchestration.airflow_env import DAGS_FOLDER, airflow_env  # noqa: E402

PROBE = r"""
import json, time, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": {str(k): str(v) for k, v in bag.import_errors.items()},
                  "files": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--limit-ms",
        type=float,
        default=1000.0,
        help="maximum median parse time per file (default 1000 ms: the issue's target)",
    )
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROGRAM_REPORTING_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("PROGRAM_REPORTING_DROP", str(Path(tmp) / "drop"))
        os.environ.pop("AIRFLOW_HOME", None)
        env = airflow_env()
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            proc = subprocess.run(
                [sys.executable, "-c", PROBE, str(DAGS_FOLDER)], env=env, capture_output=True, text=True, timeout=600
            )
            if proc.returncode != 0:
                print(proc.stderr[-3000:])
                return 2
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if out["errors"]:
                print("import errors:", out["errors"])
                return 2
            for file, seconds in out["files"].items():
                times.setdefault(file, []).append(seconds * 1000)
    worst = 0.0
    for file, ms in sorted(times.items()):
        median = statistics.median(ms)
        worst = max(worst, median)
        print(f"{file:40s} median {median:7.1f} ms  max {max(ms):7.1f} ms  ({len(ms)} runs)")
    ok = worst <= args.limit_ms
    print(f"{'OK' if ok else 'TOO SLOW'}: worst median {worst:.1f} ms, limit {args.limit_ms:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
