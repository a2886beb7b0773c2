"""Validation reports a compliance team can sign off.

For every run, published or withheld, reports/<run_id>/ holds:

- report.json  machine-readable: run, business date, Airflow run, decision and
               why, the deliveries used (checksums, reconciliation, quarantine
               reasons), landing failures, every expectation with severity,
               observed value, result and sample failing rows (no personal data)
- report.html  the same for people: one self-contained file (inline CSS, no
               scripts, no external assets); blocking failures first
- data_docs/   the GX Data Docs of the same results, built offline

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
import html
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from program_reporting.core.checksums import sha256_file
from program_reporting.core.durable import fsync_dir
from program_reporting.core.redaction import scrub
from program_reporting.core.settings import Paths, parse_ds
from program_reporting.core.settings import paths as default_paths

log = logging.getLogger(__name__)

REPORT_VERSION = 1
READ_ONLY = 0o444
PUBLISHING = ".publishing"  # reports/.<run_id>.publishing: a publication's report, fixed, not yet in place


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
        rows.append({
            "source": r.get("source"), "ds": r.get("ds"), "file": r.get("file"), "sha256": r.get("sha256"),
            "control_row_count": r.get("control_row_count"), "delivered": r.get("delivered"),
            "loaded": r.get("loaded"), "quarantined": r.get("quarantined"), "held": r.get("held"),
            "balanced": balanced, "quarantine_by_rule": r.get("quarantine_by_rule") or {},
            "extra_columns": r.get("extra_columns") or [], "landed_at": r.get("landed_at"),
        })
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
    results = [(name if getattr(g, "engine", "duckdb") == "duckdb" else f"{g.engine}.{name}", r)
               for g in gates for name, r in getattr(g, "gx_results", [])]
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
        context.add_data_docs_site("run", {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(target)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        run_time = dt.datetime.now(dt.timezone.utc)
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


# --------------------------------------------------------------------------- the report

def build_report(run_id: str, ds: str, gates: list, published: bool, reason: str,
                 airflow_run_id: str | None, published_path: Path | None, p: Paths,
                 published_sha256: str | None = None) -> dict:
    gate_docs = [g.to_dict() for g in gates]
    checks = [c for g in gate_docs for c in g["results"]]
    recs = deliveries(ds, p)
    reasons: dict[str, int] = {}
    for r in recs:
        for rule, n in (r.get("quarantine_by_rule") or {}).items():
            reasons[rule] = reasons.get(rule, 0) + int(n or 0)
    return scrub({
        "report_version": REPORT_VERSION,
        "run_id": run_id,
        "ds": ds,
        "airflow_run_id": airflow_run_id,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "decision": "published" if published else "withheld",
        "reason": reason,
        "published_path": str(published_path.relative_to(p.home)) if published_path else None,
        "published_sha256": published_sha256,
        "summary": {
            "checks": len(checks),
            "evaluated": sum(c["evaluated"] for c in checks),
            "passed": sum(c["status"] == "passed" for c in checks),
            "critical_failures": sum(c["blocking"] for c in checks),
            "warnings": sum(c["severity"] == "warning" and c["status"] in ("failed", "not evaluated")
                            for c in checks),
            "skipped": sum(c["status"] == "skipped" for c in checks),
        },
        "deliveries": recs,
        "quarantine_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "landing_failures": landing_failures(ds, p),
        "gates": gate_docs,
    })


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#1b1b1b;max-width:1400px}
h1{margin:0 0 .2em} h2{margin-top:1.8em;border-bottom:1px solid #ccc}
.decision{padding:1em 1.2em;border-radius:6px;font-size:1.15em;margin:1em 0}
.published{background:#e3f5e1;border:2px solid #2e7d32}
.withheld{background:#fde7e7;border:3px solid #c62828}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td,tr.not-evaluated td{background:#fff0f0} tr.warning.failed td{background:#fff8e1}
tr.skipped td{color:#777}
.check{border-left:6px solid #c62828;background:#fff5f5;padding:.6em 1em;margin:.8em 0}
.check.warning{border-color:#f9a825;background:#fffbea}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0}
.badge{display:inline-block;padding:0 .5em;border-radius:3px;font-size:12px;font-weight:600}
.b-critical{background:#c62828;color:#fff}.b-warning{background:#f9a825;color:#000}
.b-passed{background:#2e7d32;color:#fff}.b-failed{background:#c62828;color:#fff}
.b-not-evaluated{background:#6a1b9a;color:#fff}.b-skipped{background:#999;color:#fff}
.muted{color:#666}
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, ensure_ascii=False, default=str))
    return html.escape(str(value))


def _slug(*parts: str) -> str:
    return "check-" + "-".join("".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(x)) for x in parts)


def _rows_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="sample"><tr>{head}</tr>{body}</table>'


def _engine_of(gate: dict) -> str:
    return gate.get("engine") or "duckdb"


def _check_slug(c: dict, engine: str) -> str:
    # the same suite runs on DuckDB and on PostgreSQL: each check keeps its own anchor
    return _slug(c["suite"], c["id"]) if engine == "duckdb" else _slug(engine, c["suite"], c["id"])


def _check_block(c: dict, engine: str) -> str:
    sev = c["severity"]
    status = c["status"].replace(" ", "-")
    return (
        f'<div class="check {sev}" id="{_check_slug(c, engine)}" data-status="{_e(c["status"])}">'
        f'<strong>{_e(c["suite"])} / {_e(c["id"])}</strong>'
        f'{"" if engine == "duckdb" else " <span class=muted>on " + _e(engine) + "</span>"} '
        f'<span class="badge b-{sev}">{_e(sev)}</span> <span class="badge b-{status}">{_e(c["status"])}</span>'
        f'<div>{_e(c["description"])}</div>'
        f'<div class="muted"><code>{_e(c["expectation_type"])}</code>'
        f'{" on <code>" + _e(c["column"]) + "</code>" if c.get("column") else ""} '
        f'(frame <code>{_e(c["frame"])}</code>)</div>'
        f'<div>Observed: <pre>{_e(c["observed_value"])}</pre></div>'
        f'{"<div>Note: " + _e(c["note"]) + "</div>" if c.get("note") else ""}'
        f'{"<div>Sample failing rows (personal data removed):</div>" + _rows_table(c["failing_rows"]) if c.get("failing_rows") else ""}'
        "</div>"
    )


def render_html(doc: dict) -> str:
    checks = [(c, _engine_of(g)) for g in doc["gates"] for c in g["results"]]
    blocking = [(c, engine) for c, engine in checks if c["blocking"]]
    warnings = [(c, engine) for c, engine in checks
                if c["severity"] == "warning" and c["status"] in ("failed", "not evaluated")]
    decision = doc["decision"]
    s = doc["summary"]
    out = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Validation report {_e(doc['run_id'])} ({_e(doc['ds'])}): {_e(decision)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Validation report: run {_e(doc['run_id'])}</h1>",
        '<table class="meta">',
        f"<tr><th>Business date</th><td id=\"ds\">{_e(doc['ds'])}</td></tr>",
        f"<tr><th>Run id</th><td id=\"run-id\">{_e(doc['run_id'])}</td></tr>",
        f"<tr><th>Airflow run</th><td id=\"airflow-run-id\">{_e(doc['airflow_run_id']) or '<span class=muted>none (not run by Airflow)</span>'}</td></tr>",
        f"<tr><th>Written at</th><td>{_e(doc['written_at'])}</td></tr>",
        f"<tr><th>Published set</th><td>{_e(doc['published_path']) or '<span class=muted>none</span>'}"
        + (f" <span class=muted>SHA-256</span> <code id=\"published-sha256\">{_e(doc['published_sha256'])}</code>"
           if doc.get("published_sha256") else "") + "</td></tr>",
        "</table>",
        f'<div id="decision" class="decision {decision}"><strong>Decision: {decision.upper()}</strong>'
        f' &mdash; <span id="reason">{_e(doc["reason"])}</span><br>'
        f'{s["checks"]} checks, {s["evaluated"]} evaluated, {s["passed"]} passed, '
        f'{s["critical_failures"]} blocking, {s["warnings"]} warnings, {s["skipped"]} skipped.</div>',
        '<p><a href="data_docs/index.html" id="data-docs-link">GX Data Docs of these results</a>'
        + (f' <span class="muted">({_e(doc.get("data_docs_error"))})</span>' if doc.get("data_docs_error") else "")
        + "</p>",
        '<section id="blocking-failures"><h2>Blocking failures (critical)</h2>',
        "".join(_check_block(c, engine) for c, engine in blocking) or "<p>None.</p>",
        "</section>",
        '<section id="warnings"><h2>Warnings</h2>',
        "".join(_check_block(c, engine) for c, engine in warnings) or "<p>None.</p>",
        "</section>",
        '<section id="reconciliation"><h2>Deliveries used and their reconciliation</h2>',
        "<p>delivered = loaded + quarantined + held, per delivery (from landing's reconciliation records).</p>",
        "<table><tr><th>source</th><th>ds</th><th>file</th><th>SHA-256</th><th>control rows</th><th>delivered</th>"
        "<th>loaded</th><th>quarantined</th><th>held</th><th>balanced</th><th>quarantine reasons</th></tr>",
    ]
    for r in doc["deliveries"]:
        bal = {True: "yes", False: "<strong>NO</strong>", None: "?"}[r["balanced"]]
        out.append(
            f"<tr><td>{_e(r['source'])}</td><td>{_e(r['ds'])}</td><td><code>{_e(r['file'])}</code></td>"
            f"<td><code>{_e(r['sha256'])}</code></td><td class=num>{_e(r['control_row_count'])}</td>"
            f"<td class=num>{_e(r['delivered'])}</td><td class=num>{_e(r['loaded'])}</td>"
            f"<td class=num>{_e(r['quarantined'])}</td><td class=num>{_e(r['held'])}</td><td>{bal}</td>"
            f"<td>{_e(', '.join(f'{k}: {v}' for k, v in (r['quarantine_by_rule'] or {}).items()))}</td></tr>")
    if not doc["deliveries"]:
        out.append('<tr><td colspan="11">No reconciliation records found.</td></tr>')
    out.append("</table><h3>Quarantine reasons, all deliveries</h3><table><tr><th>rule</th><th>rows</th></tr>")
    out += [f"<tr><td>{_e(k)}</td><td class=num>{_e(v)}</td></tr>" for k, v in doc["quarantine_reasons"].items()]
    if not doc["quarantine_reasons"]:
        out.append('<tr><td colspan="2">No quarantined rows.</td></tr>')
    out.append("</table></section>")
    out.append('<section id="landing-failures"><h2>Failed deliveries</h2>')
    out.append(_rows_table(doc["landing_failures"]) or "<p>None.</p>")
    out.append("</section>")
    out.append('<section id="all-checks"><h2>Every expectation</h2>')
    for g in doc["gates"]:
        engine = _engine_of(g)
        out.append(f"<h3 id=\"gate-{_e(g['stage'])}-{_e(engine)}\">{_e(g['stage'])} gate"
                   f"{'' if engine == 'duckdb' else ' on ' + _e(engine)}: {'passed' if g['passed'] else 'BLOCKED'}"
                   f" <span class=muted>({_e(g['counts'])}, {g['seconds']}s)</span></h3>")
        if g.get("error"):
            out.append(f"<p class=\"check\">The gate could not run: {_e(g['error'])}</p>")
        out.append("<table><tr><th>suite</th><th>id</th><th>expectation</th><th>column</th><th>severity</th>"
                   "<th>result</th><th>observed</th><th>what it checks</th></tr>")
        for c in g["results"]:
            status = c["status"].replace(" ", "-")
            out.append(
                f'<tr class="{c["severity"]} {status}" id="row-{_check_slug(c, engine)[6:]}">'
                f"<td>{_e(c['suite'])}</td><td>{_e(c['id'])}</td><td><code>{_e(c['expectation_type'])}</code></td>"
                f"<td>{_e(c['column'])}</td><td><span class=\"badge b-{c['severity']}\">{_e(c['severity'])}</span></td>"
                f"<td><span class=\"badge b-{status}\">{_e(c['status'])}</span></td>"
                f"<td><pre>{_e(c['observed_value'])}</pre>{_e(c['note'])}</td><td>{_e(c['description'])}</td></tr>")
        out.append("</table>")
    out.append("</section></body></html>")
    return "\n".join(out)


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
    rows = []
    for _, e in ordered:
        rid = e["run_id"]
        rows.append(
            f'<tr class="{_e(e["decision"])}" id="run-{_e(rid)}"><td>{_e(e["written_at"])}</td>'
            f'<td><a href="{_e(rid)}/report.html">{_e(rid)}</a></td><td>{_e(e["ds"])}</td>'
            f'<td>{_e(e.get("airflow_run_id"))}</td><td><strong>{_e(e["decision"])}</strong></td>'
            f'<td>{_e(e["reason"])}</td><td class=num>{_e(e.get("critical_failures"))}</td>'
            f'<td class=num>{_e(e.get("warnings"))}</td>'
            f'<td><code>report.json {_e(e["report_json_sha256"])}</code><br>'
            f'<code>report.html {_e(e["report_html_sha256"])}</code></td></tr>')
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Validation reports</title>"
        f"<style>{_CSS} tr.withheld td{{background:#fff0f0}}</style></head><body>"
        "<h1>Validation reports</h1><p>Every run, newest first. Reports are written once; the SHA-256 of each "
        "file lets a reviewer confirm it is unchanged (<code>sha256sum &lt;run_id&gt;/report.json</code>). "
        "Source of this page: <a href=\"index.jsonl\">index.jsonl</a> (append-only).</p>"
        "<table><tr><th>written at</th><th>run</th><th>business date</th><th>Airflow run</th><th>decision</th>"
        "<th>why</th><th>blocking</th><th>warnings</th><th>SHA-256</th></tr>"
        + "".join(rows) + "</table></body></html>")


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
        "run_id": doc["run_id"], "ds": doc["ds"], "airflow_run_id": doc.get("airflow_run_id"),
        "written_at": doc["written_at"], "decision": doc["decision"], "reason": doc["reason"],
        "critical_failures": doc["summary"]["critical_failures"], "warnings": doc["summary"]["warnings"],
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


def indexed_run_ids(paths: Paths | None = None) -> set[str]:
    p = paths or default_paths()
    return {e.get("run_id") for e in _index_lines(p.reports / "index.jsonl")}


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"run id {run_id!r} is not usable as a folder name")


def _render(run_id: str, ds: str, gates: list, published: bool, reason: str, airflow_run_id: str | None,
            published_path: Path | None, published_sha256: str | None, p: Paths) -> tuple[Path, dict[str, str]]:
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
        doc = build_report(run_id, ds, gates, published, reason, airflow_run_id, published_path, p,
                           published_sha256)
        doc["data_docs"] = "data_docs/index.html"
        doc["data_docs_error"] = build_data_docs(run_id, gates, staging / "data_docs")
        if doc["data_docs_error"]:
            doc["data_docs"] = None
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
    return staging, {f"{name.replace('.', '_')}_sha256": hashlib.sha256(data).hexdigest()
                     for name, data in files.items()}


def write_report(run_id: str, ds: str, gates: list, published: bool, reason: str,
                 airflow_run_id: str | None = None, published_path: Path | None = None,
                 paths: Paths | None = None) -> Path:
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
        raise ValueError(f"run {run_id}: the report of a published run is written by publish.publish, "
                         "before its set becomes current")
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


def write_publication_report(run_id: str, ds: str, gates: list, reason: str, airflow_run_id: str | None,
                             published_path: Path, published_sha256: str, paths: Paths) -> dict[str, str]:
    """Fix the report of a run about to be published, decision "published": in
    reports/.<run_id>.publishing, on disk, listed nowhere. Returns the SHA-256
    of report.json and report.html (publish records them in the set's manifest).

    Only publish.publish calls it, holding the publish lock; raises ReportExists
    when the run has a report already."""
    final = paths.reports / run_id
    if final.exists():
        raise ReportExists(f"{final} exists: run {run_id} has a report already, and a report is never rewritten")
    staging, checksums = _render(run_id, ds, gates, True, reason, airflow_run_id, published_path, published_sha256,
                                 paths)
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
    return sorted(d.name[1:-len(PUBLISHING)] for d in paths.reports.glob(f".*{PUBLISHING}") if d.is_dir())
