"""Validation reports a compliance team can sign off.

For every run, published or withheld, reports/<run_id>/ holds:

- report.json  machine-readable: run, business date, Airflow run, decision and
               why, the restatements (the published cells the run's set
               changes and the deliveries that caused it: restatements.py,
               on the candidate set while it is in audit/), the deliveries used
               (checksums, reconciliation, quarantine reasons), landing
               failures, every expectation with severity, observed value,
               result and sample failing rows (no personal data)
- report.html  the same for people: one self-contained file (inline CSS, no
               scripts, no external assets; templates/report.html.j2);
               the restatements first when there are any, then blocking failures
- data_docs/   the GX Data Docs of the same results, built offline
- SHA256SUMS   the SHA-256 of every other file of the folder as the report
               was written, in `sha256sum -c` format (write_manifest)

and the report links the dbt docs of the warehouse the run built, published
in reports/catalog/<sha256>.html (place_docs_page): one file per distinct
page, so the nights that built the same project share one, never rewritten.
The run's OpenLineage events come later, in lineage/events.jsonl (the
orchestration's report task): the one file SHA256SUMS cannot cover.

A report is written once: the folder is built under a temporary name and
renamed into place, its files are read-only, and writing a report for a run
that has one is refused.

reports/index.jsonl is the append-only history, one line per report: its
run, date, decision, the SHA-256 of report.json, report.html and SHA256SUMS,
and `prev_sha256`, the SHA-256 of the line before it (its exact bytes, without
the newline; GENESIS, 64 zeros, on the first line). So the lines form a hash
chain: a line removed or edited in place breaks it at the next line, and
`program-reporting verify-reports` (verify.py) re-hashes the chain and every
file. reports/index.html and the pages beside it are regenerated from the
index after every append (index_pages): 50 runs a page, newest first, with
the same lists of the published runs, of the withheld ones, and of the runs
of each business month.

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
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from program_reporting.core import checksums
from program_reporting.core.checksums import sha256_file
from program_reporting.core.durable import fsync_dir, fsync_file
from program_reporting.core.redaction import scrub
from program_reporting.core.settings import Paths, parse_ds
from program_reporting.core.settings import paths as default_paths
from program_reporting.reporting import restatements
from program_reporting.reporting.templating import render
from program_reporting.warehouse.catalog import DOCS_PAGE

log = logging.getLogger(__name__)

REPORT_VERSION = 1
READ_ONLY = 0o444
PUBLISHING = ".publishing"  # reports/.<run_id>.publishing: a publication's report, fixed, not yet in place
DOCS_FOLDER = "catalog"  # reports/catalog/<sha256>.html: the dbt docs pages the reports link
INDEX = "index.jsonl"
MANIFEST = "SHA256SUMS"  # reports/<run_id>/SHA256SUMS: every file of the report as written
GENESIS = "0" * 64  # the prev_sha256 of index.jsonl's first line: no line before it
# Written into a report folder after its report and index line (orchestration.lineage's
# archive, by the report task): the one path SHA256SUMS cannot cover.
LATER_ADDITIONS = ("lineage/events.jsonl",)
PAGE_SIZE = 50  # runs on one page of reports/index.html and the pages beside it


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
    restated: dict | None = None,
) -> dict:
    """The report's content. `restated`: the run's restatements section
    (restatements.section; already safe to show: figures verbatim, text scrubbed)."""
    gate_docs = [g.to_dict() for g in gates]
    checks = [c for g in gate_docs for c in g["results"]]
    recs = deliveries(ds, p)
    reasons: dict[str, int] = {}
    for r in recs:
        for rule, n in (r.get("quarantine_by_rule") or {}).items():
            reasons[rule] = reasons.get(rule, 0) + int(n or 0)
    doc = scrub(
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
            "restatements": None,  # below: not scrubbed again, a redaction pattern could match an amount's digits
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
    doc["restatements"] = restated
    return doc


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


CELLS_SHOWN = 100  # changed cells report.html shows per table; report.json lists more, and counts them all


def restated_tables(section: dict | None) -> list[dict]:
    """The tables of a restatements section as the page shows them: at most
    CELLS_SHOWN changed cells each, with how many more there are."""
    shown = []
    for table in (section or {}).get("tables") or []:
        changes = table.get("changes") or []
        shown.append(
            {**table, "changes": changes[:CELLS_SHOWN], "not_shown": table["cells"] - min(len(changes), CELLS_SHOWN)}
        )
    return shown


def render_html(doc: dict) -> str:
    checks = [(c, _engine_of(g)) for g in doc["gates"] for c in g["results"]]
    restated = doc.get("restatements") or {}
    causes = [d for kind in restated.get("causes") or [] for d in kind["deliveries"]]
    return render(
        "report.html.j2",
        doc=doc,
        restated=restated,
        restated_tables=restated_tables(restated),
        cause_number={d["id"]: n for n, d in enumerate(causes, start=1)},
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
    # "\n" alone ends a line (the chain hashes lines so): str.splitlines would also split
    # a reason at U+2028, which json.dumps(ensure_ascii=False) leaves as it is.
    for line in index.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                log.error("%s: skipping an unreadable line", index)
    return lines


def line_sha256(line: bytes) -> str:
    """What the next line of index.jsonl carries as prev_sha256: the SHA-256 of
    this line's exact bytes, without its newline."""
    return hashlib.sha256(line).hexdigest()


def chain_head(data: bytes) -> str:
    """The prev_sha256 of a line appended to an index whose bytes are `data`."""
    if not data:
        return GENESIS
    # a file that does not end in a newline ends in a line cut short: index_reports
    # ends it first, so that line stays one of its own (and verify-reports names it)
    last = data[:-1] if data.endswith(b"\n") else data
    return line_sha256(last.rsplit(b"\n", 1)[-1])


# --------------------------------------------------------------------------- the index pages


def _page_name(key: str, page: int) -> str:
    return f"{key}.html" if page == 1 else f"{key}-{page}.html"


# Every page name index_pages makes, and no other file of reports/: what stale_pages may remove.
PAGE_NAME = re.compile(r"^(index|published|withheld|ds-\d{4}-\d{2})(-[1-9]\d*)?\.html$")


def _month(value: object) -> str | None:
    text = str(value or "")
    return text[:7] if re.match(r"^\d{4}-\d{2}", text) else None


def _pager(key: str, page: int, pages: int) -> list[tuple[str, str | None]]:
    """(label, file or None): the first and last pages, two either side of this one, ... between."""
    shown = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    out: list[tuple[str, str | None]] = []
    for n, previous in zip(shown, [0, *shown], strict=False):
        if n - previous > 1:
            out.append(("…", None))
        out.append((str(n), None if n == page else _page_name(key, n)))
    return out


def index_pages(entries: list[dict], page_size: int = PAGE_SIZE) -> dict[str, str]:
    """The pages of the report index, file name -> HTML, from the lines of index.jsonl.

    Lists, each newest first (by written_at, then line order) and cut into pages
    of `page_size`: every run (index.html, index-2.html, ...), the published runs
    (published.html, ...), the withheld runs (withheld.html, ...) and the runs of
    each business month (ds-2020-06.html, ...). Every page links the lists and
    its neighbours; rows are headed by the month they were written in."""
    newest = [
        e for _, e in sorted(enumerate(entries), key=lambda ie: (ie[1].get("written_at", ""), ie[0]), reverse=True)
    ]
    lists = [
        ("index", "All runs", newest),
        ("published", "Published runs", [e for e in newest if e.get("decision") == "published"]),
        ("withheld", "Withheld runs", [e for e in newest if e.get("decision") == "withheld"]),
    ]
    months = sorted({m for e in newest if (m := _month(e.get("ds")))}, reverse=True)
    lists += [
        (f"ds-{m}", f"Runs for business dates in {m}", [e for e in newest if _month(e.get("ds")) == m]) for m in months
    ]
    nav = [(title, _page_name(key, 1), len(runs)) for key, title, runs in lists[:3]]
    month_nav = [(key[3:], _page_name(key, 1), len(runs)) for key, _, runs in lists[3:]]
    pages = {}
    for key, title, runs in lists:
        count = max(1, -(-len(runs) // page_size))
        for page in range(1, count + 1):
            rows, previous_month = [], None
            for e in runs[(page - 1) * page_size : page * page_size]:
                written = _month(e.get("written_at"))
                rows.append((written if written != previous_month else None, e))
                previous_month = written
            pages[_page_name(key, page)] = render(
                "report_index.html.j2",
                title=title,
                key=key,
                page=page,
                pages=count,
                total=len(runs),
                first=(page - 1) * page_size + 1,
                rows=rows,
                newer=_page_name(key, page - 1) if page > 1 else None,
                older=_page_name(key, page + 1) if page < count else None,
                pager=_pager(key, page, count),
                nav=nav,
                month_nav=month_nav,
            )
    return pages


def render_index(entries: list[dict]) -> dict[str, str]:
    """Every page of the report index (index_pages)."""
    return index_pages(entries)


def write_index_pages(reports: Path, pages: dict[str, str]) -> None:
    """Write the index pages into reports/, each through a temporary file and
    os.replace (a reader opens an old page or a new one, never half of one),
    index.html last, so that the pages it links are there first; then remove
    the pages of an earlier index that this one no longer has. A page whose
    bytes are the same is left alone."""
    for name in sorted(pages, key=lambda n: n == "index.html"):
        data = pages[name].encode("utf-8")
        target = reports / name
        try:
            if target.read_bytes() == data:
                continue
        except OSError:
            pass
        tmp = reports / f".{name}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    for stale in stale_pages(reports, pages):
        stale.unlink(missing_ok=True)


def stale_pages(reports: Path, pages: Iterable[str]) -> list[Path]:
    keep = set(pages)
    return sorted(f for f in reports.iterdir() if PAGE_NAME.match(f.name) and f.name not in keep and f.is_file())


# --------------------------------------------------------------------------- writing the index


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


def entry_fields(doc: dict) -> dict:
    """What an index line says of a report, from its report.json (the SHA-256 of its files apart)."""
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
    }


def index_entry(folder: Path) -> dict:
    """The index line of the report in `folder`, its prev_sha256 apart: what report.json
    says and the SHA-256 of its files as they are now."""
    doc = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    if doc["run_id"] != folder.name:
        raise ValueError(f"it names run {doc['run_id']!r}")
    manifest = folder / MANIFEST
    return {
        **entry_fields(doc),
        "report_json_sha256": sha256_file(folder / "report.json"),
        "report_html_sha256": sha256_file(folder / "report.html"),
        # None: a report written before reports had SHA256SUMS (only its two files are covered)
        "sha256sums_sha256": sha256_file(manifest) if manifest.is_file() else None,
    }


def index_reports(paths: Paths | None = None) -> list[str]:
    """Append every report in reports/ that index.jsonl does not list yet, in the
    order they were written, each line chained to the one before it
    (prev_sha256), and regenerate the index pages. Returns the run ids added.

    Each writer indexes its report right after writing it; a report whose
    writer was killed or failed before that (a publication killed between the
    swap and its index entry, say) is added by the next call, whoever makes it."""
    p = paths or default_paths()
    p.reports.mkdir(parents=True, exist_ok=True)
    index = p.reports / INDEX
    with open(p.reports / ".index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        listed = {e.get("run_id") for e in _index_lines(index)}
        new = []
        for folder in sorted(p.reports.iterdir()):
            # hidden names are staging folders and reports of publications not yet made
            if folder.name.startswith(".") or folder.name in listed or not (folder / "report.json").is_file():
                continue
            try:
                new.append(index_entry(folder))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("%s is not indexed: its report.json is unreadable or altered (%s)", folder, exc)
        if not new:
            return []
        new.sort(key=lambda e: (e["written_at"], e["run_id"]))
        data = index.read_bytes() if index.exists() else b""
        prev = chain_head(data)
        lines = [] if not data or data.endswith(b"\n") else [b""]  # a line cut short stays on its own
        for entry in new:
            line = json.dumps({"prev_sha256": prev, **entry}, ensure_ascii=False).encode("utf-8")
            lines.append(line)
            prev = line_sha256(line)
        with open(index, "ab") as fh:
            fh.write(b"\n".join(lines) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        write_index_pages(p.reports, render_index(_index_lines(index)))
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
    return {e.get("run_id") for e in _index_lines(p.reports / INDEX)}


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
    and on disk (fsynced), SHA256SUMS last. Returns the folder and the SHA-256
    of report.json, report.html and SHA256SUMS."""
    parse_ds(ds)
    _check_run_id(run_id)
    p.reports.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(p.reports)
    staging = p.reports / f".{run_id}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        # what the run's set changes of the published one, read while the set is still the candidate
        restated = restatements.section(run_id, ds, p.audit / run_id / "kpi.duckdb", published, p)
        doc = build_report(
            run_id, ds, gates, published, reason, airflow_run_id, published_path, p, published_sha256, restated
        )
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
        manifest = write_manifest(staging)
        fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, {
        **{f"{name.replace('.', '_')}_sha256": hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "sha256sums_sha256": hashlib.sha256(manifest).hexdigest(),
    }


def report_files(folder: Path) -> Iterator[str]:
    """Every file under a report folder, as a path relative to it ("data_docs/index.html"), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        # a symbolic link to a folder is listed, not followed: it is a file here, and not one we wrote
        found += [(base / name).as_posix() for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]]
    return iter(sorted(found))


def write_manifest(folder: Path) -> bytes:
    """folder/SHA256SUMS: one line `<sha256>  <path>` per file of the folder
    (`sha256sum -c SHA256SUMS` in the folder checks them), read-only, on disk.
    Returns its bytes."""
    lines = []
    for rel in report_files(folder):
        if "\n" in rel or "\\" in rel:  # sha256sum would escape such a name; GX and we never make one
            raise ValueError(f"{folder / rel}: a report file name may not hold a newline or a backslash")
        lines.append(f"{checksums.sha256_file(folder / rel)}  {rel}\n")
    data = "".join(lines).encode("utf-8")
    target = folder / MANIFEST
    with open(target, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(target, READ_ONLY)
    return data


def read_manifest(data: bytes) -> dict[str, str]:
    """SHA256SUMS's lines as {path: sha256}; ValueError on a line that is not `<64 hex>  <path>`."""
    out = {}
    for n, line in enumerate(data.decode("utf-8").split("\n"), 1):
        if not line:
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not match:
            raise ValueError(f"line {n} is not '<sha256>  <file>': {line[:80]!r}")
        out[match[2]] = match[1]
    return out


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
    of report.json, report.html and SHA256SUMS (publish records them in the
    set's manifest).

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
