"""A randomized delivery history, written night by night into a raw layer
(docs/architecture.md "Raw layer", with reconciliation records as landing
writes them), for the night-by-night equality test.

Seeded and small. Each night brings one to three new business dates (every
source delivers each date, empty deliveries too) and, at random, what makes a
night restate the past: late postings up to 30 days back, harmless duplicate
events, merchant re-versions (moves between segments, status changes, late
versions), corrected and re-sent employment reports, re-deliveries of old
partitions of every source (an event dropped, a backdated drawdown added, a
merchant's earliest version rewritten, a report re-counted), orphans held
and released into their own old partitions days later (some re-sent
meanwhile in a later delivery, so that the older released copy comes first
for an event and last for a report; some reports re-sent copies of a report
delivered earlier), and held orphans that expire (a release of no row). The first night is a full load carrying months
of history. Three programs in two time zones (Asia/Shanghai, America/New_York),
around the LPR change of 2020-04-20. Every row keeps the rules of extracts.md
that landing enforces (an event's date is never after its delivery's ds, a
merchant is known by the end of its event's ds, ids are unique), so that a
night and a full refresh must agree."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from helpers.warehouse_raw import expire_orphans_of, release_orphans_into, write_partition

SOURCES = ("merchants", "credit_events", "employment_reports")
PROGRAMS = {
    "SPRING-THUNDER-2020": ("CNY", ZoneInfo("Asia/Shanghai"), ["CN-GD", "CN-ZJ", "CN-SH"], ["exporter", "retail_shop"]),
    "SPARK-2020": ("CNY", ZoneInfo("Asia/Shanghai"), ["CN-GD", "CN-BJ"], ["grocery", "street_stall"]),
    "PPP-2020": ("USD", ZoneInfo("America/New_York"), ["US-VT", "US-NY"], ["restaurant", "service"]),
}
SIZES = ["micro", "small", "medium"]


@dataclass
class Merchant:
    merchant_id: str
    program: str
    enrolled: dt.date
    version: dict
    line: str | None = None
    line_open_on: dt.date | None = None
    closed: bool = False


@dataclass
class History:
    raw: Path
    seed: int
    first_ds: dt.date = dt.date(2020, 4, 15)
    rng: random.Random = field(init=False)
    # what the raw layer holds: source -> ds -> rows (the released orphans of a partition apart)
    parts: dict = field(init=False)
    released: dict = field(init=False)
    merchants: dict = field(init=False)
    held: list = field(init=False)  # (ds, source, rows, merchant_id) waiting for their merchant
    # merchants whose held rows were re-sent in a later delivery: released a night later
    resent: set = field(init=False)
    # the re-sent copies' own draws, apart, so that each seed's other draws stay as they were
    extra: random.Random = field(init=False)
    last_ds: dt.date | None = None
    night_number: int = 0
    counter: int = 0

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.parts = {s: {} for s in SOURCES}
        self.released = {s: {} for s in SOURCES}
        self.merchants = {}
        self.held = []
        self.resent = set()
        self.extra = random.Random(self.seed * 7919 + 1)

    # -- small helpers -------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.seed}-{self.counter:04d}"

    def _at(self, program: str, day: dt.date, late_evening: bool = False) -> str:
        tz = PROGRAMS[program][1]
        hour, minute = self.rng.choice([(0, 5), (0, 30), (8, 0), (12, 0), (23, 59)] if not late_evening else [(23, 59)])
        return dt.datetime.combine(day, dt.time(hour, minute), tz).isoformat()

    def _event(self, m: Merchant, kind: str, day: dt.date, amount: Decimal, rate=None, due=None) -> dict:
        currency = PROGRAMS[m.program][0]
        return dict(
            event_id=self._id("E"),
            credit_line_id=m.line,
            merchant_id=m.merchant_id,
            event_type=kind,
            event_at=self._at(m.program, day),
            amount=str(amount),
            currency=currency,
            annual_interest_rate=None if rate is None else str(rate),
            due_on=None if due is None else due.isoformat(),
            goods_category="food" if kind == "drawdown" else None,
        )

    def _amount(self, low: int, high: int) -> Decimal:
        return Decimal(self.rng.randint(low * 100, high * 100)) / 100

    # -- what each kind of row looks like ------------------------------------

    def _new_merchant(self, ds: dt.date, history_days: int) -> Merchant:
        program = self.rng.choice(list(PROGRAMS))
        _, _, regions, types = PROGRAMS[program]
        enrolled = ds - dt.timedelta(days=self.rng.randint(0, history_days))
        mid = self._id("M")
        version = dict(
            merchant_id=mid,
            program_code=program,
            business_name=f"店 {mid}",
            region=self.rng.choice(regions),
            city="city",
            business_type=self.rng.choice(types),
            size_class=self.rng.choice(SIZES),
            registered_on=None,
            enrolled_on=enrolled.isoformat(),
            status="active",
            updated_at=self._at(program, max(enrolled, ds - dt.timedelta(days=2))),
        )
        m = Merchant(mid, program, enrolled, version)
        if self.rng.random() < 0.8:
            m.line = self._id("L")
            m.line_open_on = enrolled + dt.timedelta(days=self.rng.randint(0, max(0, (ds - enrolled).days)))
        return m

    def _line_events(self, m: Merchant, first: dt.date, last: dt.date, count: int) -> list[tuple[dt.date, dict]]:
        """`count` events of m's line dated between first and last (each with its date)."""
        out = []
        if m.line is None or m.closed:
            return out
        first = max(first, m.line_open_on)
        if first > last:
            return out
        for _ in range(count):
            day = first + dt.timedelta(days=self.rng.randint(0, (last - first).days))
            kind = self.rng.choice(
                ["drawdown", "drawdown", "drawdown", "repayment", "repayment", "limit_changed", "written_off"]
            )
            if kind == "drawdown":
                due = day + dt.timedelta(days=self.rng.choice([1, 5, 10, 20, 35, 40]))
                out.append((day, self._event(m, kind, day, self._amount(100, 4000), due=due)))
            elif kind == "limit_changed":
                out.append((day, self._event(m, kind, day, Decimal(self.rng.choice([20000, 50000, 80000])))))
            else:
                out.append((day, self._event(m, kind, day, self._amount(50, 1500))))
        if self.rng.random() < 0.05:
            out.append((last, self._event(m, "line_closed", last, Decimal("0"))))
            m.closed = True
        return out

    def _report(self, m: Merchant, ds: dt.date, month: dt.date, minutes: int = 0) -> dict:
        tz = PROGRAMS[m.program][1]
        at = dt.datetime.combine(ds, dt.time(10, minutes), tz).isoformat()
        return dict(
            report_id=self._id("R"),
            merchant_id=m.merchant_id,
            period_month=month.isoformat(),
            employees=self.rng.randint(0, 30),
            baseline_employees=self.rng.randint(1, 25),
            reported_at=at,
            verification_status=self.rng.choice(["self_reported", "verified"]),
        )

    # -- the deliveries of one date ------------------------------------------

    def _deliver(self, ds: dt.date, first_load: bool) -> dict[str, list[dict]]:
        rows = {s: [] for s in SOURCES}
        known = list(self.merchants.values())
        # new merchants (the first load: the whole register, with months of history)
        newcomers = [
            self._new_merchant(ds, 120 if first_load else 3)
            for _ in range(self.rng.randint(8, 12) if first_load else self.rng.randint(0, 2))
        ]
        for m in newcomers:
            self.merchants[m.merchant_id] = m
            rows["merchants"].append(dict(m.version))
            if m.line:
                rows["credit_events"].append(
                    self._event(
                        m,
                        "line_opened",
                        m.line_open_on,
                        Decimal(self.rng.choice([30000, 50000, 100000])),
                        rate=self.rng.choice([Decimal("0"), Decimal("0.01")]),
                    )
                )
                history = (ds - m.line_open_on).days
                rows["credit_events"] += [
                    e for _, e in self._line_events(m, m.line_open_on, ds, self.rng.randint(1, 2 + history // 10))
                ]
        # re-versions of known merchants: moves and status changes, some written days ago
        for m in self.rng.sample(known, k=min(len(known), self.rng.randint(0, 2))):
            _, _, regions, types = PROGRAMS[m.program]
            v = dict(m.version)
            change = self.rng.choice(["region", "size_class", "status", "business_type"])
            v[change] = self.rng.choice(
                {
                    "region": regions,
                    "size_class": SIZES,
                    "business_type": types,
                    "status": ["active", "suspended", "exited"],
                }[change]
            )
            day = ds - dt.timedelta(days=self.rng.choice([0, 0, 1, 4]))
            v["updated_at"] = self._at(m.program, day)
            if dt.datetime.fromisoformat(v["updated_at"]) <= dt.datetime.fromisoformat(m.version["updated_at"]):
                continue
            m.version = v
            rows["merchants"].append(dict(v))
        # the day's postings, and late ones up to 30 days back
        for m in known:
            if self.rng.random() < 0.6:
                rows["credit_events"] += [e for _, e in self._line_events(m, ds, ds, self.rng.randint(1, 2))]
            if self.rng.random() < 0.15:
                back = self.rng.choice([1, 3, 10, 25, 30])
                rows["credit_events"] += [
                    e for _, e in self._line_events(m, ds - dt.timedelta(days=back), ds - dt.timedelta(days=back), 1)
                ]
        # a harmless duplicate of an event already delivered
        delivered = [e for part in self.parts["credit_events"].values() for e in part]
        if delivered and self.rng.random() < 0.3:
            rows["credit_events"].append(dict(self.rng.choice(delivered)))
        # employment reports, corrections (a later reported_at for the same month)
        for m in known + newcomers:
            if self.rng.random() < 0.3:
                month = (ds - dt.timedelta(days=self.rng.choice([0, 0, 20, 40]))).replace(day=1)
                rows["employment_reports"].append(self._report(m, ds, max(month, m.enrolled.replace(day=1))))
        reports = [r for part in self.parts["employment_reports"].values() for r in part]
        if reports and self.rng.random() < 0.3:  # a re-sent copy: the latest delivery's copy wins
            resent = dict(self.rng.choice(reports))
            resent["employees"] = self.rng.randint(0, 30)
            rows["employment_reports"].append(resent)
        return rows

    def _orphans(self, ds: dt.date) -> None:
        """Rows of a merchant not known yet: held from ds until the merchant arrives."""
        if self.rng.random() < 0.35:
            m = self._new_merchant(ds, 5)
            m.line = m.line or self._id("L")
            m.line_open_on = min(m.line_open_on or ds, ds)
            events = [self._event(m, "line_opened", m.line_open_on, Decimal(50000), rate=Decimal("0"))]
            events += [e for _, e in self._line_events(m, m.line_open_on, ds, 2)]
            self.held.append((ds, "credit_events", events, m))
            if self.rng.random() < 0.5:
                report = self._report(m, ds, ds.replace(day=1))
                reports = [r for part in self.parts["employment_reports"].values() for r in part]
                if reports and self.extra.random() < 0.3:  # a re-sent copy of a report delivered before
                    report["report_id"] = self.extra.choice(reports)["report_id"]
                self.held.append((ds, "employment_reports", [report], m))

    # -- the changes to old partitions a night may bring -----------------------

    def _redeliver(self, run_ds: dt.date, before: dt.date) -> None:
        """Re-deliveries of partitions older than the night's new dates (before)."""
        old = [d for d in self.parts["credit_events"] if d < before and self.parts["credit_events"][d]]
        if old and self.rng.random() < 0.5:
            ds = self.rng.choice(old)
            events = list(self.parts["credit_events"][ds])
            events.remove(self.rng.choice(events))
            m = self.merchants[self.rng.choice([e["merchant_id"] for e in events] or list(self.merchants))]
            if m.line and not m.closed:
                day = max(m.line_open_on, ds - dt.timedelta(days=self.rng.randint(0, 60)))
                events.append(
                    self._event(
                        m,
                        "drawdown",
                        day,
                        self._amount(100, 3000),
                        due=day + dt.timedelta(days=self.rng.choice([5, 35])),
                    )
                )
            self._write(run_ds, "credit_events", ds, events)
        old = [d for d in self.parts["merchants"] if d < before and self.parts["merchants"][d]]
        if old and self.rng.random() < 0.4:
            ds = self.rng.choice(old)
            versions = [dict(v) for v in self.parts["merchants"][ds]]
            v = self.rng.choice(versions)
            _, _, regions, types = PROGRAMS[v["program_code"]]
            v["region"] = self.rng.choice(regions)  # possibly its earliest version: its whole history moves
            v["size_class"] = self.rng.choice(SIZES)
            self._write(run_ds, "merchants", ds, versions)
        old = [d for d in self.parts["employment_reports"] if d < before and self.parts["employment_reports"][d]]
        if old and self.rng.random() < 0.3:
            ds = self.rng.choice(old)
            reports = [dict(r) for r in self.parts["employment_reports"][ds]]
            self.rng.choice(reports)["employees"] = self.rng.randint(0, 30)
            self._write(run_ds, "employment_reports", ds, reports)

    def _resend(self, m: Merchant, rows: dict[str, list[dict]]) -> None:
        """The source systems send some of m's held rows again with m's own delivery,
        the reports re-counted; the held copies are released the next night."""
        if self.extra.random() >= 0.5:
            return
        for _ds, source, held, who in self.held:
            if who is m:
                copy = dict(self.extra.choice(held))
                if source == "employment_reports":
                    copy["employees"] = self.extra.randint(0, 30)
                rows[source].append(copy)
        self.resent.add(m.merchant_id)

    def _release(self, run_ds: dt.date) -> None:
        still, done = [], set()
        waiting = set(self.resent)
        self.resent.clear()
        for ds, source, rows, m in self.held:
            if m.merchant_id in waiting:
                still.append((ds, source, rows, m))
                continue
            if m.merchant_id in self.merchants:
                if (ds, source) in done:  # one release file per partition and run: the next run's
                    still.append((ds, source, rows, m))
                    continue
                done.add((ds, source))
                if source == "credit_events":
                    touches = min(
                        dt.datetime.fromisoformat(r["event_at"]).astimezone(dt.UTC).date() for r in rows
                    ) - dt.timedelta(days=1)
                else:
                    touches = min(dt.date.fromisoformat(r["period_month"]) for r in rows)
                release_orphans_into(
                    self.raw, ds.isoformat(), run_ds.isoformat(), rows, source=source, touches_from=touches.isoformat()
                )
                self.released[source].setdefault(ds, []).extend(rows)
            elif (run_ds - ds).days > 7:
                if source == "credit_events":
                    expire_orphans_of(self.raw, ds.isoformat(), run_ds.isoformat())
            else:
                still.append((ds, source, rows, m))
        self.held = still

    def _write(self, run_ds: dt.date, source: str, ds: dt.date, rows: list[dict]) -> None:
        # a re-delivery replaces the partition whole: released orphans in it are gone with it
        write_partition(self.raw, source, ds.isoformat(), rows)
        self.parts[source][ds] = rows
        self.released[source].pop(ds, None)

    # -- one night -------------------------------------------------------------

    def night(self) -> str:
        """Land the next night's deliveries and changes; returns its business date."""
        first_load = self.last_ds is None
        start = self.first_ds if first_load else self.last_ds + dt.timedelta(days=1)
        new_days = [start + dt.timedelta(days=i) for i in range(1 if first_load else self.rng.choice([1, 1, 2, 3]))]
        for ds in new_days:
            rows = self._deliver(ds, first_load and ds == start)
            # merchants whose orphans were held arrive now, with their own deliveries
            for _ds, _source, _rows, m in self.held:
                if m.merchant_id not in self.merchants and self.rng.random() < 0.6:
                    m.version["updated_at"] = self._at(m.program, ds)
                    self.merchants[m.merchant_id] = m
                    rows["merchants"].append(dict(m.version))
                    self._resend(m, rows)
            for source in SOURCES:
                self._write(ds, source, ds, rows[source])
            self._orphans(ds)
            self.last_ds = ds
        if not first_load:
            self._release(self.last_ds)
            self._redeliver(self.last_ds, start)
        self.night_number += 1
        return self.last_ds.isoformat()
