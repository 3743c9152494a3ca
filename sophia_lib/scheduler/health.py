"""A tiny JSON status endpoint for the scheduler when it runs as a JupyterHub service.

The hub gives a managed service its address in ``JUPYTERHUB_SERVICE_URL`` (and its path prefix in
``JUPYTERHUB_SERVICE_PREFIX``). ``GET <prefix>health`` answers ``{"status": "ok", "jobs": {...}}``: per
job whether it is enabled, its trigger, its next slot and its last run's id, status and times. No
error texts or parameters: those stay behind ``sophia jobs history`` and the runs page.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from sophia_lib.scheduler.history import latest_by_job

if TYPE_CHECKING:
    from sophia_lib.scheduler.loop import Scheduler

log = logging.getLogger("sophia.scheduler")


def status(scheduler: Scheduler) -> dict[str, Any]:
    now = datetime.now(UTC)
    latest = latest_by_job(scheduler.app_db)
    jobs = {}
    for job in scheduler.schedule.jobs.values():
        run = latest.get(job.name)
        jobs[job.name] = {
            "enabled": job.enabled, "trigger": job.trigger,
            "next": scheduler.next_run(job, now).isoformat() if job.enabled else None,
            "last_run": None if run is None else {
                "id": run.id, "status": run.status, "attempt": run.attempt,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None},
        }
    return {"status": "stopping" if scheduler.stop_event.is_set() else "ok",
            "started_at": scheduler.started_at.isoformat(), "timezone": scheduler.tz.key, "jobs": jobs}


def serve(scheduler: Scheduler, url: str | None = None) -> ThreadingHTTPServer | None:
    """Serve ``<prefix>health`` on the service URL in a daemon thread; None when no URL is configured."""
    url = url or os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        return None
    parsed = urlparse(url)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/") + "/"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path not in (f"{prefix}health", "/health"):
                self._send(404, {"error": f"not found; try {prefix}health"})
                return
            try:
                self._send(200, status(scheduler))
            except Exception as exc:
                self._send(503, {"status": "error", "error": type(exc).__name__})

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((parsed.hostname or "127.0.0.1", parsed.port or 80), Handler)
    threading.Thread(target=server.serve_forever, name="sophia-scheduler-health", daemon=True).start()
    log.info("scheduler status at %s%shealth", url.rstrip("/"), prefix)
    return server
