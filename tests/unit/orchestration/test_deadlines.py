"""What the deadline alert says is late, from the drop and the reports (the alert
firing through Airflow's scheduler and triggerer is in tests/e2e/test_e2e_scheduler.py)."""

from __future__ import annotations

import datetime as dt
import json

from program_reporting.orchestration import deadlines

DS = "2020-06-03"
DUE = dt.datetime(2020, 6, 4, 10, 0, tzinfo=dt.UTC)  # 06:00 New York
NIGHT_ENDED = dt.datetime(2020, 6, 4, 18, 0, tzinfo=dt.UTC)  # 02:00 New York + 12 h


def report(p, run_id: str, decision: str, written_at: str, reason: str | None = None) -> None:
    folder = p.reports / run_id
    folder.mkdir(parents=True)
    doc = {"run_id": run_id, "decision": decision, "written_at": written_at, "reason": reason}
    (folder / "report.json").write_text(json.dumps(doc))


def deliver(p, source: str) -> None:
    folder = p.delivery_dir(source, DS)
    folder.mkdir(parents=True)
    (folder / "_control.json").write_text("{}")


def test_missing_deliveries_are_named_with_their_control_files(env_paths):
    deliver(env_paths, "merchants")
    late = deadlines.what_is_late(DS, DUE, NIGHT_ENDED)
    assert late.startswith("missing deliveries: credit_events (")
    assert str(env_paths.delivery_dir("employment_reports", DS) / "_control.json") in late
    assert "merchants" not in late


def test_a_withheld_run_gives_its_reason(env_paths):
    for source in ("merchants", "credit_events", "employment_reports"):
        deliver(env_paths, source)
    report(
        env_paths, f"{DS}_20200604T060000Z", "withheld", "2020-06-04T06:30:00+00:00", "gate: par30_rate out of range"
    )
    assert deadlines.what_is_late(DS, DUE, NIGHT_ENDED) == (
        f"run {DS}_20200604T060000Z withheld the figures: gate: par30_rate out of range"
    )


def test_published_in_time_or_by_a_later_run_is_not_late_but_after_the_due_time_is(env_paths):
    report(env_paths, f"{DS}_20200604T060000Z", "published", "2020-06-04T06:40:00+00:00")
    assert deadlines.what_is_late(DS, DUE, NIGHT_ENDED) is None
    # published after the due time by the night that was due: late
    report(env_paths, f"{DS}_20200604T110000Z", "published", "2020-06-04T11:20:00+00:00")
    late = deadlines.what_is_late(DS, DUE, NIGHT_ENDED)
    assert late == f"published late, at 2020-06-04T11:20:00+00:00 by run {DS}_20200604T110000Z"
    # the same date run by hand years later (its run carries the old date): not the night's lateness
    report(env_paths, f"{DS}_20261207T140000Z", "published", "2026-12-07T14:03:00+00:00")
    assert deadlines.what_is_late(DS, DUE, NIGHT_ENDED) is None
