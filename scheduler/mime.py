"""Build the RFC 5322 message for one outgoing email.

Everything that comes from data (subject, display names, extra header values) is forced
onto one line here, so no input can add a header or a recipient; an address that is not
exactly one clean mailbox raises ValueError instead, because guessing at a recipient is
worse than not sending.
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

# Every part is transfer-encoded to 7 bits here (quoted-printable or base64 where needed),
# so the bytes on the wire do not depend on whether the server offers 8BITMIME. When it
# does not, aiosmtplib asks the stdlib to downgrade 8-bit parts, and that re-encodes text
# parts with bare LF line ends, which breaks the CRLF that iCalendar requires.
POLICY = email.policy.SMTP.clone(cte_type="7bit")

# The characters str.splitlines() breaks on: the email package refuses them in headers.
_LINE_BREAK = re.compile(r"\s*[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*")
# RFC 5322 atext plus ".", on both sides of the "@" of a msg-id.
_ID_TEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_MESSAGE_ID = re.compile(rf"{_ID_TEXT}@{_ID_TEXT}")
# RFC 5322 field name: printable ASCII except ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_METHOD_LINE = re.compile(rb"^METHOD:([A-Za-z-]+)\r?$", re.MULTILINE | re.IGNORECASE)
# iTIP methods (RFC 5546, section 1.4).
_ITIP_METHODS = frozenset(
    {"PUBLISH", "REQUEST", "REPLY", "ADD", "CANCEL", "REFRESH", "COUNTER", "DECLINECOUNTER"}
)
# Extra headers a caller may set besides X-*: informational ones that change neither the
# recipients nor the MIME structure.
_EXTRA_HEADERS = frozenset(
    {
        "auto-submitted",
        "in-reply-to",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "precedence",
        "references",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """One email as the jobs describe it; build_mime() turns it into MIME.

    message_id is the msg-id without angle brackets, derived by the caller from what the
    message is about, so that a retried send carries the same Message-ID. sender, each
    of to and reply_to are "addr@example.com" or "Display Name <addr@example.com>".
    calendar is an iCalendar body; calendar_method defaults to its METHOD property.
    """

    message_id: str
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    calendar: bytes | None = None
    calendar_method: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    reply_to: str | None = None


def build_mime(msg: OutgoingMessage, *, date: datetime) -> EmailMessage:
    """Render msg as a MIME message dated date (an aware datetime).

    The text alone gives a text/plain message; with html and/or calendar it becomes
    multipart/alternative in the order text, html, calendar, the last being
    "text/calendar; charset=utf-8; method=..." as Outlook and Gmail expect of an
    invitation. The output is a function of the arguments, boundary included.

    Raises ValueError for a naive date, a malformed message_id, no recipients, an
    address that is not one clean mailbox, a calendar that is not UTF-8 or whose METHOD
    disagrees with calendar_method, and an extra header that is neither X-* nor
    informational (those could change recipients or structure).
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError(f"date must be timezone-aware, got {date!r}")
    if not _MESSAGE_ID.fullmatch(msg.message_id):
        raise ValueError(f"message_id must look like left@right, got {msg.message_id!r}")
    if isinstance(msg.to, str) or not msg.to:
        raise ValueError("to must be a non-empty tuple of addresses")

    mime = EmailMessage(policy=POLICY)
    mime["From"] = parse_mailbox(msg.sender)
    mime["To"] = tuple(parse_mailbox(address) for address in msg.to)
    if msg.reply_to is not None:
        mime["Reply-To"] = parse_mailbox(msg.reply_to)
    mime["Subject"] = one_line(msg.subject)
    mime["Date"] = format_datetime(date)
    mime["Message-ID"] = f"<{msg.message_id}>"
    for name, value in msg.headers:
        mime[_extra_header_name(name)] = one_line(value)

    mime.set_content(msg.text)
    if msg.html is not None:
        mime.add_alternative(msg.html, subtype="html")
    if msg.calendar is not None:
        method = _calendar_method(msg.calendar, msg.calendar_method)
        mime.add_alternative(
            msg.calendar.decode("utf-8"), subtype="calendar", params={"method": method}
        )
    elif msg.calendar_method is not None:
        raise ValueError("calendar_method given without a calendar")

    if mime.is_multipart():
        for part in mime.iter_parts():
            # add_alternative() copies MIME-Version into every part; it belongs on top only.
            del part["MIME-Version"]
        mime.set_boundary(_boundary(msg))
    return mime


def parse_mailbox(value: str) -> Address:
    """Parse "addr@example.com" or "Display Name <addr@example.com>" into an Address.

    The display name is forced onto one line like any header text (quotes around it are
    removed); the address must be a bare addr-spec, else ValueError.
    """
    text = value.strip()
    display, address = "", text
    if text.endswith(">") and "<" in text:
        start = text.rindex("<")
        display, address = text[:start].strip(), text[start + 1 : -1]
    if len(display) >= 2 and display[0] == display[-1] == '"':
        display = re.sub(r"\\(.)", r"\1", display[1:-1])
    elif "<" in display or ">" in display:
        raise ValueError(f"more than one <address> in {value!r}")

    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(
        ch.isspace() or ch in "<>,;" or unicodedata.category(ch) == "Cc" for ch in address
    ):
        raise ValueError(f"not a single email address: {value!r}")
    try:
        return Address(display_name=one_line(display), addr_spec=address)
    except (ValueError, IndexError, email.errors.HeaderParseError) as exc:
        # Address raises all three (defects are ValueErrors) for malformed addr-specs.
        raise ValueError(f"not a valid email address: {value!r} ({exc})") from exc


def envelope_sender(msg: OutgoingMessage) -> str:
    """Return the bare address of msg.sender, for MAIL FROM."""
    return parse_mailbox(msg.sender).addr_spec


def envelope_recipients(msg: OutgoingMessage) -> list[str]:
    """Return the bare addresses of msg.to without repeats, in order, for RCPT TO."""
    return list(dict.fromkeys(parse_mailbox(address).addr_spec for address in msg.to))


def one_line(value: str) -> str:
    """Return value as a single header line: line breaks become a space, controls go."""
    flat = _LINE_BREAK.sub(" ", value)
    return "".join(ch for ch in flat if ch == "\t" or unicodedata.category(ch) != "Cc").strip()


def _extra_header_name(name: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"not a header field name: {name!r}")
    if not (name.lower().startswith("x-") or name.lower() in _EXTRA_HEADERS):
        raise ValueError(f"extra header {name!r} is not allowed: use an X- header")
    return name


def _calendar_method(calendar: bytes, declared: str | None) -> str:
    # Outlook rejects an invitation whose MIME method differs from the body's METHOD
    # ("Inbound Mime method and ICAL method mismatch"), so the two must agree.
    found = _METHOD_LINE.search(calendar)
    body_method = found.group(1).decode("ascii").upper() if found else None
    method = declared.upper() if declared is not None else body_method
    if method is None:
        raise ValueError("calendar has no METHOD property and no calendar_method given")
    if method not in _ITIP_METHODS:
        raise ValueError(f"unknown iTIP method {method!r}")
    if body_method != method:
        raise ValueError(f"calendar_method {method} but the calendar says {body_method}")
    return method


def _boundary(msg: OutgoingMessage) -> str:
    # Derived from the content, so that the same message always renders to the same bytes
    # and the boundary cannot occur inside the parts it separates.
    digest = hashlib.sha256()
    for piece in (msg.message_id, msg.text, msg.html or ""):
        digest.update(piece.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(msg.calendar or b"")
    return f"=_tickler_{digest.hexdigest()[:40]}"
