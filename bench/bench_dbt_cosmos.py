"""Why the nightly DAG runs dbt as one `dbt build` task and not through Cosmos.

Measures, on the same small landed data:

  A. one `dbt build` (what the `dbt_build` task runs, via build.build);
  B. the same dbt project rendered by astronomer-cosmos 1.15 from its manifest
     (LoadMode.DBT_MANIFEST, ExecutionMode.LOCAL, InvocationMode.DBT_RUNNER:
     one Airflow task per model run and per model's tests), executed with
     `airflow dags test` in a private AIRFLOW_HOME;

and prints the wall times, the number of tasks and the DAG parse time.

  .venv/bin/python bench/bench_dbt_cosmos.py [--merchants 200] [--days 3]

DuckDB has a single writer, so Cosmos' tasks would have to run one at a time
anyway (a pool of 1 slot): the per-node dbt start-up (project load, adapter,
connection) is then paid ~50 times in sequence instead of once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

PROBE_DAG = """
# airflow: the dbt project rendered by Cosmos from its manifest (bench only)
import pendulum
from airflow.sdk import dag
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode

@dag(schedule=None, start_date=pendulum.datetime(2020, 1, 1), catchup=False, max_active_tasks=1)
def cosmos_probe():
    DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(dbt_project_path={project!r}, manifest_path={manifest!r},
                                     project_name="program_reporting"),
        profile_config=ProfileConfig(profile_name="program_reporting", target_name="duckdb",
                                     profiles_yml_filepath={profiles!r}),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST),
        execution_config=ExecutionConfig(execution_mode=ExecutionMode.LOCAL,
                                         invocation_mode=InvocationMode.DBT_RUNNER),
        operator_args={{"vars": {{"ds": {ds!r}}}, "install_deps": False}},
    )

cosmos_probe()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--merchants", type=int, default=200)
    parser.add_argument("--days", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PROGRAM_REPORTING_HOME"] = str(tmp / "home")
        os.environ["PROGRAM_REPORTING_DROP"] = str(tmp / "drop")
        os.environ.pop("AIRFLOW_HOME", None)
        from program_reporting.core.settings import SOURCES
        from program_reporting.landing import land as landing
        from program_reporting.orchestration.airflow_env import airflow_bin, airflow_env, ensure_db
        from program_reporting.tools.simulate.simulator import simulate
        from program_reporting.warehouse import build

        start = dt.date(2020, 6, 2)
        dates = [(start + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
        simulate(start=start, days=args.days, merchants=args.merchants, seed=7, bad_row_share=0.0, progress=False)
        for ds in dates:
            for source in SOURCES:
                landing.land(source, ds)
            landing.release_orphans(ds)
        ds = dates[-1]

        t0 = time.monotonic()
        summary = build.build(ds, f"{ds}_bench", full_refresh=True)
        one_build = time.monotonic() - t0
        manifest = build.ensure_manifest()

        dags = tmp / "dags"
        dags.mkdir()
        (dags / "cosmos_probe.py").write_text(
            textwrap.dedent(
                PROBE_DAG.format(
                    project=str(ROOT / "dbt_project"),
                    manifest=str(manifest),
                    profiles=str(ROOT / "dbt_project" / "profiles.yml"),
                    ds=ds,
                )
            )
        )
        env = airflow_env()
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
        ensure_db(env)
        probe = (
            "from airflow.dag_processing.dagbag import DagBag; b = DagBag(); "
            "s = b.dagbag_stats[0]; print(len(b.dags['cosmos_probe'].tasks), s.duration.total_seconds())"
        )
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        n_tasks, parse_s = out.stdout.strip().splitlines()[-1].split()
        t0 = time.monotonic()
        proc = subprocess.run([airflow_bin(), "dags", "test", "cosmos_probe"], env=env, capture_output=True, text=True)
        cosmos = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run(
            [airflow_bin(), "dags", "test", "cosmos_probe", "--mark-success-pattern", ".*"],
            env=env,
            capture_output=True,
            text=True,
        )
        overhead = time.monotonic() - t0
    print(f"data: {args.merchants} merchants, {args.days} days; dbt nodes built: {summary.get('nodes', '?')}")
    print(f"A. one dbt build (build.build, full refresh):        {one_build:6.1f} s, 1 task")
    print(
        f"B. Cosmos DbtTaskGroup via airflow dags test:         {cosmos:6.1f} s, {n_tasks} tasks "
        f"(exit {proc.returncode}); the same DAG with every task marked success: {overhead:.1f} s, "
        f"so dbt through Cosmos took ~{cosmos - overhead:.1f} s"
    )
    print(f"   Cosmos DAG parse time (manifest load): {float(parse_s) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
