"""Gate a run's candidate KPI set, then publish it with its report, or withhold it.

Write-audit-publish, one path for the command line and the nightly DAG. The
steps of a run, in this order:

1. `gate_landed`: the GX gate on the deliveries of --ds as landed in raw/
   (the DAG runs it before dbt builds from them);
2. `stage`: the built kpi_ marts copied to audit/<run_id>/kpi.duckdb, the
   candidate set (by hand: `program-reporting build --audit RUN_ID`);
3. `gate_marts`: the GX gate on the candidate set; its verdict, with the
   set's SHA-256, goes to audit/<run_id>/gate.json;
4. `publish`, only when every gate passed: in the production profile
   (PROGRAM_REPORTING_TARGET=postgres) the set is staged in PostgreSQL, which
   runs the marts gate again on what it holds; then the files (publish.py):
   the set moves to published/runs/<run_id>/ and becomes
   published/current.duckdb, its report in reports/<run_id>/ before that
   swap; then PostgreSQL switches its serving schema to the set. If the report
   cannot be written, nothing is published, in either place;
5. `withhold`, when nothing was published: the run's report, decision
   withheld and why; then the alert.

Each gate's result is kept in home/tmp/gates/<run_id>/ as soon as the gate
has run, and the report is written from what is kept: it lists every gate
that ran for the run, whichever process ran it (the DAG's tasks are separate
processes; a retried publish that finds its set current in PostgreSQL runs no
gate there).

This command runs steps 1, 3, 4 and 5 on a staged set, in one process.

Exit status: 0 published, 1 withheld (the last line says why), 2 usage error.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.core.settings import Paths, parse_ds
from program_reporting.core.settings import paths as default_paths
from program_reporting.validation.candidate import PublishError

log = logging.getLogger(__name__)

GATES = ("landed", "marts", "postgres")  # the names results are kept under, in the order reports list them


@dataclass
class Outcome:
    run_id: str
    ds: str
    published: bool
    reason: str
    report_path: Path | None = None
    published_path: Path | None = None
    gates: list = field(default_factory=list)


# --------------------------------------------------------------------------- the gates that ran


def _kept_dir(run_id: str, p: Paths) -> Path:
    return p.tmp / "gates" / run_id


def keep_gate(run_id: str, name: str, result, paths: Paths | None = None) -> None:
    """Keep a gate's full result (GX results included) for the run's report.

    Pickled: it is our own file, read back only by the report of the same run."""
    import pickle

    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}")
    folder = _kept_dir(run_id, paths or default_paths())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        data = pickle.dumps(result)
    except Exception:  # GX objects that do not pickle: keep the checks, lose only the Data Docs
        log.warning("GX results of the %s gate do not pickle; the report will have no Data Docs of them", name)
        result.gx_results = []
        data = pickle.dumps(result)
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(folder / f"{name}.pickle")


def kept_gates(run_id: str, paths: Paths | None = None) -> list:
    """The latest result of every gate that ran for the run, in the order of GATES."""
    import pickle

    folder = _kept_dir(run_id, paths or default_paths())
    return [
        pickle.loads((folder / f"{name}.pickle").read_bytes()) for name in GATES if (folder / f"{name}.pickle").exists()
    ]


def forget_gates(run_id: str, paths: Paths | None = None) -> None:
    """Once the run's report is final."""
    shutil.rmtree(_kept_dir(run_id, paths or default_paths()), ignore_errors=True)


# --------------------------------------------------------------------------- the steps


def gate_landed(run_id: str, ds: str, paths: Paths | None = None):
    """Step 1. Raises GateError or ValueError when the gate cannot run."""
    from program_reporting.validation import gate

    p = paths or default_paths()
    result = gate.validate_landed(ds, p)
    keep_gate(run_id, "landed", result, p)
    return result


def stage(run_id: str, ds: str, paths: Paths | None = None) -> Path:
    """Step 2: the candidate set from the built warehouse."""
    from program_reporting.warehouse import build

    return build.stage_audit(run_id, ds, paths)


def gate_marts(run_id: str, ds: str, paths: Paths | None = None):
    """Step 3. Raises GateError or ValueError when the gate cannot run."""
    from program_reporting.validation import gate

    p = paths or default_paths()
    result = gate.validate(run_id, ds, p)
    keep_gate(run_id, "marts", result, p)
    return result


def publish(run_id: str, airflow_run_id: str | None = None, paths: Paths | None = None) -> Path:
    """Step 4, once the landed and marts gates passed: PostgreSQL (production
    profile), then the files with the report. Returns the published file.

    Raises GateBlocked when the gate on PostgreSQL blocks, PublishError
    (postgres.connection.PgError, psycopg2.Error, OSError) when publishing
    fails; the files are then unchanged."""
    from program_reporting.postgres import serving
    from program_reporting.publishing import publish as files

    p = paths or default_paths()
    published: list[Path] = []

    def the_files() -> None:
        published.append(files.publish(run_id, p, kept_gates(run_id, p), airflow_run_id))

    if serving.enabled():
        # PostgreSQL stages and gates the set; then the files go, with the report (which lists
        # that gate); only then PostgreSQL switches. A set PostgreSQL serves always has its
        # published report; if the files fail, PostgreSQL keeps the previous set. If the switch
        # fails after the files, a retry finds the files published and switches.
        serving.publish(
            run_id, p, on_gate=lambda result: keep_gate(run_id, "postgres", result, p), before_switch=the_files
        )
    if not published:  # no PostgreSQL, or the run already current there (a retry)
        the_files()
    return published[0]


def withhold(
    run_id: str, ds: str, gates: list, reason: str, airflow_run_id: str | None = None, paths: Paths | None = None
) -> Path:
    """Step 5: write the report of a run that was not published. Returns its report.html.

    A publish of this run that was interrupted is settled first, so its report
    is in place (when its set did reach published/runs/) or gone. A report the
    run already has is kept, never rewritten (a retry of the report step, or
    that publication's report)."""
    from program_reporting.publishing.publish import recover
    from program_reporting.reporting import report as reporting

    p = paths or default_paths()
    recover(p)
    try:
        return reporting.write_report(
            run_id, ds, gates, published=False, reason=reason, airflow_run_id=airflow_run_id, paths=p
        )
    except reporting.ReportExists:
        final = p.reports / run_id / "report.html"
        if not final.exists():
            raise
        log.warning("run %s has its report already; kept: %s", run_id, final)
        return final


# --------------------------------------------------------------------------- the path in one process


def audit_and_publish(
    run_id: str, ds: str, airflow_run_id: str | None = None, paths: Paths | None = None, landed: bool = True
) -> Outcome:
    """The gates, then publish (with the report) or withhold (report, then the alert).

    `landed=False` skips re-checking the landed deliveries (when an earlier
    task already gated them and the report need not show them)."""
    import psycopg2

    from program_reporting.postgres.connection import PgError
    from program_reporting.publishing.notify import notify
    from program_reporting.publishing.publish import published_reason
    from program_reporting.validation.gate import GateError

    parse_ds(ds)
    p = paths or default_paths()
    gates = []
    reason = ""
    try:
        if landed:
            gates.append(gate_landed(run_id, ds, p))
        gates.append(gate_marts(run_id, ds, p))
    except (GateError, ValueError, OSError) as exc:
        reason = f"the gate could not run: {exc}"
        log.error("run %s: %s", run_id, reason)
    if not reason:
        blocked = [g for g in gates if not g.passed]
        if blocked:
            reason = "; ".join(g.reason() for g in blocked)
        else:
            try:
                published_path = publish(run_id, airflow_run_id, p)
            except (PublishError, PgError, psycopg2.Error, OSError) as exc:
                reason = f"publishing failed: {exc}"
            else:
                gates = kept_gates(run_id, p)
                forget_gates(run_id, p)
                return Outcome(
                    run_id, ds, True, published_reason(gates), p.reports / run_id / "report.html", published_path, gates
                )
    gates = kept_gates(run_id, p)
    report_path = withhold(run_id, ds, gates, reason, airflow_run_id, p)
    forget_gates(run_id, p)
    notify("publication_withheld", f"run {run_id} (ds {ds}) was not published: {reason}", report_path, paths=p)
    return Outcome(run_id, ds, False, reason, report_path, None, gates)
