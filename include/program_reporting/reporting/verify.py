"""Has any report been altered since it was written? Re-hash every report
file and the chain of reports/index.jsonl, and say.

What is checked (reporting/report.py writes what it checks):

  the chain    each line of index.jsonl carries prev_sha256, the SHA-256 of
               the line before it (its exact bytes without the newline; 64
               zeros on the first line). A line removed, inserted, moved or
               edited in place breaks the chain at the line after it.
  each line    its report folder reports/<run_id>/ is there; report.json and
               report.html have the SHA-256 the line gives; the line says what
               report.json says (run, date, decision, reason, counts, dbt docs),
               which catches an edit of the last line too; SHA256SUMS has the
               SHA-256 the line gives, and every file it lists (the Data Docs
               among them) has its SHA-256; a published run's set
               (published/runs/<run_id>/manifest.json) names the same SHA-256.
  each folder  no file the report was not written with (lineage/events.jsonl,
               which the report task adds after, is the one exception, and is
               not covered); no report folder missing from the index.
  dbt docs     every page in reports/catalog/ is named by its SHA-256, and the
               page each line links is there.

Exit 0 means nothing was altered: a short summary (reports, index lines,
files re-hashed) and the chain head, the SHA-256 of the last line. Keep
that head elsewhere (a ticket, an e-mail): `--head` then checks that the
index still holds that line, which also catches the index cut back or
rewritten whole since. Exit 1 names the first break (which index line,
which run, which file; expected and found SHA-256) and then lists every
problem. Exit 2: the arguments are wrong.

Lines written before the chain (no prev_sha256) are accepted at the top of
the index only, and counted; so are reports written before SHA256SUMS
(their report.json and report.html are covered, nothing else).

Examples:
  program-reporting verify-reports
  program-reporting verify-reports --head 3f0c9e5b...  # a head you recorded
  program-reporting verify-reports --reports /mnt/archive/reports  # a copy
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from program_reporting.core.checksums import sha256_file
from program_reporting.reporting.report import (
    DOCS_FOLDER,
    GENESIS,
    INDEX,
    LATER_ADDITIONS,
    MANIFEST,
    index_entry,
    line_sha256,
    read_manifest,
    report_files,
)

# Folders of reports/ that are no run's report: the dbt docs pages, and the PPP
# comparison (tools.ppp.compare) which is rewritten by design.
NOT_REPORTS = (DOCS_FOLDER, "ppp_comparison")
# A file the index line names, and its key there.
LINE_FILES = {"report.json": "report_json_sha256", "report.html": "report_html_sha256"}
DOCS_PAGE_NAME = re.compile(r"^[0-9a-f]{64}\.html$")


@dataclass(frozen=True)
class Problem:
    where: str  # "index line 3 (run 2020-06-05_...)", or the folder or file for what no line names
    what: str
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}"
        if self.expected is not None or self.found is not None:
            text += f"\n    expected {self.expected}\n    found    {self.found}"
        return text


@dataclass
class Verification:
    reports: Path
    lines: int = 0
    report_folders: int = 0
    files: int = 0  # files re-hashed
    docs_pages: int = 0
    head: str = GENESIS  # the SHA-256 of the last line: what a line appended next will carry
    unchained: int = 0  # lines at the top written before the chain (no prev_sha256)
    before_manifests: int = 0  # reports written before SHA256SUMS
    not_covered: list[str] = field(default_factory=list)  # later additions (lineage), there but unchecked
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, what: str, expected: str | None = None, found: str | None = None) -> None:
        self.problems.append(Problem(where, what, expected, found))

    def summary(self) -> str:
        text = (
            f"{self.report_folders} reports, {self.lines} index lines, {self.docs_pages} dbt docs pages; "
            f"{self.files} files re-hashed"
        )
        notes = []
        if self.unchained:
            notes.append(f"index lines 1-{self.unchained} predate the chain (no prev_sha256)")
        if self.before_manifests:
            notes.append(f"{self.before_manifests} reports predate SHA256SUMS (report.json and report.html checked)")
        if self.not_covered:
            notes.append(f"{len(self.not_covered)} files added after their report not covered ({LATER_ADDITIONS[0]})")
        return text + "".join(f"\n  note: {n}" for n in notes)


def verify(reports: Path, runs: Path | None = None, head: str | None = None) -> Verification:
    """Check reports/ (see the module's docstring); `runs` is published/runs/ for the
    published sets' manifests (skipped when None or absent); `head` a chain head recorded earlier."""
    v = Verification(reports)
    if not reports.is_dir():
        if head is not None and head != GENESIS:
            v.add(str(reports), "is not there, so no line of it has the SHA-256 given as --head", head, "no index")
        return v
    data, names = _snapshot(reports)
    lines = data.split(b"\n")
    cut_short = lines.pop() != b""  # "" after the newline that ends the last line
    if not data:
        lines = []
    hashes = [line_sha256(line) for line in lines]
    v.lines, v.head = len(lines), (hashes[-1] if hashes else GENESIS)
    first_line_of = {}
    for n, h in enumerate(hashes, 1):
        first_line_of.setdefault(h, n)

    indexed: dict[str, int] = {}
    chained = False
    for n, raw in enumerate(lines, 1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            v.add(f"index line {n}", f"is not a JSON object: {raw[:80]!r}")
            continue
        run = entry.get("run_id")
        where = f"index line {n} (run {run})"
        if raw != json.dumps(entry, ensure_ascii=False).encode("utf-8"):
            v.add(where, "is not as the index's writer writes it (json.dumps): edited by hand")
        if "prev_sha256" not in entry:
            if chained:
                v.add(where, "has no prev_sha256, after lines that have: it was edited or put in")
            else:
                v.unchained += 1
        else:
            chained = True
            expected = hashes[n - 2] if n > 1 else GENESIS
            if entry["prev_sha256"] != expected:
                v.add(where, _chain_break(n, entry["prev_sha256"], first_line_of), expected, entry["prev_sha256"])
        if not isinstance(run, str) or not run or "/" in run or run.startswith(".") or run in NOT_REPORTS:
            v.add(where, "names no run whose report could be in reports/")
        elif run in indexed:
            v.add(where, f"lists run {run} again (it is on line {indexed[run]})")
        else:
            indexed[run] = n
            _check_report(v, reports, runs, where, entry)
    if cut_short:
        v.add(f"index line {len(lines)}", "has no newline: cut short, or added by hand")
    if head is not None and head not in first_line_of and not (head == GENESIS and not lines):
        v.add(
            INDEX,
            "has no line with the SHA-256 given as --head: lines were removed or rewritten since it was the head",
            head,
            f"head {v.head}",
        )

    for name in names:
        folder = reports / name
        if name.startswith(".") or name in indexed or name in NOT_REPORTS or not folder.is_dir():
            continue
        if (folder / "report.json").exists():
            v.add(
                f"reports/{name}/",
                "is a report that is not in the index: its line was removed, or its writer stopped before "
                "indexing it (the next report written adds it)",
            )
        else:
            v.add(f"reports/{name}/", "is a folder in reports/ that no index line names, and no report")
    _check_docs_pages(v, reports)
    return v


def _chain_break(n: int, prev: object, first_line_of: dict[str, int]) -> str:
    if n == 1:
        return "is the first line but does not carry the genesis value: the lines before it were removed"
    at = first_line_of.get(prev) if isinstance(prev, str) else None
    if at is None:
        return (
            f"does not follow line {n - 1} (its prev_sha256 is no line's SHA-256): a line between them "
            f"was removed, or line {n - 1} was edited in place"
        )
    if at < n - 1:
        return f"was written right after line {at}: lines {at + 1}-{n - 1} were put in or moved here"
    return f"was written after line {at}, which comes later: the lines were reordered"


def _snapshot(reports: Path) -> tuple[bytes, list[str]]:
    """The index's bytes and reports/'s names, read while no writer appends (index_reports's lock)."""
    with _shared_lock(reports / ".index.lock"):
        index = reports / INDEX
        data = index.read_bytes() if index.exists() else b""
        return data, sorted(os.listdir(reports))


@contextlib.contextmanager
def _shared_lock(path: Path) -> Iterator[None]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - held for the block; read access is enough for flock
    except OSError:  # no writer made it yet, or not ours to open: read without it
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        yield


def _hash(path: Path) -> str | None:
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None


def _check_report(v: Verification, reports: Path, runs: Path | None, where: str, entry: dict) -> None:
    run = entry["run_id"]
    folder = reports / run
    if not folder.is_dir():
        v.add(where, f"its report folder reports/{run}/ is gone")
        return
    v.report_folders += 1
    for name, key in LINE_FILES.items():
        found = _hash(folder / name)
        v.files += found is not None
        if found != entry.get(key):
            v.add(
                where, f"reports/{run}/{name} is {'altered' if found else 'gone'}", entry.get(key), found or "no file"
            )
    try:
        written = index_entry(folder)  # what the writer makes of the folder as it is
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        v.add(where, f"reports/{run}/report.json cannot be read as the report of run {run}: {exc!r}")
        written = {}
    for key, value in written.items():
        if key in LINE_FILES.values() or key == "sha256sums_sha256":
            continue  # the files: checked one by one
        if key not in entry:
            v.add(where, f"the line has no {key}, which every line has")
        elif entry[key] != value:
            v.add(where, f"the line's {key} is not what reports/{run}/report.json says", _str(value), _str(entry[key]))
    if written:
        for key in sorted(set(entry) - set(written) - {"prev_sha256"}):
            v.add(where, f"the line has a field {key!r} that no writer of the index adds")
    _check_files(v, folder, where, entry)

    if entry.get("dbt_docs") and not (reports / str(entry["dbt_docs"])).is_file():
        v.add(where, f"its dbt docs page reports/{entry['dbt_docs']} is gone")
    if entry.get("decision") == "published" and runs is not None and runs.is_dir():
        _check_published_manifest(v, runs, where, entry)


def _check_files(v: Verification, folder: Path, where: str, entry: dict) -> None:
    """Every file of the folder against its SHA256SUMS, whose SHA-256 the line gives."""
    run, sums = folder.name, entry.get("sha256sums_sha256")
    present = set(report_files(folder))
    if sums is None:  # a report from before SHA256SUMS: the line's two files are all there is to check
        v.before_manifests += 1
        if MANIFEST in present:
            v.add(where, f"reports/{run}/{MANIFEST} is there, but the line names none: it was added since")
        return
    found = _hash(folder / MANIFEST)
    v.files += found is not None
    if found != sums:
        v.add(where, f"reports/{run}/{MANIFEST} is {'altered' if found else 'gone'}", sums, found or "no file")
    try:
        listed = read_manifest((folder / MANIFEST).read_bytes())
    except (OSError, ValueError) as exc:  # which files belong is unknown: none is called added
        v.add(where, f"reports/{run}/{MANIFEST} cannot be read: {exc}")
        return
    for rel, expected in sorted(listed.items()):
        got = _hash(folder / rel)
        if rel in LINE_FILES:
            if got != entry.get(LINE_FILES[rel]):
                continue  # reported against the line already
        else:
            v.files += got is not None
        if got != expected:
            v.add(where, f"reports/{run}/{rel} is {'altered' if got else 'gone'}", expected, got or "no file")
    for rel in sorted(present - set(listed) - {MANIFEST}):
        if rel in LATER_ADDITIONS:
            v.not_covered.append(f"reports/{run}/{rel}")
        elif not _in_progress(rel):
            v.add(where, f"reports/{run}/{rel} was added after the report was written (it is not in {MANIFEST})")


def _check_published_manifest(v: Verification, runs: Path, where: str, entry: dict) -> None:
    """The published set names its report's SHA-256 (publish.publish): they must be the line's."""
    run = entry["run_id"]
    manifest = runs / run / "manifest.json"
    try:
        named = json.loads(manifest.read_text(encoding="utf-8")).get("report") or {}
    except (OSError, ValueError, AttributeError) as exc:
        v.add(where, f"says published, but published/runs/{run}/manifest.json cannot be read: {exc}")
        return
    for key in (*LINE_FILES.values(), "sha256sums_sha256"):
        if key in named and named[key] != entry.get(key):
            v.add(where, f"published/runs/{run}/manifest.json names another {key}", entry.get(key), named[key])


def _check_docs_pages(v: Verification, reports: Path) -> None:
    folder = reports / DOCS_FOLDER
    if not folder.is_dir():
        return
    for page in sorted(folder.iterdir()):
        if page.name.startswith("."):  # a page being written (place_docs_page's temporary file)
            continue
        if not DOCS_PAGE_NAME.match(page.name) or not page.is_file():
            v.add(f"reports/{DOCS_FOLDER}/{page.name}", "is no dbt docs page named by its SHA-256")
            continue
        found = _hash(page)
        v.files += 1
        v.docs_pages += 1
        if found != page.name.removesuffix(".html"):
            v.add(f"reports/{DOCS_FOLDER}/{page.name}", "is altered: its name is its SHA-256", page.stem, found)


def _in_progress(rel: str) -> bool:
    """A temporary folder of a writer still running (lineage's archive: .lineage.<pid>.tmp/)."""
    match = re.match(r"^\.[^/]+\.(\d+)\.tmp(/|$)", rel)
    if not match:
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _str(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
