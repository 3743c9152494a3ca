"""Send a report to its audience: one copy per distinct (role, department) among the recipients, each
executed under that role, then mail (PDF and HTML attached, the summary in the body) and Slack (the
summary and a link to the dashboard that explains it; the link opens under the reader's own role).

The scheduler calls :func:`after_job` after each run of a report job (``AFTER_JOB`` in
:mod:`sophia_lib.scheduler.hooks`); ``sophia reports send NAME`` calls :func:`distribute` directly.
Every delivery is recorded in the app DB (``deliveries``, kind ``report``) and retried there; a copy that
cannot be rendered fails the distribution after the other copies were sent, naming the copy and the cell.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sophia_lib.config.typing import ReportRecipient, SophiaConfig
from sophia_lib.delivery import Attachment, DeliveryOutcome, Message, deliver
from sophia_lib.reports.auth import RoleAuth, role_auth
from sophia_lib.reports.catalog import REPORTS, ReportSpec, get_report
from sophia_lib.reports.render import RenderedReport, ReportError, new_run_folder, prune_runs, render_copy

if TYPE_CHECKING:
    from sophia_lib.appdb import AppDb
    from sophia_lib.scheduler.runner import RunOutcome
    from sophia_lib.scheduler.schedule import JobSpec

log = logging.getLogger("sophia.reports")


@dataclass
class Distribution:
    """What one distribution rendered and sent."""

    report: str
    copies: dict[tuple[str, str | None], RenderedReport] = field(default_factory=dict)
    deliveries: list[DeliveryOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        sent = sum(1 for d in self.deliveries if d.status == "sent")
        text = (f"report {self.report}: {len(self.copies)} cop{'y' if len(self.copies) == 1 else 'ies'} rendered, "
                f"{sent}/{len(self.deliveries)} deliveries sent")
        return text + (f"; failed: {'; '.join(self.failures)}" if self.failures else "")


def dashboard_link(config: SophiaConfig, slug: str) -> str:
    from sophia_lib.alerts.notify import dashboards_url

    return f"{dashboards_url(config)}/{slug}"


def recipients_of(config: SophiaConfig, spec: ReportSpec) -> list[ReportRecipient]:
    recipients = config.reports.audiences.get(spec.name, [])
    if not recipients:
        raise ReportError(f"report {spec.name} has no recipients.",
                          fix=f"add reports.audiences.{spec.name}: [{{to: email:…, role: executive_viewer}}] to "
                          "sophia.yaml (docs/reports.md)")
    return recipients


def message_for(config: SophiaConfig, spec: ReportSpec, copy: RenderedReport) -> Message:
    """Subject, the summary as text and HTML, the dashboard link, and the PDF and HTML attached."""
    as_of = str(copy.summary.get("as_of") or "")[:10]
    subject = f"{copy.title}" + (f" (data as of {as_of})" if as_of else "")
    link = dashboard_link(config, spec.dashboard_for(copy.department))
    sentences = copy.sentences or ["The report has no summary: open the attached PDF."]
    text = "\n".join(f"• {s}" for s in sentences) + f"\n\nFull report attached (PDF). Explore: {link}"
    body = ("<div style=\"font-family:system-ui,sans-serif\">"
            f"<h2>{html.escape(copy.title)}</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) +
            f"</ul><p>The full report is attached (PDF, HTML). <a href=\"{html.escape(link)}\">Open the dashboard"
            "</a></p></div>")
    attachments = [Attachment.from_file(copy.html, "text/html")]
    if copy.pdf is not None:
        attachments.insert(0, Attachment.from_file(copy.pdf))
    return Message(subject, text, html=body, link=link, attachments=attachments)


def distribute(config: SophiaConfig, name: str, *, recipients: Sequence[ReportRecipient] | None = None,
               auth: RoleAuth | None = None, job_run_id: int | None = None, app_db: AppDb | None = None,
               sleep: Callable[[float], None] | None = None) -> Distribution:
    """Render ``name`` once per (role, department) among its recipients and deliver each recipient its copy.
    Raises :class:`ReportError` after delivering what it could when a copy failed to render."""
    spec = get_report(name)
    recipients = list(recipients if recipients is not None else recipients_of(config, spec))
    auth = auth or role_auth(config)
    folder = new_run_folder(config, spec.name)
    result = Distribution(spec.name)
    for key in dict.fromkeys((r.role, r.department if spec.by_department else None) for r in recipients):
        role, department = key
        try:
            result.copies[key] = render_copy(config, spec, auth.env(role),
                                             folder / (role + (f"-{department}" if department else "")),
                                             department=department)
        except Exception as exc:  # a copy that fails must not stop the others
            log.exception("report %s: the %s copy failed", spec.name, role)
            result.failures.append(f"{role}{f'/{department}' if department else ''}: {exc}")
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    for recipient in recipients:
        copy = result.copies.get((recipient.role, recipient.department if spec.by_department else None))
        if copy is None:
            continue
        result.deliveries += deliver(config, message_for(config, spec, copy), [recipient.to], kind="report",
                                     job_run_id=job_run_id, app_db=app_db, **extra)
    log.info(result.summary())
    prune_runs(config, spec.name)
    if result.failures:
        raise ReportError(result.summary(), fix="open the failing copy's notebook (sophia reports render NAME --as "
                          "ROLE) and fix it; the recipients of the other copies got theirs")
    return result


def after_job(config: SophiaConfig, job: JobSpec, outcome: RunOutcome) -> None:
    """Scheduler hook: after a successful run of a report job with an audience, distribute the report."""
    if job.name not in REPORTS or not getattr(outcome, "succeeded", False):
        return
    if not config.reports.audiences.get(job.name):
        log.info("report %s: no recipients in reports.audiences, nothing to send", job.name)
        return
    distribute(config, job.name, job_run_id=outcome.run_id)
