"""Test doubles and helpers for the alerts tests: a warehouse-backed metric source (tests only — the product
reads through the query door), a real SMTP server (aiosmtpd), a local HTTP receiver playing Slack's webhook,
and a small real PDF."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from sophia_lib.config import SophiaConfig
from tests.support.servers import free_port


class WarehouseSource:
    """MetricSource over one open warehouse reader: compiles with the metric catalog, as the query door does."""

    def __init__(self, config: SophiaConfig, reader: Any) -> None:
        from sophia_lib.metrics import load_catalog

        self.catalog = load_catalog(config)
        self.reader = reader
        self._tables: dict[str, pd.DataFrame] = {}
        self.calls = 0

    def metric(self, name: str, by: Sequence[str] | None = None, grain: str | None = None,
               start: date | None = None, end: date | None = None,
               where: str | Mapping[str, Any] | None = None) -> pd.DataFrame:
        self.calls += 1
        query = self.catalog.compile(name, by=list(by or []), grain=grain, start=start, end=end, where=where)
        return self.reader.query(query.sql, query.params).to_pandas()

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            schema, table = name.split(".")
            self._tables[name] = self.reader.query(f'SELECT * FROM "{schema}"."{table}"').to_pandas()
        return self._tables[name]


# ---- SMTP -----------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    refuse: int = 0  # answer the next N DATA commands with 451 (temporary failure)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free local port; received mails are parsed into ``messages``."""
    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
            if box.refuse > 0:
                box.refuse -= 1
                return "451 4.3.0 try again later"
            box.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    controller = Controller(Handler(), hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# ---- Slack webhook ---------------------------------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail: int = 0  # answer the next N posts with 500
    status: int = 500


@contextmanager
def slack_receiver() -> Iterator[Webhook]:
    """A local HTTP server that answers like Slack's incoming webhooks ("ok") and keeps what was posted."""
    port = free_port()
    hook = Webhook(f"http://127.0.0.1:{port}/services/T000/B000/XXXX")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hook.fail > 0:
                hook.fail -= 1
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"internal_error")
                return
            hook.posts.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


# ---- a real PDF ------------------------------------------------------------------------------------------


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica, with a correct cross-reference table."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 18 Tf 72 720 Td ({safe}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
