"""A delivery rewritten while it lands: a source correcting a file in place
(data first, _control.json last) the moment the landing opens it.

Whatever the interleaving, what lands is covered by the checksum recorded
with it: the raw rows are exactly the rows of the one version whose SHA-256
the reconciliation record names. A landing that read a moving file is
refused (`delivery_changed`, or `checksum` when the bytes it read match no
control file) and leaves the previous landing in place; the landing that
follows the finished correction lands it exactly."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

import duckdb
from helpers import reliability_log
from helpers.deliveries import amount_total, csv_text, row, write_delivery

from program_reporting.core import contract
from program_reporting.landing import datafile as landing_csv
from program_reporting.landing import land as landing

DS = "2020-06-02"
TRIES = 60
ROWS = 3_000
reliability_log.expect("concurrency", ["delivery rewritten while it lands"])


def _version(n: int, gz: bool) -> tuple[bytes, dict, list[tuple]]:
    """Version n of the delivery: its bytes, control file, and (event_id, amount) rows."""
    rows = []
    for i in range(1, ROWS + 1 + n % 7):  # versions differ in length too
        r = row("credit_events", i, merchant_id=f"M{i % 3 + 1}")
        r["amount"] = f"{(i * 37 + n * 1009) % 100000}.{n % 100:02d}"
        rows.append(r)
    data = csv_text(rows, contract.column_names("credit_events"), "\n").encode("utf-8")
    if gz:
        data = gzip.compress(data, mtime=0)
    control = {
        "source": "credit_events",
        "ds": DS,
        "schema_version": "1",
        "row_count": len(rows),
        "sha256": hashlib.sha256(data).hexdigest(),
        "produced_at": "2020-06-02T23:30:00+08:00",
        "amount_total": amount_total(rows),
    }
    return data, control, [(r["event_id"], r["amount"]) for r in rows]


class Rewriter:
    """Rewrites the delivery as version `new` once the landing opens its data
    file: in place (same inode) in small chunks with pauses, or through a new
    file renamed over it, then the control file."""

    def __init__(self, folder: Path, data_name: str, new: tuple, how: str, rng: random.Random):
        self.folder, self.data_name, self.new, self.how, self.rng = folder, data_name, new, how, rng
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if not self.opened.wait(30):
            return
        data, control, _rows = self.new
        path = self.folder / self.data_name
        time.sleep(self.rng.choice([0, 0, 0.0002, 0.001]))
        if self.how == "rename":
            tmp = path.with_name(".incoming")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            with open(path, "r+b") as fh:
                if self.how == "truncate":
                    fh.truncate(0)
                step = self.rng.choice([4096, 65536, 262144])
                for at in range(0, len(data), step):
                    fh.write(data[at : at + step])
                    fh.flush()
                    time.sleep(self.rng.choice([0, 0.0001, 0.0005]))
                fh.truncate(len(data))
        time.sleep(self.rng.choice([0, 0.001]))
        (self.folder / contract.CONTROL_FILE).write_text(json.dumps(control), encoding="utf-8")

    def join(self) -> None:
        self.opened.set()  # a landing that never opened the file (refused before) still lets it finish
        self.thread.join(30)


class _OsSpy:
    """landing_csv's view of `os`: the open of the data file starts the rewrite."""

    def __init__(self, target: Path, on_open):
        self._target, self._on_open = str(target), on_open

    def open(self, path, flags, *args):
        fd = os.open(path, flags, *args)
        if str(path) == self._target:
            self._on_open()
        return fd

    def __getattr__(self, name):
        return getattr(os, name)


def _raw(p) -> list[tuple]:
    part = p.raw / "credit_events" / f"ds={DS}" / "rows.parquet"
    return duckdb.sql(f"SELECT event_id, CAST(amount AS VARCHAR) FROM read_parquet('{part}') ORDER BY _line").fetchall()


def _as_landed(rows: list[tuple]) -> list[tuple]:
    # DECIMAL(14,2) as text: "123.05" stays, a whole amount gains its ".00"
    return [(e, f"{float(a):.2f}") for e, a in rows]


def test_a_delivery_rewritten_while_it_lands_lands_only_verified_rows(env_paths, monkeypatch, reliability):
    p = env_paths
    rng = random.Random(20201)
    write_delivery(p.drop, "merchants", DS, [row("merchants", i) for i in (1, 2, 3)])
    landing.land("merchants", DS, p)
    outcomes: dict[str, int] = {}
    checked_rows = 0
    for attempt in range(TRIES):
        gz = attempt % 3 == 2
        name = contract.data_file_name("credit_events", gz)
        old, new = _version(2 * attempt, gz), _version(2 * attempt + 1, gz)
        versions = {v[1]["sha256"]: v for v in (old, new)}
        folder = write_delivery(p.drop, "credit_events", DS, [], gz=gz, data=b"", control=old[1])
        (folder / name).write_bytes(old[0])
        (folder / contract.CONTROL_FILE).write_text(json.dumps(old[1]), encoding="utf-8")
        before = landing.land("credit_events", DS, p)  # the old version, landed quietly
        assert before["sha256"] == old[1]["sha256"]

        how = rng.choice(["in place", "in place", "truncate", "rename"])
        writer = Rewriter(folder, name, new, how, rng)
        monkeypatch.setattr(landing_csv, "os", _OsSpy(folder / name, writer.opened.set))
        try:
            record = landing.land("credit_events", DS, p)
            outcome = "landed the old version" if record["sha256"] == old[1]["sha256"] else "landed the new version"
        except landing.DeliveryRejected as exc:
            assert exc.cause in ("delivery_changed", "checksum"), exc
            outcome = f"refused: {exc.cause}"
            record = None
        finally:
            monkeypatch.setattr(landing_csv, "os", os)
            writer.join()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

        # what is in raw/ is exactly the version whose checksum its record names
        landed = json.loads((p.raw / "credit_events" / f"ds={DS}" / "_reconciliation.json").read_text())
        assert landed["sha256"] in versions, "raw/ holds rows of bytes that no control file named"
        if record is None:
            assert landed["sha256"] == old[1]["sha256"], "a refused landing replaced the previous one"
        assert _raw(p) == _as_landed(versions[landed["sha256"]][2])
        checked_rows += landed["loaded"]

        # the landing after the finished correction lands it exactly
        after = landing.land("credit_events", DS, p)
        assert after["sha256"] == new[1]["sha256"] and after["loaded"] == len(new[2])
        assert _raw(p) == _as_landed(new[2])
        checked_rows += after["loaded"]

    print(f"race outcomes: {outcomes}, rows checked: {checked_rows}")
    assert sum(outcomes.values()) == TRIES >= 50
    assert outcomes.get("refused: delivery_changed", 0) >= 1, outcomes  # the race was really run
    leftovers = [x for x in (p.tmp).iterdir() if x.name.startswith("read-")] if p.tmp.exists() else []
    assert leftovers == [], f"snapshots left behind: {leftovers}"
    reliability.record(
        "concurrency",
        "delivery rewritten while it lands",
        {
            "check": f"a source rewrites its delivery (in place, truncated, or renamed over; plain and gzip) the "
            f"moment the landing opens it, then its control file; {TRIES} landings of ~{ROWS} rows",
            "readers": "1 landing",
            "publishes": f"{TRIES} rewrites",
            "outcome": "every row in raw/ belongs to the version whose SHA-256 the reconciliation record names; "
            "a refused landing (delivery_changed or checksum) kept the previous one; the landing after "
            "each finished rewrite landed it exactly",
        },
        measured={"outcomes": outcomes, "rows_checked": checked_rows},
    )
    reliability.passed("concurrency", "delivery rewritten while it lands")
