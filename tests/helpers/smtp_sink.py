"""A real SMTP server on 127.0.0.1 that keeps every message it is sent.

Enough of RFC 5321 for smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT), without TLS or authentication: what the alerts' tests send through
Airflow's SmtpNotifier arrives here as parsed e-mail messages."""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from email.message import EmailMessage


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        sink = self

        class Session(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write((line + "\r\n").encode("ascii"))

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                while line := self.rfile.readline():
                    verb = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.reply("250-sink")
                        self.reply("250 8BITMIME")
                    elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        body = bytearray()
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            body += chunk[1:] if chunk.startswith(b"..") else chunk
                        sink.messages.append(email.message_from_bytes(bytes(body), policy=email.policy.default))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, to: str = "operators@example.org") -> dict[str, str]:
        """The settings that send the pipeline's alerts here."""
        return {
            "PROGRAM_REPORTING_SMTP_HOST": "127.0.0.1",
            "PROGRAM_REPORTING_SMTP_PORT": str(self.port),
            "PROGRAM_REPORTING_ALERT_EMAILS": to,
            "PROGRAM_REPORTING_ALERT_FROM": "program-reporting@example.org",
        }

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]
