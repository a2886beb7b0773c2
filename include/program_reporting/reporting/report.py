"""Validation reports a compliance team can sign off.

For every run, published or withheld, reports/<run_id>/ holds:

- report.json  machine-readable: run, business date, Airflow run, decision and
               why, the deliveries used (checksums, reconciliation, quarantine
               reasons), landing failures, every expectation with severity,
               observed value, result and sample failing rows (no personal data)
- report.html  the same for people: one self-contained file (inline CSS, no
               scripts, no external assets; templates/report.html.j2);
               blocking failures first
- data_docs/   the GX Data Docs of the same results, built offline

and the report links the dbt docs of the warehouse the run built, published
in reports/catalog/<sha256>.html (place_docs_page): one file per distinct
page, so the nights that built the same project share one, never rewritten.

A report is written once: the folder is built under a temporary name and
renamed into place, its files are read-only, and writing a report for a run
that has one is refused. reports/index.jsonl is the append-only history (one
line per report with the SHA-256 of its files); reports/index.html is
regenerated from it, newest first.

A publishing run's report is part of its publication (publish.publish): its
content is fixed first, in reports/.<run_id>.publishing, where nothing lists
it; it is renamed into reports/<run_id>/ once the set is in published/runs/
and before current.duckdb is swapped; the index entry follows the swap. So a
report that says "published" always belongs to a published set, and the set
never becomes current without it. A withheld run's report is written by
write_report.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from program_reporting.core.checksums import sha256_file
from program_reporting.core.durable import fsync_dir, fsync_file
from program_reporting.core.redaction import scrub
from program_reporting.core.settings import Paths, parse_ds
from program_reporting.core.settings import paths as default_paths
from program_reporting.reporting.templating import render
from program_reporting.warehouse.catalog import DOCS_PAGE

log = logging.getLogger(__name__)

REPORT_VERSION = 1
READ_ONLY = 0o444
PUBLISHING = ".publishing"  # reports/.<run_id>.publishing: a publication's report, fixed, not yet in place
DOCS_FOLDER = "catalog"  # reports/catalog/<sha256>.html: the dbt docs pages the reports link


class ReportExists(FileExistsError):
    """A run's report was written before; reports are never changed."""


# --------------------------------------------------------------------------- inputs


def deliveries(ds: str, p: Paths) -> list[dict]:
    """Reconciliation records of every delivery in force for a run of `ds`."""
    from program_reporting.validation.gate import reconciliation_records

    rows = []
    for r in reconciliation_records(p):
        if str(r.get("ds", "")) > ds:
            continue
        parts = [r.get(k) for k in ("loaded", "quarantined", "held")]
        balanced = None
        if r.get("delivered") is not None and None not in parts:
            balanced = r["delivered"] == sum(parts)
        rows.append(
            {
                "source": r.get("source"),
                "ds": r.get("ds"),
                "file": r.get("file"),
                "sha256": r.get("sha256"),
                "control_row_count": r.get("control_row_count"),
                "delivered": r.get("delivered"),
                "loaded": r.get("loaded"),
                "quarantined": r.get("quarantined"),
                "held": r.get("held"),
                "balanced": balanced,
                "quarantine_by_rule": r.get("quarantine_by_rule") or {},
                "extra_columns": r.get("extra_columns") or [],
                "landed_at": r.get("landed_at"),
            }
        )
    rows.sort(key=lambda r: (str(r["ds"]), str(r["source"])), reverse=True)
    return scrub(rows)


def landing_failures(ds: str, p: Paths) -> list[dict]:
    """Failed deliveries (home/landing_failures/**.json) up to `ds`."""
    out = []
    root = p.home / "landing_failures"
    for f in sorted(root.glob("**/*.json")) if root.exists() else []:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            doc = {"error": f"unreadable: {exc}"}
        if not isinstance(doc, dict):
            doc = {"record": doc}
        if str(doc.get("ds", "")) > ds:
            continue
        doc["_record"] = str(f.relative_to(p.home))
        out.append(scrub(doc))
    return out


# --------------------------------------------------------------------------- Data Docs


def build_data_docs(run_id: str, gates: Iterable, target: Path) -> str | None:
    """GX Data Docs of the (already scrubbed) results into `target`; None or an error."""
    # The marts gate runs on DuckDB and again on PostgreSQL with the same suites: the
    # engine keeps their results apart (Data Docs would file both under one name).
    results = [
        (name if getattr(g, "engine", "duckdb") == "duckdb" else f"{g.engine}.{name}", r)
        for g in gates
        for name, r in getattr(g, "gx_results", [])
    ]
    if not results:
        return "no GX results to render"
    try:
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        from program_reporting.validation.suites import new_context

        context = new_context()
        context.add_data_docs_site(
            "run",
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(target)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        run_time = dt.datetime.now(dt.UTC)
        for name, result in results:
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
                run_id=RunIdentifier(run_name=run_id, run_time=run_time),
                batch_identifier=name.replace(".", "__"),
            )
            context.validation_results_store.store_validation_results(result, key)
        context.build_data_docs(site_names=["run"])
        return None if (target / "index.html").exists() else "GX wrote no index.html"
    except Exception as exc:  # noqa: BLE001 - Data Docs are a courtesy; the report stands without them
        log.error("GX Data Docs for run %s could not be built: %s", run_id, exc)
        return f"GX Data Docs could not be built: {exc}"


# --------------------------------------------------------------------------- dbt docs


def place_docs_page(run_id: str, p: Paths) -> dict:
    """Publish the dbt docs page the build staged with the run's candidate set
    (audit/<run_id>/dbt_docs.html) as reports/catalog/<its SHA-256>.html, unless
    that file is there already; returns what the report says about it.

    The page changes only when the project or the warehouse's tables do, so
    most nights find their page published by an earlier one. Named by its
    content, a file there is never rewritten: `sha256sum` of it gives its name."""
    page = p.audit / run_id / DOCS_PAGE
    if not page.is_file():
        note = f"the run staged no dbt docs page ({page.relative_to(p.home)}): its build did not get that far"
        return {"dbt_docs": None, "dbt_docs_sha256": None, "dbt_docs_note": note}
    sha = sha256_file(page)
    rel = f"{DOCS_FOLDER}/{sha}.html"
    dest = p.reports / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{sha}.{os.getpid()}.tmp"
        try:
            shutil.copyfile(page, tmp)
            os.chmod(tmp, READ_ONLY)
            fsync_file(tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(dest.parent)
        log.info("dbt docs page of run %s published as %s", run_id, dest)
    return {"dbt_docs": rel, "dbt_docs_sha256": sha, "dbt_docs_note": None}


def source_freshness(gate_docs: list[dict]) -> dict | None:
    """What the marts gate read of the build's source freshness record (DuckDB gate)."""
    for g in gate_docs:
        if g.get("stage") == "marts" and (g.get("engine") or "duckdb") == "duckdb":
            return (g.get("inputs") or {}).get("source_freshness")
    return None


# --------------------------------------------------------------------------- the report


def build_report(
    run_id: str,
    ds: str,
    gates: list,
    published: bool,
    reason: str,
    airflow_run_id: str | None,
    published_path: Path | None,
    p: Paths,
    published_sha256: str | None = None,
) -> dict:
    gate_docs = [g.to_dict() for g in gates]
    checks = [c for g in gate_docs for c in g["results"]]
    recs = deliveries(ds, p)
    reasons: dict[str, int] = {}
    for r in recs:
        for rule, n in (r.get("quarantine_by_rule") or {}).items():
            reasons[rule] = reasons.get(rule, 0) + int(n or 0)
    return scrub(
        {
            "report_version": REPORT_VERSION,
            "run_id": run_id,
            "ds": ds,
            "airflow_run_id": airflow_run_id,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "decision": "published" if published else "withheld",
            "reason": reason,
            "published_path": str(published_path.relative_to(p.home)) if published_path else None,
            "published_sha256": published_sha256,
            "summary": {
                "checks": len(checks),
                "evaluated": sum(c["evaluated"] for c in checks),
                "passed": sum(c["status"] == "passed" for c in checks),
                "critical_failures": sum(c["blocking"] for c in checks),
                "warnings": sum(
                    c["severity"] == "warning" and c["status"] in ("failed", "not evaluated") for c in checks
                ),
                "skipped": sum(c["status"] == "skipped" for c in checks),
            },
            "deliveries": recs,
            "quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "landing_failures": landing_failures(ds, p),
            "source_freshness": source_freshness(gate_docs),
            "gates": gate_docs,
        }
    )


def _check_id(*parts: str) -> str:
    """A check's HTML id: its suite and id, with anything but letters, digits, _ and - replaced."""
    return "-".join("".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(x)) for x in parts)


def _columns(rows: list[dict]) -> list:
    """Every key of the rows, in the order first seen: sample rows need not share their keys."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _engine_of(gate: dict) -> str:
    return gate.get("engine") or "duckdb"


def _engine_check_id(c: dict, engine: str) -> str:
    """The same suite runs on DuckDB and on PostgreSQL: each check keeps its own anchor."""
    return _check_id(c["suite"], c["id"]) if engine == "duckdb" else _check_id(engine, c["suite"], c["id"])


def render_html(doc: dict) -> str:
    checks = [(c, _engine_of(g)) for g in doc["gates"] for c in g["results"]]
    return render(
        "report.html.j2",
        doc=doc,
        blocking=[(c, engine) for c, engine in checks if c["blocking"]],
        warnings=[
            (c, engine)
            for c, engine in checks
            if c["severity"] == "warning" and c["status"] in ("failed", "not evaluated")
        ],
        check_id=_engine_check_id,
        engine_of=_engine_of,
        columns=_columns,
    )


# --------------------------------------------------------------------------- writing


def _index_lines(index: Path) -> list[dict]:
    if not index.exists():
        return []
    lines = []
    for line in index.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                log.error("%s: skipping an unreadable line", index)
    return lines


def render_index(entries: list[dict]) -> str:
    ordered = sorted(enumerate(entries), key=lambda ie: (ie[1].get("written_at", ""), ie[0]), reverse=True)
    return render("report_index.html.j2", entries=[e for _, e in ordered])


def _remove_dead_staging(folder: Path) -> None:
    """Staging folders are named for their writer's pid: one whose writer is
    gone was left by a killed run and holds nothing that was published."""
    for stale in folder.glob(".*.staging-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entry(folder: Path) -> dict:
    doc = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    if doc["run_id"] != folder.name:
        raise ValueError(f"it names run {doc['run_id']!r}")
    return {
        "run_id": doc["run_id"],
        "ds": doc["ds"],
        "airflow_run_id": doc.get("airflow_run_id"),
        "written_at": doc["written_at"],
        "decision": doc["decision"],
        "reason": doc["reason"],
        "critical_failures": doc["summary"]["critical_failures"],
        "warnings": doc["summary"]["warnings"],
        "dbt_docs": doc.get("dbt_docs"),
        "report_json_sha256": sha256_file(folder / "report.json"),
        "report_html_sha256": sha256_file(folder / "report.html"),
    }


def index_reports(paths: Paths | None = None) -> list[str]:
    """Append every report in reports/ that index.jsonl does not list yet, in the
    order they were written, and regenerate index.html. Returns the run ids added.

    Each writer indexes its report right after writing it; a report whose
    writer was killed or failed before that (a publication killed between the
    swap and its index entry, say) is added by the next call, whoever makes it."""
    p = paths or default_paths()
    p.reports.mkdir(parents=True, exist_ok=True)
    index = p.reports / "index.jsonl"
    with open(p.reports / ".index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        listed = {e.get("run_id") for e in _index_lines(index)}
        new = []
        for folder in sorted(p.reports.iterdir()):
            # hidden names are staging folders and reports of publications not yet made
            if folder.name.startswith(".") or folder.name in listed or not (folder / "report.json").is_file():
                continue
            try:
                new.append(_entry(folder))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("%s is not indexed: its report.json is unreadable or altered (%s)", folder, exc)
        if not new:
            return []
        new.sort(key=lambda e: (e["written_at"], e["run_id"]))
        with open(index, "a", encoding="utf-8") as fh:
            for entry in new:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp = p.reports / ".index.html.tmp"
        tmp.write_text(render_index(_index_lines(index)), encoding="utf-8")
        os.replace(tmp, p.reports / "index.html")
    return [e["run_id"] for e in new]


def latest_report(ds: str, file: str = "report.json", since: str = "", paths: Paths | None = None) -> Path | None:
    """The `file` of the latest report written for business date ds (report folders are
    named <ds>_<run stamp>, which sorts by time), among those named `since` or later; None
    when there is none. The one place that knows how to find a date's report."""
    reports = (paths or default_paths()).reports
    if not ds or not reports.exists():
        return None
    floor = f"{ds}_{since}"
    found = sorted(d / file for d in reports.glob(f"{ds}_*") if d.name >= floor and (d / file).is_file())
    return found[-1] if found else None


def indexed_run_ids(paths: Paths | None = None) -> set[str]:
    p = paths or default_paths()
    return {e.get("run_id") for e in _index_lines(p.reports / "index.jsonl")}


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"run id {run_id!r} is not usable as a folder name")


def _render(
    run_id: str,
    ds: str,
    gates: list,
    published: bool,
    reason: str,
    airflow_run_id: str | None,
    published_path: Path | None,
    published_sha256: str | None,
    p: Paths,
) -> tuple[Path, dict[str, str]]:
    """Build the report in a staging folder of this process, its files read-only
    and on disk (fsynced). Returns the folder and the SHA-256 of report.json and report.html."""
    parse_ds(ds)
    _check_run_id(run_id)
    p.reports.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(p.reports)
    staging = p.reports / f".{run_id}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        doc = build_report(run_id, ds, gates, published, reason, airflow_run_id, published_path, p, published_sha256)
        doc["data_docs"] = "data_docs/index.html"
        doc["data_docs_error"] = build_data_docs(run_id, gates, staging / "data_docs")
        if doc["data_docs_error"]:
            doc["data_docs"] = None
        doc.update(place_docs_page(run_id, p))
        files = {
            "report.json": (json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"),
            "report.html": render_html(doc).encode("utf-8"),
        }
        for name, data in files.items():
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for f in staging.rglob("*"):
            if f.is_file():
                os.chmod(f, READ_ONLY)
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, {
        f"{name.replace('.', '_')}_sha256": hashlib.sha256(data).hexdigest() for name, data in files.items()
    }


def write_report(
    run_id: str,
    ds: str,
    gates: list,
    published: bool,
    reason: str,
    airflow_run_id: str | None = None,
    published_path: Path | None = None,
    paths: Paths | None = None,
) -> Path:
    """Write the report of a run that published nothing to reports/<run_id>/, once,
    and add it to the index. Returns report.html's path.

    Raises ReportExists when the run already has a report. A publishing run's
    report is part of its publication: publish.publish writes it."""
    p = paths or default_paths()
    _check_run_id(run_id)
    final = p.reports / run_id
    if final.exists():
        # A run killed between writing its report and indexing it: index it now.
        index_reports(p)
        raise ReportExists(f"{final} exists: a report is never rewritten (run ids must be unique per attempt)")
    if published or published_path:
        raise ValueError(
            f"run {run_id}: the report of a published run is written by publish.publish, before its set becomes current"
        )
    staging, _ = _render(run_id, ds, gates, False, reason, airflow_run_id, None, None, p)
    try:
        os.rename(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportExists(f"{final} appeared while the report was written: {exc}") from exc
    fsync_dir(p.reports)
    index_reports(p)
    log.info("validation report for run %s (withheld): %s", run_id, final / "report.html")
    return final / "report.html"


# --------------------------------------------------------------------------- a publication's report


def _pending(run_id: str, p: Paths) -> Path:
    return p.reports / f".{run_id}{PUBLISHING}"


def write_publication_report(
    run_id: str,
    ds: str,
    gates: list,
    reason: str,
    airflow_run_id: str | None,
    published_path: Path,
    published_sha256: str,
    paths: Paths,
) -> dict[str, str]:
    """Fix the report of a run about to be published, decision "published": in
    reports/.<run_id>.publishing, on disk, listed nowhere. Returns the SHA-256
    of report.json and report.html (publish records them in the set's manifest).

    Only publish.publish calls it, holding the publish lock; raises ReportExists
    when the run has a report already."""
    final = paths.reports / run_id
    if final.exists():
        raise ReportExists(f"{final} exists: run {run_id} has a report already, and a report is never rewritten")
    staging, checksums = _render(
        run_id, ds, gates, True, reason, airflow_run_id, published_path, published_sha256, paths
    )
    try:
        os.rename(staging, _pending(run_id, paths))
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(paths.reports)
    return checksums


def place_publication_report(run_id: str, paths: Paths) -> Path:
    """Rename a fixed publication report into reports/<run_id>/ (its set is in published/runs/ by now)."""
    final = paths.reports / run_id
    if final.exists():
        raise ReportExists(f"{final} exists: the report of published run {run_id} cannot be put in place")
    os.rename(_pending(run_id, paths), final)
    fsync_dir(paths.reports)
    log.info("validation report for run %s (published): %s", run_id, final / "report.html")
    return final / "report.html"


def discard_publication_report(run_id: str, paths: Paths) -> None:
    """Remove the fixed report of a publication that did not happen (nobody saw it)."""
    shutil.rmtree(_pending(run_id, paths), ignore_errors=True)


def pending_publication_reports(paths: Paths) -> list[str]:
    """Run ids whose publication report is fixed but not in place: publications under way or interrupted."""
    if not paths.reports.exists():
        return []
    return sorted(d.name[1 : -len(PUBLISHING)] for d in paths.reports.glob(f".*{PUBLISHING}") if d.is_dir())
