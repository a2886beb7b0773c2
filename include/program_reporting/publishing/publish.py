"""Publish a validated candidate set to the files, with its report, atomically.

The set audit/<run_id>/kpi.duckdb, which has a passing gate verdict for its
exact bytes (validation/candidate.py), moves to published/runs/<run_id>/kpi.duckdb
(kept forever, read-only) and becomes published/current.duckdb by renaming a
hard link over it, so readers holding current.duckdb open keep their complete
set and new readers get the new complete set; nobody waits.

The report of a published run is part of its publication: its content is
fixed (rendered, on disk, checksums in the set's manifest) before the set
moves, and it is in reports/<run_id>/ before current.duckdb is swapped. If it
cannot be written, nothing is published. Only the index entry follows the
swap; if that fails, the set stays published and the next report written
adds the entry.

The gates, the PostgreSQL serving schema and the report of a withheld run are
the steps around this one: publishing/wap.py.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from program_reporting.core import failpoints

# names of this module, so that tests/helpers/fault_runner.py can kill at this module's fsyncs alone
from program_reporting.core.durable import fsync_dir as _fsync_dir
from program_reporting.core.durable import fsync_file as _fsync_file
from program_reporting.core.published import published_runs
from program_reporting.core.settings import Paths
from program_reporting.core.settings import paths as default_paths
from program_reporting.validation.candidate import PublishError, checked_candidate

log = logging.getLogger(__name__)

READ_ONLY = 0o444


@contextmanager
def publish_lock(p: Paths):
    """Serialises publishers, and retention's removal of audit sets (never
    readers: they do not take it)."""
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
    checksum), so a retry of the same run publishes it. A publication report
    left fixed but not in place goes in place if its set reached
    published/runs/ (that is the publication), and is removed if not (nothing
    was published, and nobody saw it)."""
    from program_reporting.reporting import report as reporting

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
    for run_id in reporting.pending_publication_reports(p):
        if not (p.runs / run_id).exists():
            reporting.discard_publication_report(run_id, p)
            log.warning("publish of run %s was interrupted before its set was published; its report is removed", run_id)
            continue
        try:
            reporting.place_publication_report(run_id, p)
            log.warning(
                "publish of run %s was interrupted after its set was published; its report is in place now", run_id
            )
        except OSError as exc:  # kept where it is: the set's manifest names its checksums
            log.error(
                "published run %s: its report stays in %s: %s",
                run_id,
                p.reports / f".{run_id}{reporting.PUBLISHING}",
                exc,
            )


def recover(paths: Paths | None = None) -> None:
    """Settle what a killed publish left behind (see _recover_interrupted).

    Publishing does this itself; the writers of a withheld run's report call
    it first, so that the report of an interrupted publication is in place
    (or gone) before they decide which report the run gets."""
    p = paths or default_paths()
    with publish_lock(p):
        _recover_interrupted(p)


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
    runs = published_runs(p)
    return runs[-1].run_id if runs else None


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


def published_reason(gates: list) -> str:
    """The reason a published run's report gives."""
    warnings = sum(len(g.warnings) for g in gates)
    return "every critical check passed" + (f" ({warnings} warning(s) reported)" if warnings else "")


def publish(
    run_id: str, paths: Paths | None = None, gates: list | tuple = (), airflow_run_id: str | None = None
) -> Path:
    """Publish a validated candidate set with its report: the report is fixed,
    the set moves to published/runs/<run_id>/, the report goes in place in
    reports/<run_id>/, current.duckdb is swapped to the set, and the report is
    added to the index.

    `gates` are the run's gate results for the report (without them it shows
    the verdict's checksum but no checks). Returns the published file. Raises
    PublishError (and changes nothing) when the run has no passing gate
    verdict, its set changed since validation, it was published before, or its
    report cannot be written."""
    p = paths or default_paths()
    started = time.monotonic()
    with publish_lock(p):
        _recover_interrupted(p)
        published_db = _finish_interrupted_swap(run_id, p)
        if published_db is None:
            published_db = _publish_new(run_id, list(gates), airflow_run_id, p)
            log.info(
                "published run %s as %s, with its report, in %.3fs", run_id, published_db, time.monotonic() - started
            )
    _index_publication(run_id, p)
    return published_db


def _publish_new(run_id: str, gates: list, airflow_run_id: str | None, p: Paths) -> Path:
    from program_reporting.reporting import report as reporting

    candidate, verdict = checked_candidate(run_id, p)
    dest = p.runs / run_id
    if dest.exists():
        raise PublishError(f"{dest} exists: run {run_id} was published before; published sets are never replaced")
    published_db = dest / "kpi.duckdb"
    try:
        report_sha256 = reporting.write_publication_report(
            run_id,
            verdict["ds"],
            gates,
            published_reason(gates),
            airflow_run_id,
            published_db,
            verdict["candidate_sha256"],
            p,
        )
        failpoints.hit("publish.report_written")
    except Exception as exc:  # whatever stops the report stops the publication
        reporting.discard_publication_report(run_id, p)
        raise PublishError(
            f"the report of run {run_id} could not be written, so nothing was published: {type(exc).__name__}: {exc}"
        ) from exc
    p.runs.mkdir(parents=True, exist_ok=True)
    staging = p.runs / f".{run_id}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    staged_db = staging / "kpi.duckdb"
    try:
        os.rename(candidate, staged_db)  # same file system: the audited bytes, not a copy
        manifest = {
            "run_id": run_id,
            "ds": verdict.get("ds"),
            "sha256": verdict["candidate_sha256"],
            "validated_at": verdict.get("validated_at"),
            # microseconds: `figures --as-of` must tell apart two publications of one second
            "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "report": {"path": str((p.reports / run_id).relative_to(p.home)), **report_sha256},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for f in staging.iterdir():
            os.chmod(f, READ_ONLY)
            _fsync_file(f)
        _fsync_dir(staging)
        os.rename(staging, dest)
        # From here the run is published (published/runs/<run_id>/ is kept forever);
        # a kill before its report is in place leaves that to the next recovery.
        _fsync_dir(p.runs)
        reporting.place_publication_report(run_id, p)
    except BaseException:
        # nothing published: the set goes back to validation's place, the report away
        if dest.exists() and not staging.exists():
            os.rename(dest, staging)
        if staged_db.exists():
            os.rename(staged_db, candidate)
        shutil.rmtree(staging, ignore_errors=True)
        reporting.discard_publication_report(run_id, p)
        raise
    _make_current(published_db, run_id, p)
    shutil.rmtree(p.audit / run_id, ignore_errors=True)
    return published_db


def _index_publication(run_id: str, p: Paths) -> None:
    """After the swap: the index entry. The run is published whatever happens
    here; a failure only delays the entry to the next report written."""
    from program_reporting.reporting import report as reporting

    try:
        failpoints.hit("publish.before_index")
        reporting.index_reports(p)
    except Exception as exc:  # noqa: BLE001 - published is published; the index catches up later
        log.warning(
            "run %s is published and its report is in %s, but the report index could not be "
            "updated (the next report written adds it): %s",
            run_id,
            p.reports / run_id,
            exc,
        )
