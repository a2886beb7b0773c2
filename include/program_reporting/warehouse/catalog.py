"""What a night records about the warehouse it built, besides the tables:
dbt's source freshness and dbt's docs site, in warehouse/catalog/.

  source_freshness.json  dbt's sources.json of `dbt source freshness`: for each
                         landed source with a freshness check (_raw__sources.yml),
                         its newest `_landed_at`, how old that was when checked,
                         and dbt's status (pass, warn, error, runtime error).
                         The marts gate judges it (expectations/source_freshness.json).
  dbt_docs.html          dbt's docs site as one page that needs no server and
                         no network: dbt's own index.html with the manifest and
                         the catalog inlined, the way `dbt docs generate --static`
                         inlines them.

build.py writes both after a successful `dbt build`, in its own process,
which still holds the warehouse (DuckDB has one writer), and removes them
before it starts, so they are always the latest build's or absent.
stage_audit links them into audit/<run_id>/ beside the candidate set; the
run's report publishes the page under reports/catalog/ (reporting/report.py).

Why not `--static` itself: it inlines the artifacts with their generation time
and invocation id, so every night's page would differ in those bytes alone.
Here they are left out (the page shows neither), and the page is the same
file, byte for byte, for as long as the project and the warehouse's tables
are: reports keep one copy per distinct page. The page also says, whatever
the environment, that usage statistics are off: dbt's page loads its tracker
from a CDN only when the manifest says they are on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from program_reporting.core.settings import Paths

FRESHNESS_FILE = "source_freshness.json"
DOCS_PAGE = "dbt_docs.html"
# metadata that differs on every invocation; dbt's docs page displays none of it
VOLATILE = ("generated_at", "invocation_id", "invocation_started_at", "run_started_at")
# the placeholders of dbt's index.html that --static replaces (dbt/task/docs/generate.py)
MANIFEST_SLOT = '"MANIFEST.JSON INLINE DATA"'
CATALOG_SLOT = '"CATALOG.JSON INLINE DATA"'


def folder(paths: Paths) -> Path:
    return paths.home / "warehouse" / "catalog"


def forget(paths: Paths) -> None:
    """Remove the last build's records: a build that does not get as far as
    writing its own leaves none, rather than the night before's."""
    for name in (FRESHNESS_FILE, DOCS_PAGE):
        (folder(paths) / name).unlink(missing_ok=True)


def freshness_statuses(record: Path) -> dict[str, str]:
    """source name (raw.merchants) -> dbt's status, from a source_freshness.json."""
    doc = json.loads(record.read_text(encoding="utf-8"))
    return {source_name(r.get("unique_id", "")): str(r.get("status")) for r in doc.get("results") or []}


def source_name(unique_id: str) -> str:
    """source.program_reporting.raw.merchants -> raw.merchants"""
    return ".".join(unique_id.split(".")[2:]) or unique_id


def _artifact(path: Path) -> str:
    """A dbt artifact as JSON text for the page: without the metadata that
    changes with every invocation, and safe inside a <script> element."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    meta = doc.get("metadata") or {}
    for key in VOLATILE:
        meta.pop(key, None)
    if "send_anonymous_usage_stats" in meta:
        meta["send_anonymous_usage_stats"] = False
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("</", "<\\/")  # the same JSON; a "</script>" in a description cannot end the element


def write_page(index_html: Path, manifest_json: Path, catalog_json: Path, out: Path) -> Path:
    """dbt's docs index.html with the two artifacts inlined, written to `out`
    atomically (a new file: a link to the previous page keeps its content)."""
    page = index_html.read_text(encoding="utf-8")
    for slot in (MANIFEST_SLOT, CATALOG_SLOT):
        if page.count(slot) != 1:
            raise ValueError(f"{index_html}: expected the placeholder {slot} once (has dbt's docs page changed?)")
    # each slot replaced where it stands in dbt's page, never inside the other's data
    m, c = page.index(MANIFEST_SLOT), page.index(CATALOG_SLOT)
    data = {m: (MANIFEST_SLOT, _artifact(manifest_json)), c: (CATALOG_SLOT, _artifact(catalog_json))}
    pieces, at = [], 0
    for start in sorted(data):
        slot, text = data[start]
        pieces += [page[at:start], text]
        at = start + len(slot)
    page = "".join(pieces) + page[at:]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
