"""The messages an alert sends: subject, plain text for Slack and mail, a small HTML body."""

from __future__ import annotations

from html import escape

from sophia_lib.alerts.lifecycle import Transition
from sophia_lib.alerts.rules import TRule
from sophia_lib.appdb.models import Alert
from sophia_lib.config import SophiaConfig
from sophia_lib.delivery import Message

TITLES = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED"}
COLOURS = {"firing": "#b42318", "reminder": "#b54708", "resolved": "#067647"}


def dashboards_url(config: SophiaConfig) -> str:
    if config.alerts.dashboards_url:
        return config.alerts.dashboards_url.rstrip("/")
    hub = config.hub.public_url or f"http://{config.hub.ip}:{config.hub.port}"
    return f"{hub.rstrip('/')}/services/dashboards"


def link_for(config: SophiaConfig, rule: TRule) -> str | None:
    return f"{dashboards_url(config)}/{rule.dashboard}" if rule.dashboard else None


def message_for(transition: Transition, alert: Alert, rule: TRule) -> Message:
    state = TITLES[transition.event]
    where = f" — {alert.key}" if alert.key else ""
    subject = f"[Sophia {alert.severity}] {state}: {rule.name}{where}"
    if transition.event == "resolved":
        lead = (f"Resolved at {alert.resolved_at:%Y-%m-%d %H:%M} UTC "
                f"(firing since {alert.first_fired_at:%Y-%m-%d %H:%M}).")
        text = f"{lead}\nLast seen: {alert.summary}"
    else:
        text = alert.summary + (f"\n{rule.description}" if rule.description else "")
    text += f"\nAlert #{alert.id} · `sophia alerts ack {alert.id}` · `sophia alerts snooze {alert.id} --for 2h`"
    link = alert.link
    html = (f'<div style="font-family:sans-serif"><p style="color:{COLOURS[transition.event]};font-weight:bold">'
            f"{escape(state)}: {escape(rule.name)}{escape(where)}</p>"
            + "".join(f"<p>{escape(line)}</p>" for line in text.splitlines())
            + (f'<p><a href="{escape(link)}">Open the dashboard that explains it</a></p>' if link else "")
            + "</div>")
    return Message(subject=subject, text=text, html=html, link=link)
