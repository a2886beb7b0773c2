"""Validate a run's candidate KPI set and publish it atomically, or withhold it.

Write-audit-publish: the build writes the candidate set to
audit/<run_id>/kpi.duckdb; this command runs the GX gate on the landed
deliveries of --ds and on the candidate set; when no critical check failed it
moves the set to published/runs/<run_id>/kpi.duckdb (kept forever, read-only)
and makes it published/current.duckdb by renaming a hard link over it, so
readers holding current.duckdb open keep their complete set and new readers
get the new complete set; nobody waits. When a critical check failed, nothing
is published, the previous set stays current, and the alert hook fires.
Either way the validation report is written to reports/<run_id>/ and listed
in reports/index.html.

Exit status: 0 published, 1 withheld (the last line says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.settings import Paths, parse_ds, paths as default_paths

log = logging.getLogger(__name__)

READ_ONLY = 0o444


class PublishError(RuntimeError):
    """The set cannot be published; nothing was changed."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _publish_lock(p: Paths):
    """Serialises publishers (never readers: they do not take it)."""
    p.published.mkdir(parents=True, exist_ok=True)
    with open(p.published / ".publish.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _recover_interrupted(p: Paths) -> None:
    """Called under the publish lock, so no other publish is running: any
    staging folder or temporary link here was left by a killed publish. Its
    candidate goes back where validation left it (the verdict still names its
    checksum), so a retry of the same run publishes it."""
    if p.runs.exists():
        for stale in p.runs.glob(".*.staging-*"):
            run_id = stale.name[1:].rsplit(".staging-", 1)[0]
            staged = stale / "kpi.duckdb"
            candidate = p.audit / run_id / "kpi.duckdb"
            if staged.exists() and not candidate.exists() and not (p.runs / run_id).exists():
                candidate.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staged, candidate)
                log.warning("publish of run %s was interrupted; its candidate set is back in %s", run_id, candidate)
            shutil.rmtree(stale, ignore_errors=True)
    for link in p.published.glob(".current-*.tmp"):
        link.unlink(missing_ok=True)


def _make_current(published_db: Path, run_id: str, p: Paths) -> None:
    # A hard link under a temporary name, renamed over current.duckdb. rename(2)
    # is atomic: a reader opening current.duckdb gets the old inode or the new
    # one, each a complete, never-written-again file.
    link = p.published / f".current-{run_id}-{os.getpid()}.tmp"
    link.unlink(missing_ok=True)
    os.link(published_db, link)
    os.replace(link, p.current_db)
    _fsync_dir(p.published)


def _newest_run(p: Paths) -> str | None:
    newest = None
    for manifest in p.runs.glob("*/manifest.json"):
        try:
            # published_at has second precision: the file's time breaks ties
            key = (json.loads(manifest.read_text(encoding="utf-8"))["published_at"], manifest.stat().st_mtime_ns)
        except (OSError, ValueError, KeyError):
            continue
        if newest is None or key > newest[0]:
            newest = (key, manifest.parent.name)
    return newest[1] if newest else None


def _finish_interrupted_swap(run_id: str, p: Paths) -> Path | None:
    """A retry of a publish killed after its set reached runs/ but before (or
    just after) current.duckdb was swapped: finish the swap. Only for the
    newest published run, so a retry can never roll current back to an older set."""
    published_db = p.runs / run_id / "kpi.duckdb"
    if (p.audit / run_id / "kpi.duckdb").exists():
        return None  # a new candidate under a used run id: refused below, never swapped in
    if not published_db.exists() or _newest_run(p) != run_id:
        return None
    if not (p.current_db.exists() and os.path.samefile(p.current_db, published_db)):
        _make_current(published_db, run_id, p)
        log.warning("publish of run %s was interrupted before the swap; %s is current now", run_id, published_db)
    shutil.rmtree(p.audit / run_id, ignore_errors=True)
    return published_db


def _checked_candidate(run_id: str, p: Paths) -> tuple[Path, dict]:
    from program_reporting.checksums import sha256_file
    from program_reporting.gate import GATE_FILE

    if not run_id or "/" in run_id or run_id.startswith("."):
        raise PublishError(f"run id {run_id!r} is not usable as a folder name")
    audit_dir = p.audit / run_id
    candidate = audit_dir / "kpi.duckdb"
    if not candidate.exists():
        raise PublishError(f"{candidate}: no candidate set for run {run_id}")
    if Path(str(candidate) + ".wal").exists():
        raise PublishError(f"{candidate}.wal exists: the set changed after validation; validate it again")
    verdict_file = audit_dir / GATE_FILE
    try:
        verdict = json.loads(verdict_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{verdict_file}: no gate verdict for run {run_id}; run the gate first ({exc})") from exc
    if not verdict.get("passed"):
        raise PublishError(f"run {run_id} did not pass the gate: {verdict.get('reason')}")
    if sha256_file(candidate) != verdict.get("candidate_sha256"):
        raise PublishError(f"{candidate} changed since it was validated; validate it again")
    return candidate, verdict


def publish(run_id: str, paths: Paths | None = None) -> Path:
    """Move a validated candidate set to published/runs/<run_id>/ and make it current.

    Returns the published file. Raises PublishError (and changes nothing) when
    the run has no passing gate verdict, its set changed since validation, or
    it was published before."""
    p = paths or default_paths()
    started = time.monotonic()
    with _publish_lock(p):
        _recover_interrupted(p)
        finished = _finish_interrupted_swap(run_id, p)
        if finished:
            return finished
        candidate, verdict = _checked_candidate(run_id, p)
        dest = p.runs / run_id
        if dest.exists():
            raise PublishError(f"{dest} exists: run {run_id} was published before; published sets are never replaced")
        p.runs.mkdir(parents=True, exist_ok=True)
        staging = p.runs / f".{run_id}.staging-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        staged_db = staging / "kpi.duckdb"
        os.rename(candidate, staged_db)  # same file system: the audited bytes, not a copy
        try:
            manifest = {
                "run_id": run_id, "ds": verdict.get("ds"), "sha256": verdict["candidate_sha256"],
                "validated_at": verdict.get("validated_at"),
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            for f in staging.iterdir():
                os.chmod(f, READ_ONLY)
                _fsync_file(f)
            _fsync_dir(staging)
            os.rename(staging, dest)
        except BaseException:
            os.rename(staged_db, candidate)  # put the candidate back: nothing published
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(p.runs)
        published_db = dest / "kpi.duckdb"
        _make_current(published_db, run_id, p)
        shutil.rmtree(p.audit / run_id, ignore_errors=True)
    log.info("published run %s (ds %s) as %s in %.3fs", run_id, verdict.get("ds"), published_db,
             time.monotonic() - started)
    return published_db


# --------------------------------------------------------------------------- WAP

@dataclass
class Outcome:
    run_id: str
    ds: str
    published: bool
    reason: str
    report_path: Path | None = None
    published_path: Path | None = None
    gates: list = field(default_factory=list)


def audit_and_publish(run_id: str, ds: str, airflow_run_id: str | None = None, paths: Paths | None = None,
                      landed: bool = True) -> Outcome:
    """The gate, then publish or withhold, then the report, then (when withheld) the alert.

    `landed=False` skips re-checking the landed deliveries (when an earlier
    task already gated them and the report need not show them)."""
    from program_reporting.gate import GateError, validate, validate_landed
    from program_reporting.notify import notify
    from program_reporting.report import write_report

    parse_ds(ds)
    p = paths or default_paths()
    gates = []
    reason = ""
    published_path = None
    try:
        if landed:
            gates.append(validate_landed(ds, p))
        gates.append(validate(run_id, ds, p))
    except (GateError, ValueError, OSError) as exc:
        reason = f"the gate could not run: {exc}"
        log.error("run %s: %s", run_id, reason)
    if not reason:
        blocked = [g for g in gates if not g.passed]
        if blocked:
            reason = "; ".join(g.reason() for g in blocked)
        else:
            try:
                published_path = publish(run_id, p)
                reason = "every critical check passed" + (
                    f" ({sum(len(g.warnings) for g in gates)} warning(s) reported)"
                    if any(g.warnings for g in gates) else "")
            except (PublishError, OSError) as exc:
                reason = f"publishing failed: {exc}"
    published = published_path is not None
    report_path = write_report(run_id, ds, gates, published=published, reason=reason,
                               airflow_run_id=airflow_run_id, published_path=published_path, paths=p)
    if not published:
        notify("publication_withheld", f"run {run_id} (ds {ds}) was not published: {reason}", report_path, paths=p)
    return Outcome(run_id, ds, published, reason, report_path, published_path, gates)


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", required=True, help="the run whose audit/<run_id>/kpi.duckdb to publish")
    parser.add_argument("--ds", required=True, help="the run's business date YYYY-MM-DD")
    parser.add_argument("--airflow-run-id", default=None, help="the Airflow DAG run this belongs to, for the report")
    parser.add_argument("--skip-landed", action="store_true",
                        help="do not re-check the landed deliveries (they were gated earlier)")


def main(args: argparse.Namespace) -> int:
    try:
        outcome = audit_and_publish(args.run_id, args.ds, args.airflow_run_id, landed=not args.skip_landed)
    except ValueError as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    for g in outcome.gates:
        print(g.summary())
    print(f"report: {outcome.report_path}")
    if outcome.published:
        print(f"published run {outcome.run_id} (ds {outcome.ds}): {outcome.published_path}")
        return 0
    print(f"withheld run {outcome.run_id} (ds {outcome.ds}): {outcome.reason}")
    return 1
