"""Reading one delivery's data file: snapshot, checksum, header, and the DuckDB CSV scan.

The data file is read exactly once from the drop folder: `snapshot` copies
it into a folder of the landing's own, hashing the very bytes it copies, and
refuses it (`delivery_changed`) when it changed while it was read. Everything
after that (the checksum's verdict, the gzip inflation, the header, DuckDB's
parse, line numbers) reads the snapshot, so what lands is what was verified,
whatever the source does to its file meanwhile.

DuckDB parses (RFC 4180, strict mode, every field VARCHAR); Python hashes,
inflates gzip (RFC 1952: every header flag, concatenated members, CRC and
length checked) and reads the header record. Line numbers are CSV record
numbers with the header as line 1: a quoted field's embedded newlines do not
start a new line, a blank line counts as one line (DuckDB's numbering) but is
not a record and is not delivered.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

CHUNK = 1 << 20
# DuckDB reject error types that are a bad record (quarantined, rule field_count)
# rather than a file that is not parseable CSV (delivery rejected).
FIELD_COUNT_ERRORS = ("TOO MANY COLUMNS", "MISSING COLUMNS")
ENCODING_ERRORS = ("INVALID ENCODING", "INVALID UNICODE")
LINE_SIZE_ERROR = "LINE SIZE OVER MAXIMUM"
SNAPSHOT_NAME = "delivered.csv"
QUOTE, COMMA = ord('"'), ord(",")


class CsvError(Exception):
    """The data file cannot be read as a delivery; `cause` is the rejection's cause
    (delivery_changed, unreadable, unreadable_gzip, line_too_long, invalid_utf8,
    unparseable_csv)."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------
# the snapshot


@dataclass(frozen=True)
class Snapshot:
    """The delivered file as it was read once: `path` holds its CSV bytes
    (inflated, if it was delivered gzipped), `sha256` and `size` are those of
    the bytes delivered."""

    path: Path
    sha256: str
    size: int


def _identity(st: os.stat_result) -> tuple:
    # ctime moves on every write, truncate or rename onto the path; mtime and
    # size catch writers on file systems with coarse ctime
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def snapshot(delivered: Path, folder: Path, gzipped: bool) -> Snapshot:
    """Copy `delivered` into `folder`, hashing the bytes as they are copied.

    Raises CsvError("delivery_changed") when the file changed while it was
    read (a source rewriting a delivery in place): its size, times or inode
    moved, or the path now names another file. CsvError("unreadable") when
    it cannot be read. The gzip inflation is `inflate`'s, after the checksum
    is known to match, so that a wrong file is refused before it is inflated."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / (SNAPSHOT_NAME + (".gz" if gzipped else ""))
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(delivered, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CsvError("unreadable", f"cannot read the data file: {exc}") from exc
    try:
        before = _identity(os.fstat(fd))
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
        finally:
            os.close(out)
        after = _identity(os.fstat(fd))
    except OSError as exc:
        raise CsvError("unreadable", f"cannot read the data file: {exc}") from exc
    finally:
        os.close(fd)
    try:
        now = _identity(os.stat(delivered, follow_symlinks=False))
    except OSError:
        now = None
    if before != after or after != now or size != before[2]:
        what = (
            "was replaced by another file"
            if now is None or now[:2] != before[:2]
            else f"was written to ({before[2]} bytes when opened, {size} read, {after[2]} after)"
        )
        raise CsvError(
            "delivery_changed",
            f"the data file changed while it was read: it {what}; a source rewriting a delivery "
            "writes its _control.json last, and the next landing reads the finished delivery",
        )
    return Snapshot(target, digest.hexdigest(), size)


def inflate(snap: Snapshot) -> Snapshot:
    """The gzipped snapshot inflated beside it (the compressed copy removed).

    RFC 1952: a file is one or more members, each with any of the optional
    header fields; every member's CRC-32 and length are checked. Anything
    else is CsvError("unreadable_gzip"), naming the member. Inflated output
    is bounded per call (max_length): a gzip bomb streams to disk, never
    into memory."""
    target = snap.path.with_name(SNAPSHOT_NAME)
    member, consumed = 0, 0
    try:
        with open(snap.path, "rb") as fin, open(target, "xb") as fout:
            os.chmod(target, 0o600)
            inflater = None
            pending = b""
            while True:
                data = pending or fin.read(CHUNK)
                pending = b""
                if not data:
                    break
                if inflater is None:
                    inflater = zlib.decompressobj(wbits=31)  # gzip wrapper only: the header is checked
                    member += 1
                fout.write(inflater.decompress(data, CHUNK))
                while inflater.unconsumed_tail:
                    fout.write(inflater.decompress(inflater.unconsumed_tail, CHUNK))
                consumed += len(data) - len(inflater.unused_data)
                if inflater.eof:
                    pending = inflater.unused_data
                    inflater = None
            if member == 0:
                raise CsvError("unreadable_gzip", "not gzip: the .gz file is empty")
            if inflater is not None:
                raise CsvError(
                    "unreadable_gzip", f"truncated gzip: member {member} ends at byte {consumed} without its trailer"
                )
    except zlib.error as exc:
        raise CsvError("unreadable_gzip", f"not valid gzip in member {member} (after byte {consumed}): {exc}") from exc
    except OSError as exc:
        raise CsvError("unreadable", f"cannot inflate the data file: {exc}") from exc
    os.unlink(snap.path)
    return Snapshot(target, snap.sha256, snap.size)


# --------------------------------------------------------------------------
# the streamed pass beside DuckDB


@dataclass
class Scan:
    """What a streamed pass over the snapshot's CSV bytes found (run in a thread
    beside DuckDB's parse):
    - a blank line before the last record (line numbers then need the slow path);
    - the delimiters outside quotes, which add up to the fields of every record
      (DuckDB silently drops empty fields beyond the header's, "1,2,3,,")."""

    path: Path
    blank_line_inside: bool = False
    separators: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _cancelled: bool = field(default=False, repr=False)

    def start(self) -> Scan:
        self._thread = threading.Thread(target=self._run, name=f"scan-{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> Scan:
        """Wait for the scan; raises CsvError("unreadable") if the bytes could not be read."""
        if self._thread:
            self._thread.join()
        if self.error:
            raise CsvError("unreadable", f"cannot read the data file: {self.error}") from self.error
        return self

    def cancel(self) -> None:
        """Stop the scan (the delivery is rejected anyway) and wait for the thread to end."""
        self._cancelled = True
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            tail = b""
            first_blank = -1  # offset of the first blank line seen
            last_content = -1  # offset of the last byte that is not a line end
            offset = 0
            quoted = False
            with open(self.path, "rb") as fh:
                while not self._cancelled and (text := fh.read(CHUNK)):
                    window = tail + text
                    base = offset - len(tail)
                    if first_blank < 0:
                        hits = [i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i >= 0]
                        if hits:
                            first_blank = base + min(hits) + 1
                    stripped = len(text.rstrip(b"\r\n"))
                    if stripped:
                        last_content = offset + stripped - 1
                    tail = window[-2:]
                    offset += len(text)
                    self.separators, quoted = _count_separators(text, quoted, self.separators)
            self.blank_line_inside = 0 <= first_blank < last_content
        except BaseException as exc:  # reported by wait()
            self.error = exc


def _count_separators(text: bytes, quoted: bool, count: int) -> tuple[int, bool]:
    """Add the commas of `text` outside quoted fields (RFC 4180: an escaped quote
    is two quotes, so the parity of the quotes seen tells inside from outside).
    numpy, not a Python loop: a simulated night's credit events hold five
    million quotes."""
    if b'"' not in text:
        return (count if quoted else count + text.count(b",")), quoted
    import numpy as np  # here, in the scan's thread: its import overlaps DuckDB's parse

    octets = np.frombuffer(text, dtype=np.uint8)
    # quotes seen so far, modulo 256: its parity is all that matters
    parity = np.cumsum(octets == QUOTE, dtype=np.uint8)
    commas = parity[octets == COMMA] + np.uint8(quoted)
    count += int(commas.size - np.count_nonzero(commas & 1))
    return count, bool((int(parity[-1]) + quoted) & 1)


def separators_of(text: str) -> int:
    return _count_separators(text.encode("utf-8", "surrogateescape"), False, 0)[0]


# --------------------------------------------------------------------------
# header, records, DuckDB's parse


def open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig", errors="strict", newline="")


def read_header(path: Path, max_line_bytes: int) -> list[str]:
    """The header record (BOM dropped). Raises CsvError on invalid UTF-8, or when
    no line end comes within max_line_bytes (line_too_long)."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(max_line_bytes + 3)
    except OSError as exc:
        raise CsvError("unreadable", f"cannot read the data file: {exc}") from exc
    first_line = head[: max_line_bytes + 1]
    if len(head) > max_line_bytes and b"\n" not in first_line and b"\r" not in first_line:
        raise CsvError(
            "line_too_long",
            f"line 1 (the header) is longer than {max_line_bytes} bytes (PROGRAM_REPORTING_MAX_LINE_BYTES)",
        )
    # Undecodable bytes after the header are DuckDB's to report, with their line.
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape").decode(head, final=False)
    _raise_field_limit(max_line_bytes)
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True), [])
    except csv.Error as exc:
        raise CsvError("unparseable_csv", f"the header is not parseable CSV: {exc}") from exc
    for name in header:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CsvError("invalid_utf8", f"the header is not valid UTF-8 (column {name!r})") from exc
    return header


def _raise_field_limit(max_line_bytes: int) -> None:
    # the csv module's own limit (128 KiB a field) is not the contract's: lines up to the setting are read
    if csv.field_size_limit() < max_line_bytes:
        csv.field_size_limit(max_line_bytes)


def _records(path: Path, max_line_bytes: int):
    """(line number, fields, raw text) of every record, blank lines included (fields [])."""
    _raise_field_limit(max_line_bytes)
    lines: list[str] = []

    def physical():
        with open_text(path) as fh:
            for line in fh:
                lines.append(line)
                yield line

    reader = csv.reader(physical())
    for number, record in enumerate(reader, start=1):
        raw = "".join(lines).rstrip("\r\n")
        lines.clear()
        yield number, record, raw


def record_lines(path: Path, max_line_bytes: int):
    """Line numbers of the non-blank data records, in file order (slow path, pure Python).

    Used only when a blank line sits between records, since DuckDB skips blank
    lines without telling us where they were."""
    return (number for number, record, _raw in _records(path, max_line_bytes) if number > 1 and record)


def records_with_more_fields(path: Path, ncols: int, max_line_bytes: int, known: set[int]) -> list[tuple]:
    """(line, raw text, message) of the records with more fields than the header
    that DuckDB accepted by dropping their empty extra fields (slow path, pure
    Python, taken only when the separators do not add up). `known`: the lines
    DuckDB rejected already."""
    found = []
    for number, record, raw in _records(path, max_line_bytes):
        if number > 1 and len(record) > ncols and number not in known:
            found.append(
                (
                    number,
                    raw,
                    f"Expected Number of Columns: {ncols} Found: {len(record)} "
                    "(the extra fields are empty; nothing is trimmed)",
                )
            )
    return found


def scan_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    ncols: int,
    max_line_bytes: int,
    select: str = "SELECT * FROM ({rows})",
    table: str = "src",
) -> tuple[int, list[tuple]]:
    """Read the file into `table` through `select` (its {rows}: columns c0..c<n-1>,
    all VARCHAR; a plain projection keeps the file order in rowid). Returns
    (rows read, field-count rejects as (line, raw_text, message)).
    Raises CsvError for invalid UTF-8, a line over max_line_bytes, or a file
    that is not parseable CSV."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols)) + "}"
    path_sql = str(path).replace("'", "''")
    reader = f"""SELECT * FROM read_csv('{path_sql}',
                columns = {columns}, header = true, auto_detect = false,
                delim = ',', quote = '"', escape = '"', comment = '',
                strict_mode = true, null_padding = false, encoding = 'utf-8',
                compression = 'none', max_line_size = {int(max_line_bytes)}, store_rejects = true,
                rejects_table = 'csv_rejects', rejects_scan = 'csv_reject_scans')"""
    try:
        con.execute(f"""
            CREATE TABLE {table} AS {select.replace("{rows}", reader)}""")
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise CsvError("unparseable_csv", f"not parseable CSV: {first}") from exc
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    # DuckDB may file one record under several error types (a line too long and short of fields)
    errors = con.execute("""
        SELECT line, list(DISTINCT error_type ORDER BY error_type), min(csv_line),
               min(error_message) FILTER (WHERE error_type NOT IN ('MISSING COLUMNS', 'TOO MANY COLUMNS')),
               min(error_message)
        FROM csv_rejects GROUP BY line ORDER BY line""").fetchall()
    bad = []
    for line, kinds, text, fatal_message, message in errors:
        fatal = [k for k in kinds if k not in FIELD_COUNT_ERRORS]
        kind = fatal[0] if fatal else kinds[0]
        message = fatal_message if fatal else message
        if kind in ENCODING_ERRORS:
            raise CsvError("invalid_utf8", f"not valid UTF-8 at line {line}")
        if kind == LINE_SIZE_ERROR:
            raise CsvError(
                "line_too_long",
                f"line {line} is longer than {max_line_bytes} bytes (PROGRAM_REPORTING_MAX_LINE_BYTES): {message}",
            )
        if kind not in FIELD_COUNT_ERRORS:
            raise CsvError("unparseable_csv", f"not parseable CSV at line {line}: {kind.lower()}: {message}")
        bad.append((line, (text or "").lstrip("\r\n"), message))
    return rows, bad
