"""The nightly DAG's notifier: one alert per failed run however often Airflow
delivers the callback, one recovery notice after failures, none otherwise;
e-mail through the SMTP provider's SmtpNotifier to a real SMTP server on
127.0.0.1. The run through Airflow itself is in
tests/e2e/test_e2e_nightly.py::test_missing_delivery_times_out_names_it_and_publishes_nothing_then_recovers."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest
from helpers.smtp_sink import SmtpSink

from program_reporting.orchestration import airflow_env, alerts


@pytest.fixture
def mail(env_paths, monkeypatch):
    with SmtpSink() as sink:
        env = sink.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # what airflow_env hands every Airflow process: the connection SmtpNotifier reads
        for name, value in airflow_env.smtp_connection_env(env).items():
            monkeypatch.setenv(name, value)
        yield sink


def context(run_id: str, ds: str) -> dict:
    logical = dt.datetime.fromisoformat(ds).replace(hour=18, tzinfo=dt.UTC)  # 02:00 Shanghai the next day
    return {
        "dag_run": SimpleNamespace(dag_id="program_reporting_nightly", run_id=run_id),
        "run_id": run_id,
        "logical_date": logical,
        "ti": SimpleNamespace(task_id="end"),
        "reason": "task_failure",
    }


def events(env_paths) -> list[str]:
    log = env_paths.home / "alerts.log"
    return [json.loads(line)["event"] for line in log.read_text().splitlines()] if log.exists() else []


def test_one_alert_per_failed_run_and_one_recovery(mail, env_paths):
    failed, published = alerts.NightlyRunNotifier("failed"), alerts.NightlyRunNotifier("published")
    published(context("r0", "2020-06-01"))  # nothing failed before: silent
    failed(context("r1", "2020-06-02"))
    failed(context("r1", "2020-06-02"))  # the same run's callback delivered again
    failed(context("r2", "2020-06-02"))  # a retry of the date is another run
    published(context("r3", "2020-06-02"))
    published(context("r4", "2020-06-03"))  # already recovered: silent
    assert events(env_paths) == ["nightly_run_failed", "nightly_run_failed", "nightly_run_recovered"]
    assert mail.subjects() == [
        "[program-reporting] NOT PUBLISHED ds=2020-06-02 (program_reporting_nightly)",
        "[program-reporting] NOT PUBLISHED ds=2020-06-02 (program_reporting_nightly)",
        "[program-reporting] recovered: ds=2020-06-02 published (program_reporting_nightly)",
    ]
    body = mail.messages[2].get_body().get_content()
    assert "after 2 failed run(s)" in body and "r1" in body and "r2" in body


def test_an_unreachable_mail_server_does_not_fail_the_callback(env_paths, monkeypatch):
    monkeypatch.setenv("PROGRAM_REPORTING_ALERT_EMAILS", "operators@example.org")
    refused = {"PROGRAM_REPORTING_SMTP_HOST": "127.0.0.1", "PROGRAM_REPORTING_SMTP_PORT": "9"}  # nothing listens
    for name, value in airflow_env.smtp_connection_env(refused).items():
        monkeypatch.setenv(name, value)
    alerts.NightlyRunNotifier("failed")(context("r1", "2020-06-02"))
    assert events(env_paths) == ["nightly_run_failed"]  # still logged (and posted to the webhook, when set)


def test_smtp_settings_become_an_airflow_connection():
    conn = json.loads(
        airflow_env.smtp_connection_env(
            {
                "PROGRAM_REPORTING_SMTP_HOST": "mail.example.org",
                "PROGRAM_REPORTING_SMTP_PORT": "587",
                "PROGRAM_REPORTING_SMTP_TLS": "starttls",
                "PROGRAM_REPORTING_SMTP_USER": "u",
            }
        )["AIRFLOW_CONN_PROGRAM_REPORTING_SMTP"]
    )
    assert (conn["host"], conn["port"], conn["login"]) == ("mail.example.org", 587, "u")
    assert conn["extra"]["disable_tls"] is False and conn["extra"]["disable_ssl"] is True
    assert airflow_env.smtp_connection_env({}) == {}  # no mail server: no connection
    # an operator's own connection wins
    assert (
        airflow_env.smtp_connection_env(
            {"PROGRAM_REPORTING_SMTP_HOST": "h", "AIRFLOW_CONN_PROGRAM_REPORTING_SMTP": "x"}
        )
        == {}
    )
    with pytest.raises(ValueError, match="PROGRAM_REPORTING_SMTP_TLS"):
        airflow_env.smtp_connection_env({"PROGRAM_REPORTING_SMTP_HOST": "h", "PROGRAM_REPORTING_SMTP_TLS": "yes"})
