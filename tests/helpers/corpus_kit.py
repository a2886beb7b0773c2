"""Build and land the bad-input corpus of tests/data/corpus/cases.yaml.

A case names a delivery (built from good rows with overrides, or from CSV
text, plus byte patches, gzip, truncation and control-file edits, or by a
maker function below for cases too big or too odd for YAML) and the outcome
landing must give it. Nothing big is committed: makers generate at test time.

Every case lands into a fresh copy of a base warehouse home in which the
merchants M1..M3 (SPARK-2020) were landed for 2020-06-02, so credit events
and reports of those merchants are not orphans.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers.deliveries import amount_total, csv_text, row, write_delivery
from program_reporting.core import contract
from program_reporting.core.settings import Paths

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus" / "cases.yaml"
BASE_DS = "2020-06-02"
DS = "2020-06-03"
REPO = Path(__file__).resolve().parents[2]


def load_cases() -> list[dict]:
    cases = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases


def unescape(text: str) -> bytes:
    """YAML text with \\xNN escapes -> bytes (UTF-8 for the rest)."""
    return codecs.escape_decode(text.encode("utf-8"))[0]


def base_home(paths: Paths) -> None:
    """Land the merchants every case relies on."""
    from program_reporting.landing import land as landing

    write_delivery(paths.drop, "merchants", BASE_DS, [row("merchants", i) for i in (1, 2, 3)])
    record = landing.land("merchants", BASE_DS, paths)
    assert record["loaded"] == 3, record


# --------------------------------------------------------------------------
# building a case's delivery


def _rows(case: dict) -> list[dict]:
    source = case.get("source", "credit_events")
    overrides = case.get("rows", [{}, {}, {}])
    out = []
    for n, o in enumerate(overrides, start=1):
        r = row(source, n)
        if source != "merchants":
            r["merchant_id"] = f"M{(n - 1) % 3 + 1}"
        r.update({k: ("" if v is None else str(v)) for k, v in o.items()})
        out.append(r)
    return out


def _text_rows(source: str, data: bytes) -> list[dict]:
    """The records of CSV text as the source system meant them (for row_count/amount_total)."""
    text = data.decode("utf-8-sig", errors="replace")
    records = list(csv.reader(io.StringIO(text, newline="")))
    if not records:
        return []
    header = records[0]
    return [dict(zip(header, r)) for r in records[1:] if r]


def build(case: dict, paths: Paths) -> Path:
    """Write the case's delivery into the drop folder; returns the delivery folder."""
    source = case.get("source", "credit_events")
    ds = case.get("ds", DS)
    if case.get("make"):
        return MAKERS[case["make"]](case, paths)
    columns = case.get("columns") or contract.column_names(source)
    if "text" in case:
        header = ",".join(contract.column_names(source))
        data = unescape(case["text"].replace("{header}", header))
        meant = _text_rows(source, data)
    else:
        meant = _rows(case)
        data = csv_text(meant, columns, "\r\n" if case.get("crlf") else "\n").encode("utf-8")
    if case.get("bom"):
        data = b"\xef\xbb\xbf" + data
    for old, new in case.get("patch", []):
        old_b, new_b = unescape(old), unescape(new)
        assert old_b in data, f"{case['id']}: patch target {old!r} not in the file"
        data = data.replace(old_b, new_b, 1 if case.get("patch_once") else -1)
    gz = bool(case.get("gz"))
    intended = gzip.compress(data, mtime=0) if gz else data
    delivered = intended[: len(intended) - case["cut"]] if case.get("cut") else intended
    checksum_of = intended if case.get("checksum_of") == "intended" else delivered
    control = {
        "sha256": hashlib.sha256(checksum_of).hexdigest(),
        "row_count": case.get("row_count", len(meant)),
    }
    if source == "credit_events":
        control["amount_total"] = amount_total(meant)
    control.update(case.get("control", {}))
    folder = write_delivery(
        paths.drop,
        source,
        ds,
        [],
        gz=gz,
        data=b"",
        control=control,
        control_text=unescape(case["control_text"]).decode("utf-8", "surrogateescape")
        if "control_text" in case
        else None,
    )
    (folder / contract.data_file_name(source, gz)).write_bytes(delivered)
    if "control_bytes" in case:
        (folder / contract.CONTROL_FILE).write_bytes(unescape(case["control_bytes"]))
    ctl_path = folder / contract.CONTROL_FILE
    for old, new in case.get("control_patch", []):
        text = ctl_path.read_text(encoding="utf-8")
        assert old in text, f"{case['id']}: control patch target {old!r} not in {text}"
        ctl_path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def _fix_control(folder: Path, source: str, data_path: Path | None = None, **keys) -> None:
    ctl_path = folder / contract.CONTROL_FILE
    ctl = json.loads(ctl_path.read_text(encoding="utf-8"))
    if data_path is not None:
        h = hashlib.sha256()
        with open(data_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        ctl["sha256"] = h.hexdigest()
    ctl.update(keys)
    ctl_path.write_text(json.dumps(ctl), encoding="utf-8")


# --------------------------------------------------------------------------
# makers: generated at test time


def _good(case: dict, paths: Paths, **kw) -> Path:
    source = case.get("source", "credit_events")
    return write_delivery(paths.drop, source, case.get("ds", DS), _rows(case), **kw)


def make_field_10mb(case, paths):
    rows = _rows(case)
    rows[1]["credit_line_id"] = "L" + "x" * (10 * 1024 * 1024)
    return write_delivery(paths.drop, "credit_events", DS, rows)


def make_nul_run(case, paths):
    """A run of `nul_bytes` NUL bytes (what a crashed writer leaves in preallocated
    space) as a line of its own between records, or at the end of the file
    (`at: end`, no line end); the source's control counts it as a record."""
    rows = _rows(case)
    lines = csv_text(rows, contract.column_names("credit_events"), "\n").encode("utf-8").split(b"\n")
    run = b"\0" * case["nul_bytes"]
    if case.get("at") == "end":
        data = b"\n".join(lines[:-1]) + b"\n" + run
    else:
        data = b"\n".join(lines[:2] + [run] + lines[2:])
    folder = write_delivery(paths.drop, "credit_events", DS, rows, data=data, row_count=len(rows) + 1)
    return folder


def _bomb_header(fh, total: int, piece: bytes) -> None:
    left = total
    while left > 0:
        n = min(left, len(piece))
        fh.write(piece[:n])
        left -= n


def make_csv_bomb_plain(case, paths):
    """A header of 64 MiB of commas (67 million empty column names), streamed to disk."""
    folder = write_delivery(paths.drop, "credit_events", DS, [])
    data = folder / "credit_events.csv"
    with open(data, "wb") as fh:
        _bomb_header(fh, 64 << 20, b"," * (1 << 20))
        fh.write(b"\n")
    _fix_control(folder, "credit_events", data, row_count=0)
    return folder


def make_csv_bomb_gzip(case, paths):
    """A billion empty columns: a header of 10^9 commas, about 1 MB gzipped."""
    folder = write_delivery(paths.drop, "credit_events", DS, [], gz=True)
    data = folder / "credit_events.csv.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    piece = b"," * (1 << 22)
    left = 1_000_000_000
    with open(data, "wb") as fh:
        while left > 0:
            n = min(left, len(piece))
            fh.write(comp.compress(piece[:n]))
            left -= n
        fh.write(comp.compress(b"\n"))
        fh.write(comp.flush())
    _fix_control(folder, "credit_events", data, row_count=0)
    return folder


def make_utf16(case, paths):
    rows = _rows(case)
    folder = write_delivery(paths.drop, "credit_events", DS, rows)
    data = folder / "credit_events.csv"
    data.write_bytes(csv_text(rows, contract.column_names("credit_events")).encode("utf-16"))
    _fix_control(folder, "credit_events", data)
    return folder


def make_data_symlink_passwd(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    data.unlink()
    data.symlink_to("/etc/passwd")
    _fix_control(folder, "credit_events", data)
    return folder


def make_data_symlink_outside(case, paths):
    """A valid CSV outside the drop folder, linked into the delivery."""
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    outside = paths.home.parent / "outside.csv"
    shutil.move(data, outside)
    data.symlink_to(outside)
    return folder


def make_data_symlink_dev_zero(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    data.unlink()
    data.symlink_to("/dev/zero")
    return folder


def make_delivery_dir_symlink(case, paths):
    """drop/credit_events/ds=<ds> is a symlink to a complete, valid delivery elsewhere."""
    folder = _good(case, paths)
    outside = paths.home.parent / "outside-delivery"
    shutil.move(folder, outside)
    folder.symlink_to(outside, target_is_directory=True)
    return folder


def make_control_symlink(case, paths):
    """_control.json is a symlink to a valid control file outside the drop folder."""
    folder = _good(case, paths)
    ctl = folder / contract.CONTROL_FILE
    outside = paths.home.parent / "outside-control.json"
    shutil.move(ctl, outside)
    ctl.symlink_to(outside)
    return folder


def make_data_fifo(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    data.unlink()
    os.mkfifo(data)
    return folder


def make_control_fifo(case, paths):
    folder = _good(case, paths)
    ctl = folder / contract.CONTROL_FILE
    ctl.unlink()
    os.mkfifo(ctl)
    return folder


def make_data_directory(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    data.unlink()
    data.mkdir()
    (data / "rows.csv").write_text("x\n", encoding="utf-8")
    return folder


def make_control_huge(case, paths):
    """A 20 MB control file (a padding key) for a good delivery."""
    folder = _good(case, paths)
    ctl_path = folder / contract.CONTROL_FILE
    ctl = json.loads(ctl_path.read_text(encoding="utf-8"))
    ctl["padding"] = "x" * (20 << 20)
    ctl_path.write_text(json.dumps(ctl), encoding="utf-8")
    return folder


def make_control_nested(case, paths):
    folder = _good(case, paths)
    (folder / contract.CONTROL_FILE).write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    return folder


def make_control_huge_integer(case, paths):
    folder = _good(case, paths)
    ctl_path = folder / contract.CONTROL_FILE
    text = ctl_path.read_text(encoding="utf-8")
    ctl = json.loads(text)
    text = text.replace(f'"row_count": {ctl["row_count"]}', '"row_count": ' + "9" * 5000)
    ctl_path.write_text(text, encoding="utf-8")
    return folder


def make_plain_as_gz(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    gz = folder / "credit_events.csv.gz"
    data.rename(gz)
    return folder


def make_sha_uppercase(case, paths):
    folder = _good(case, paths)
    ctl = json.loads((folder / contract.CONTROL_FILE).read_text(encoding="utf-8"))
    _fix_control(folder, "credit_events", sha256=ctl["sha256"].upper())
    return folder


def make_no_control(case, paths):
    return _good(case, paths, write_control=False)


def make_no_data(case, paths):
    folder = _good(case, paths)
    (folder / "credit_events.csv").unlink()
    return folder


def make_both_csv_and_gz(case, paths):
    folder = _good(case, paths)
    data = folder / "credit_events.csv"
    (folder / "credit_events.csv.gz").write_bytes(gzip.compress(data.read_bytes()))
    return folder


def make_cr_only(case, paths):
    rows = _rows(case)
    folder = write_delivery(paths.drop, "credit_events", DS, rows)
    data = folder / "credit_events.csv"
    data.write_bytes(csv_text(rows, contract.column_names("credit_events"), "\r").encode("utf-8"))
    _fix_control(folder, "credit_events", data)
    return folder


GZIP_FLAGS = {"FHCRC": 2, "FEXTRA": 4, "FNAME": 8, "FCOMMENT": 16}


def gzip_member(data: bytes, flags: list[str] = ()) -> bytes:
    """One RFC 1952 member with the optional header fields named (gzip.compress writes none of them)."""
    flg = sum(GZIP_FLAGS[f] for f in flags)
    header = bytearray(b"\x1f\x8b\x08" + bytes([flg]) + b"\0\0\0\0\0\xff")
    if "FEXTRA" in flags:
        extra = b"PR\x04\x00ds=3"  # one subfield: id "PR", 4 bytes
        header += len(extra).to_bytes(2, "little") + extra
    if "FNAME" in flags:
        header += "credit_events_2020-06-03.csv".encode("latin-1") + b"\0"
    if "FCOMMENT" in flags:
        header += b"written by the ledger export, \xe9dition 2\0"
    if "FHCRC" in flags:
        header += (zlib.crc32(bytes(header)) & 0xFFFF).to_bytes(2, "little")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    trailer = zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(header) + body + trailer


def make_gzip_custom(case, paths):
    """The good rows gzipped as the case says: `members` (the CSV split into that
    many members, each with `flags`), then `damage`: crc (the last member's CRC
    wrong), trailing (bytes that are no member after the last), empty (no bytes)."""
    rows = _rows(case)
    data = csv_text(rows, contract.column_names("credit_events"), "\n").encode("utf-8")
    n = case.get("members", 1)
    cuts = [len(data) * i // n for i in range(n + 1)]
    gz = b"".join(gzip_member(data[a:b], case.get("flags", [])) for a, b in zip(cuts, cuts[1:]))
    damage = case.get("damage")
    if damage == "crc":
        gz = gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:]
    elif damage == "trailing":
        gz += b"\0\0\0\0not gzip"
    elif damage == "empty":
        gz = b""
    folder = write_delivery(paths.drop, "credit_events", DS, rows)
    (folder / "credit_events.csv").unlink()
    (folder / "credit_events.csv.gz").write_bytes(gz)
    _fix_control(
        folder, "credit_events", folder / "credit_events.csv.gz", row_count=0 if damage == "empty" else len(rows)
    )
    return folder


def make_control_directory(case, paths):
    folder = _good(case, paths)
    (folder / contract.CONTROL_FILE).unlink()
    (folder / contract.CONTROL_FILE).mkdir()
    return folder


def make_nothing(case, paths):
    return paths.drop


MAKERS = {name[5:]: fn for name, fn in globals().items() if name.startswith("make_")}


# --------------------------------------------------------------------------
# landing a case


@dataclass
class Outcome:
    kind: str  # landed | rejected | not_ready | bad_ds | crash
    cause: str | None = None
    record: dict | None = None
    message: str = ""
    seconds: float = 0.0
    max_rss_mb: float | None = None
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "landed":
            r = self.record
            parts = [f"loaded {r['loaded']}"]
            if r["quarantined"]:
                rules = ", ".join(f"{k} {v}" for k, v in sorted(r["quarantine_by_rule"].items()))
                parts.append(f"quarantined {r['quarantined']} ({rules})")
            if r["held"]:
                parts.append(f"held {r['held']}")
            return ", ".join(parts)
        if self.kind == "rejected":
            return f"delivery rejected: {self.cause}"
        if self.kind == "not_ready":
            return "not read: no usable _control.json (DeliveryNotReady)"
        if self.kind == "bad_ds":
            return "refused before any path is built (invalid business date)"
        return f"CRASH {self.cause}: {self.message[:120]}"


def land_in_process(case: dict, paths: Paths) -> Outcome:
    from program_reporting.landing import land as landing

    source = case.get("source", "credit_events")
    ds = case.get("ds", DS)
    started = time.monotonic()
    try:
        record = landing.land(source, ds, paths)
        out = Outcome("landed", record=record)
    except landing.DeliveryNotReady as exc:
        out = Outcome("not_ready", message=str(exc))
    except landing.DeliveryRejected as exc:
        out = Outcome("rejected", cause=exc.cause, message=str(exc))
    except ValueError as exc:
        # A business date that is not YYYY-MM-DD is refused before it becomes a path.
        if case.get("expect", {}).get("bad_ds") and "business date" in str(exc):
            out = Outcome("bad_ds", message=str(exc))
        else:
            out = Outcome("crash", cause=type(exc).__name__, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        out = Outcome("crash", cause=type(exc).__name__, message=str(exc))
    out.seconds = time.monotonic() - started
    return out


# The child's peak is VmHWM, the high-water mark of its own address space.
# Not getrusage's ru_maxrss: Linux carries the parent's peak across the
# vfork + exec that subprocess uses, so a large pytest process would be
# measured instead of the landing (seen: 414 MB for a 93 MB landing).
CHILD = """
import sys, threading
from program_reporting import cli
try:
    rc = cli.main(sys.argv[1:])
finally:
    # Threads landing started (the checksum scan) are waited for: their memory counts too.
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join()
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("\\nMAXRSS_KB %s\\n" % hwm)
sys.exit(rc)
"""


def land_in_subprocess(case: dict, paths: Paths, timeout: float) -> Outcome:
    """Land with the CLI in a child process; measures its wall time and peak RSS."""
    source = case.get("source", "credit_events")
    env = dict(os.environ, PROGRAM_REPORTING_DROP=str(paths.drop), PROGRAM_REPORTING_HOME=str(paths.home))
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "land", "--source", source, "--ds", case.get("ds", DS)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Outcome(
            "crash", cause="timeout", message=f"still running after {timeout} s", seconds=time.monotonic() - started
        )
    seconds = time.monotonic() - started
    err = stderr.decode("utf-8", "replace")
    rss = None
    if "MAXRSS_KB " in err:
        rss = int(err.rsplit("MAXRSS_KB ", 1)[1].split()[0]) / 1024
    if proc.returncode == 0:
        return Outcome("landed", record=json.loads(stdout.decode().splitlines()[-1]), seconds=seconds, max_rss_mb=rss)
    if proc.returncode == 2 and "rejected (" in err:
        cause = err.split("rejected (", 1)[1].split(")", 1)[0]
        return Outcome("rejected", cause=cause, message=err.strip().splitlines()[0], seconds=seconds, max_rss_mb=rss)
    if proc.returncode == 3:
        return Outcome("not_ready", message=err, seconds=seconds, max_rss_mb=rss)
    return Outcome("crash", cause=f"exit {proc.returncode}", message=err[-500:], seconds=seconds, max_rss_mb=rss)


def expected_text(expect: dict) -> str:
    if "rejected" in expect:
        return f"delivery rejected: {expect['rejected']}"
    if expect.get("not_ready"):
        return "not read (DeliveryNotReady)"
    if expect.get("bad_ds"):
        return "invalid business date refused"
    parts = [f"loaded {expect.get('loaded', 0)}"]
    q = expect.get("quarantined") or {}
    if q:
        parts.append("quarantined " + ", ".join(f"{k} {v}" for k, v in sorted(q.items())))
    if expect.get("held"):
        parts.append(f"held {expect['held']}")
    return ", ".join(parts)
