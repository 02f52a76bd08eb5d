"""Build the RFC 5322 message for one outgoing email.

Everything that comes from data (subject, display names, extra header values) is forced
onto one line here, so no input can add a header or a recipient; an address that is not
exactly one clean mailbox raises ValueError instead, because guessing at a recipient is
worse than not sending.

The message is written out directly (mime_bytes) from values this module has already
cleaned, folded and encoded, rather than through the email package's header objects: those
parse every value again on the way in and on the way out, which cost a millisecond or more
per message, more than sending it. build_mime() gives the same message as an EmailMessage,
to look at; its as_bytes() is exactly mime_bytes().
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from functools import lru_cache

# Every part is transfer-encoded to 7 bits here (quoted-printable or base64 where needed),
# so the bytes on the wire do not depend on whether the server offers 8BITMIME. When it
# does not, aiosmtplib asks the stdlib to downgrade 8-bit parts, and that re-encodes text
# parts with bare LF line ends, which breaks the CRLF that iCalendar requires.
# refold_source="none": build_mime() stores the header values as this module folded them;
# refolding would parse them again and turn a long X- value into encoded-words.
POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")

# RFC 5322, section 2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
_LINE = 78
_MAX_LINE = 998
# The characters str.splitlines() breaks on: the email package refuses them in headers.
_LINE_BREAK = re.compile(r"\s*[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+\s*")
# Unicode category Cc (C0, DEL, C1) except the tab, which is header whitespace.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# A word of header text with the whitespace before it: where a header may be folded.
_PIECE = re.compile(r"[ \t]*[^ \t]+")
# RFC 5322 atext plus ".", on both sides of the "@" of a msg-id.
_ID_TEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_MESSAGE_ID = re.compile(rf"{_ID_TEXT}@{_ID_TEXT}")
# dot-atom@dot-atom (RFC 5322, section 3.4.1): what nearly every address is, and always an
# addr-spec that Address accepts unchanged, so its full parse can be skipped.
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(rf"({_DOT_ATOM})@({_DOT_ATOM})")
# Never in an address here: whitespace (as str.isspace), list and angle punctuation, and
# controls (Unicode category Cc).
_NOT_IN_ADDRESS = re.compile(r"[\s<>,;\x00-\x1f\x7f-\x9f]")
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


# Header values in this module are folded with "\n" and contain no other line break.
_Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Part:
    headers: _Headers
    body: str  # transfer-encoded, 7-bit, every line ending in "\n"


def build_mime(msg: OutgoingMessage, *, date: datetime) -> EmailMessage:
    """Render msg as a MIME message dated date (an aware datetime).

    The text alone gives a text/plain message; with html and/or calendar it becomes
    multipart/alternative in the order text, html, calendar, the last being
    "text/calendar; charset=utf-8; method=..." as Outlook and Gmail expect of an
    invitation. The output is a function of the arguments, boundary included, and its
    as_bytes() equals mime_bytes(msg, date=date), the bytes the transports send (as_bytes()
    costs far more: the email package parses the headers again to write them).

    Raises ValueError for a naive date, a malformed message_id, no recipients, an
    address that is not one clean mailbox, a calendar that is not UTF-8 or whose METHOD
    disagrees with calendar_method, and an extra header that is neither X-* nor
    informational (those could change recipients or structure).
    """
    headers, parts, boundary = _assemble(msg, date)
    if boundary is None:
        return _message([*headers, *parts[0].headers], parts[0].body)
    mime = _message(headers, None)
    mime.set_payload([_message(part.headers, part.body) for part in parts])
    return mime


def mime_bytes(msg: OutgoingMessage, *, date: datetime, linesep: str = "\r\n") -> bytes:
    """Return the message build_mime() describes as bytes, lines ending in linesep.

    These are the bytes to send (SMTP wants the default CRLF); raises as build_mime() does.
    """
    headers, parts, boundary = _assemble(msg, date)
    if boundary is None:
        text = _head([*headers, *parts[0].headers]) + parts[0].body
    else:
        # The layout of email.generator, so that build_mime().as_bytes() is the same.
        delimiter = f"--{boundary}\n"
        bodies = f"\n{delimiter}".join(_head(part.headers) + part.body for part in parts)
        text = f"{_head(headers)}{delimiter}{bodies}\n--{boundary}--\n"
    # ASCII by construction; encode("ascii") would raise if that were ever not so.
    return text.replace("\n", linesep).encode("ascii")


def _assemble(msg: OutgoingMessage, date: datetime) -> tuple[_Headers, list[_Part], str | None]:
    """Return the top-level headers, the parts and the boundary (None: a single part)."""
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError(f"date must be timezone-aware, got {date!r}")
    if not _MESSAGE_ID.fullmatch(msg.message_id):
        raise ValueError(f"message_id must look like left@right, got {msg.message_id!r}")
    if isinstance(msg.to, str) or not msg.to:
        raise ValueError("to must be a non-empty tuple of addresses")

    headers: _Headers = [
        ("From", _sender_header(msg.sender)),
        ("To", _mailboxes("To", msg.to)),
    ]
    if msg.reply_to is not None:
        headers.append(("Reply-To", _mailboxes("Reply-To", [msg.reply_to])))
    headers += [
        ("Subject", _unstructured("Subject", msg.subject)),
        ("Date", _date_header(date)),
        ("Message-ID", _fold("Message-ID", f"<{msg.message_id}>")),
    ]
    for name, value in msg.headers:
        headers.append((_extra_header_name(name), _unstructured(name, value)))
    headers.append(("MIME-Version", "1.0"))

    parts = [_text_part("plain", msg.text)]
    if msg.html is not None:
        parts.append(_text_part("html", msg.html))
    if msg.calendar is not None:
        method = _calendar_method(msg.calendar, msg.calendar_method)
        calendar = msg.calendar.decode("utf-8")
        parts.append(_text_part("calendar", calendar, f'; method="{method}"'))
    elif msg.calendar_method is not None:
        raise ValueError("calendar_method given without a calendar")

    if len(parts) == 1:
        return headers, parts, None
    boundary = _boundary(msg)
    headers.append(("Content-Type", f'multipart/alternative;\n boundary="{boundary}"'))
    return headers, parts, boundary


def _message(headers: _Headers, body: str | None) -> EmailMessage:
    mime = EmailMessage(policy=POLICY)
    for name, value in headers:
        # Stored as they are: already folded and encoded by this module, and set through
        # mime[name] they would be parsed again, which is most of what this module avoids.
        mime.set_raw(name, value)
    if body is not None:
        mime.set_payload(body)
    return mime


def _head(headers: _Headers) -> str:
    return "".join(f"{name}: {value}\n" for name, value in headers) + "\n"


def _text_part(subtype: str, text: str, params: str = "") -> _Part:
    # What email.contentmanager does for set_content(): line ends normalised (bytes
    # splitlines: CR, LF and CRLF only), 7bit when that is possible, else the shorter of
    # quoted-printable and base64 (at least 4/3 of the text, so only tried when quoted-
    # printable is longer than that). Canonical text inside base64 has CRLF line ends.
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if body.isascii() and max(map(len, lines), default=0) <= _LINE:
        encoding, encoded = "7bit", body
    else:
        encoding, encoded = "quoted-printable", binascii.b2a_qp(body)
        if len(encoded) > len(body) * 4 // 3:  # base64 may be shorter: mostly non-ASCII
            wrapped = base64.encodebytes(b"\r\n".join(lines) + b"\r\n")
            if len(wrapped) < len(encoded):
                encoding, encoded = "base64", wrapped
    headers = [
        ("Content-Type", f'text/{subtype}; charset="utf-8"{params}'),
        ("Content-Transfer-Encoding", encoding),
    ]
    return _Part(headers, encoded.decode("ascii"))


# Every message of a run has the same sender and is dated the same instant.
@lru_cache(maxsize=16)
def _sender_header(sender: str) -> str:
    return _mailboxes("From", [sender])


@lru_cache(maxsize=16)
def _date_header(date: datetime) -> str:
    return format_datetime(date)


def _mailboxes(name: str, values: Iterable[str]) -> str:
    return _fold(name, ", ".join(_mailbox(parse_mailbox(value), name) for value in values))


def _mailbox(address: Address, header: str) -> str:
    addr_spec = address.addr_spec
    if not addr_spec.isascii():
        # Only the domain can be non-ASCII (Address refuses such a local part): a header
        # without SMTPUTF8 carries its IDNA form, which means the same domain.
        local, _, domain = addr_spec.rpartition("@")
        addr_spec = f"{local}@{domain.encode('idna').decode('ascii')}"
    name = address.display_name
    if not name:
        return addr_spec
    if _needs_encoded_words(name):
        return f"{' '.join(_encoded_words(name, header))} <{addr_spec}>"
    return formataddr((name, addr_spec))  # quotes and escapes the name where needed


def _unstructured(name: str, value: str) -> str:
    text = one_line(value)
    if not _needs_encoded_words(text):
        try:
            return _fold(name, text)
        except ValueError:  # a word longer than a line may be: encoded-words can be split
            pass
    return _fold(name, " ".join(_encoded_words(text, name)))


def _needs_encoded_words(text: str) -> bool:
    # "=?" could be read as the start of an encoded-word: encoding it keeps it literal.
    return not text.isascii() or "=?" in text


def _encoded_words(text: str, header: str) -> list[str]:
    # RFC 2047 encoded-words (at most 75 characters) that each fit on the header's first
    # line; the whitespace between two of them is not part of the decoded text.
    width = max(min(75, _LINE - 2 - len(header)), 40)
    return Header(text, "utf-8", maxlinelen=width).encode(linesep="\n").split()


def _fold(name: str, text: str) -> str:
    """Return text (one line, no leading space) folded as the value of header name.

    A fold goes before the whitespace between two words, so unfolding gives text back; lines
    are at most 78 characters where the words allow, and a longer word keeps a line of its
    own rather than being split, which would change the value (an X-Tickler-Identity). A
    line that would exceed the hard limit of 998 raises ValueError.
    """
    if len(name) + 2 + len(text) <= _LINE:
        return text
    head = f"{name}:"
    lines = [head]
    for piece in _PIECE.findall(f" {text}"):
        if len(lines[-1]) + len(piece) > _LINE and lines[-1] != head:
            lines.append(piece)
        else:
            lines[-1] += piece
    if max(map(len, lines)) > _MAX_LINE:
        raise ValueError(f"{name} has a word too long for a header line: {text[:80]!r}...")
    return "\n".join(lines)[len(head) + 1 :]


@lru_cache(maxsize=1024)
def parse_mailbox(value: str) -> Address:
    """Parse "addr@example.com" or "Display Name <addr@example.com>" into an Address.

    The display name is forced onto one line like any header text (quotes around it are
    removed); the address must be a bare addr-spec, else ValueError. Results are cached:
    the sender is the same on every message, and each recipient is needed twice.
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
    if not (local and at and domain) or _NOT_IN_ADDRESS.search(address):
        raise ValueError(f"not a single email address: {value!r}")
    plain = _PLAIN_ADDRESS.fullmatch(address)
    if plain:
        return Address(display_name=one_line(display), username=plain[1], domain=plain[2])
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
    return _CONTROL.sub("", _LINE_BREAK.sub(" ", value)).strip()


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
