"""The fake SendGrid's vocabulary: its error body, and how a Mail Send body is checked
(twilio/sendgrid-oai spec/json/tsg_mail_v3.json, PostMailSend)."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_API_KEY = "SG.FakeSendGridKey0123456.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # every to, cc and bcc of every personalization, per request
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."

Answer = tuple[int, Any]

_ADDRESS = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\".]+")


class SendGridFailure(Exception):
    """Raised by handlers; answered with SendGrid's ErrorResponse ``{"errors": [{"message",
    "field", "help"}]}`` (field and help only where SendGrid gives them)."""

    def __init__(self, status: int, message: str, field: str | None = None, help: str | None = None) -> None:
        error: dict[str, Any] = {"message": message, "field": field}
        if help is not None:
            error["help"] = help
        self.status = status
        self.body = {"errors": [error]}
        super().__init__(message)


def error_body(status: int, message: str, field: str | None = None) -> Answer:
    failure = SendGridFailure(status, message, field)
    return failure.status, failure.body


def _bad(field: str, message: str, anchor: str) -> SendGridFailure:
    return SendGridFailure(400, message, field, HELP + anchor)


def _address(doc: Any, field: str, anchor: str) -> str:
    """One MailTo/MailFrom object's address, or SendGrid's 400."""
    if not isinstance(doc, dict) or not isinstance(doc.get("email"), str):
        raise _bad(field, "The email parameter is required and must be a string.", anchor)
    if not _ADDRESS.fullmatch(doc["email"]):
        raise _bad(field, "Does not contain a valid address.", anchor)
    return str(doc["email"])


def _addresses(value: Any, field: str, anchor: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(field, f"The {field.rsplit('.', 1)[-1]} parameter must be an array of email objects.", anchor)
    return [_address(v, f"{field}.{i}.email", anchor) for i, v in enumerate(value)]


def mail(doc: Any) -> dict[str, Any]:
    """Check one Mail Send body; return ``{"recipients": [...], "from": [...], "doc": doc}``.

    Raises SendGridFailure 400 with the field named, as SendGrid does.
    """
    if not isinstance(doc, dict):
        raise _bad("", "The request body must be a JSON object.", "")
    p13ns = doc.get("personalizations")
    if not isinstance(p13ns, list) or not p13ns:
        raise _bad(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if len(p13ns) > MAX_PERSONALIZATIONS:
        raise _bad(
            "personalizations", "You may not have more than 1000 personalizations per request.", "personalizations"
        )
    senders = [_address(doc.get("from"), "from.email", "from")]
    recipients: list[str] = []
    for i, p in enumerate(p13ns):
        here = f"personalizations.{i}"
        if not isinstance(p, dict):
            raise _bad(here, "Each personalization must be an object.", "personalizations")
        to = _addresses(p.get("to"), f"{here}.to", "personalizations.to")
        if not to:
            raise _bad(
                f"{here}.to",
                "The to array is required for all personalization objects, and must have at least one "
                "email object with a valid email address.",
                "personalizations.to",
            )
        cc = _addresses(p.get("cc"), f"{here}.cc", "personalizations.cc")
        bcc = _addresses(p.get("bcc"), f"{here}.bcc", "personalizations.bcc")
        seen: set[str] = set()
        for field, addr in [*(("to", a) for a in to), *(("cc", a) for a in cc), *(("bcc", a) for a in bcc)]:
            if addr.lower() in seen:
                raise _bad(
                    f"{here}.{field}",
                    "Each email address in the personalization block should be unique between to, cc, and bcc. "
                    f"We found the first duplicate instance of [{addr}] in the {here}.{field} field.",
                    "personalizations",
                )
            seen.add(addr.lower())
        recipients.extend([*to, *cc, *bcc])
        if p.get("from") is not None:
            senders.append(_address(p["from"], f"{here}.from.email", "personalizations.from"))
    if len(recipients) > MAX_RECIPIENTS:
        raise _bad("personalizations", "The total number of recipients must be 1000 or fewer.", "personalizations")
    if doc.get("reply_to") is not None and doc.get("reply_to_list") is not None:
        raise _bad("reply_to", "You can use either the reply_to property or reply_to_list property but not both.", "")
    templated = isinstance(doc.get("template_id"), str)
    if not templated and not doc.get("subject") and not all(isinstance(p.get("subject"), str) for p in p13ns):
        raise _bad(
            "subject",
            "The subject is required. You can get around this requirement if you use a template with a subject "
            "defined or if every personalization has a subject defined.",
            "subject",
        )
    content = doc.get("content")
    if not templated and not (isinstance(content, list) and content):
        raise _bad(
            "content",
            "Unless a valid template_id is provided, the content parameter is required. There must be at least "
            "one defined content block.",
            "content",
        )
    return {"recipients": recipients, "from": senders, "doc": doc}
