"""Mail over SMTP (``delivery.smtp_*``): a multipart message with a text part, an HTML part and attachments."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sophia_lib.config import SophiaConfig
from sophia_lib.delivery.errors import DeliveryConfigError, DeliveryFailedError
from sophia_lib.delivery.message import Message


def build_email(config: SophiaConfig, to: str, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = config.delivery.mail_from
    mail["To"] = to
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain=config.delivery.mail_from.rpartition("@")[2] or "sophia.local")
    text = message.text + (f"\n\n{message.link}" if message.link and message.link not in message.text else "")
    mail.set_content(text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mime.partition("/")
        mail.add_attachment(attachment.content, maintype=maintype, subtype=subtype or "octet-stream",
                            filename=attachment.filename)
    return mail


def send_email(config: SophiaConfig, to: str, message: Message) -> None:
    """Send one mail. Raises :class:`DeliveryConfigError` (no server configured, login refused, address
    refused) or :class:`DeliveryFailedError` (unreachable, timeout, a temporary refusal)."""
    settings = config.delivery
    if not settings.smtp_host:
        raise DeliveryConfigError("no SMTP server is configured, so mail cannot be sent.",
                                  fix="set delivery.smtp_host (and smtp_port, mail_from) in sophia.yaml, or "
                                      "SOPHIA_DELIVERY__SMTP_HOST")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    mail = build_email(config, to, message)
    try:
        smtp = _connect(config)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailedError(f"cannot reach the SMTP server at {where}: {_describe(exc)}.",
                                  fix="check delivery.smtp_host/smtp_port and that the server is up") from None
    try:
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, _password(config))
            smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryConfigError(f"the SMTP server at {where} refused the login of {settings.smtp_user!r}: "
                                  f"{_describe(exc)}.",
                                  fix="check delivery.smtp_user and the secret behind delivery.smtp_password") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = DeliveryFailedError if all(400 <= c < 500 for c in codes) else DeliveryConfigError
        raise error(f"the SMTP server at {where} refused the recipient {to}: {_describe(exc)}.",
                    fix="check the address in the rule or report audience") from None
    except smtplib.SMTPResponseException as exc:
        error = DeliveryFailedError if 400 <= exc.smtp_code < 500 else DeliveryConfigError
        raise error(f"the SMTP server at {where} answered {exc.smtp_code}: {_describe(exc)}.",
                    fix="see the server's answer; 4xx is temporary and retried") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailedError(f"sending mail through {where} failed: {_describe(exc)}.",
                                  fix="check the SMTP server; the delivery is retried") from None


def _connect(config: SophiaConfig) -> smtplib.SMTP:
    settings = config.delivery
    if settings.smtp_security == "ssl":
        return smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s,
                                context=ssl.create_default_context())
    return smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s)


def _password(config: SophiaConfig) -> str:
    if config.delivery.smtp_password is None:
        raise DeliveryConfigError("delivery.smtp_user is set but delivery.smtp_password is not.",
                                  fix="set delivery.smtp_password: {secret: NAME} and store NAME with "
                                      "`sophia credentials set NAME`")
    from sophia_lib.secrets import resolve

    return resolve(config.delivery.smtp_password, config)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {detail}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
