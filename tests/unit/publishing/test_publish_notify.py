"""The alert hook: alerts.log always, the webhook when configured, never an exception."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from program_reporting.publishing.notify import notify


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_alert_goes_to_the_log_and_the_webhook(env_paths, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("PROGRAM_REPORTING_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
        report = env_paths.reports / "r1" / "report.html"
        record = notify("publication_withheld", "run r1 withheld; owner phone 13812345678", report)
    finally:
        server.shutdown()
    assert record["webhook"] is True
    content_type, payload = _Hook.received[-1]
    assert content_type == "application/json"
    assert payload["event"] == "publication_withheld" and payload["report_path"] == str(report)
    assert "13812345678" not in json.dumps(payload)
    lines = (env_paths.home / "alerts.log").read_text().splitlines()
    logged = json.loads(lines[-1])
    assert logged["event"] == "publication_withheld" and logged["webhook"] is True


def test_unreachable_webhook_is_logged_not_raised(env_paths, monkeypatch, caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PROGRAM_REPORTING_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("PROGRAM_REPORTING_WEBHOOK_TIMEOUT", "2")
    record = notify("run_failed", "task build failed", None)
    assert record["webhook"] is False
    assert "alert webhook" in caplog.text
    assert json.loads((env_paths.home / "alerts.log").read_text().splitlines()[-1])["event"] == "run_failed"


def test_without_webhook_only_the_log(env_paths, monkeypatch):
    monkeypatch.delenv("PROGRAM_REPORTING_WEBHOOK_URL", raising=False)
    notify("run_failed", "first", None)
    notify("publication_withheld", "second", None)
    events = [json.loads(line)["event"] for line in (env_paths.home / "alerts.log").read_text().splitlines()]
    assert events == ["run_failed", "publication_withheld"]
