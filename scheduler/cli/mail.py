"""``tickler mail``: read what the daemon wrote to the Maildir (no SMTP server configured).

``list`` shows the messages, oldest first (the last ``--limit``); ``show`` prints one, found by
its Maildir key (or a unique prefix of it), its Message-ID or its Tickler identity: the
headers that say what it is, then the text part (``--html``: the HTML part; ``--raw``: the
whole file as written). Reading never moves a message out of ``new/``: a mail client pointed
at the same folder still sees it as unread.

The standard library's ``mailbox`` and ``email`` do the reading; they are imported inside the
commands so that registering them costs nothing (see ``main``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import shown, shown_lines

if TYPE_CHECKING:
    import mailbox
    from email.message import EmailMessage

IDENTITY_HEADER = "X-Tickler-Identity"


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One message, as ``tickler mail list`` shows it."""

    key: str
    date: str  # RFC 3339, UTC; empty when the message has no readable Date
    sender: str
    to: str
    subject: str
    message_id: str
    identity: str


def open_maildir(path: Path) -> mailbox.Maildir:
    """Return the Maildir at ``path``; fail with a hint when there is none."""
    import mailbox

    if not (path / "new").is_dir() and not (path / "cur").is_dir():
        fail(
            f"no Maildir at {path}: the daemon writes one there when TICKLER_SMTP_HOST is "
            "unset (TICKLER_MAILDIR says where)"
        )
    return mailbox.Maildir(path, factory=None, create=False)


def _parse(data: bytes, *, headers_only: bool = False) -> EmailMessage:
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(data, headersonly=headers_only)
    assert isinstance(message, EmailMessage)  # what policy.default builds
    return message


def summaries(box: mailbox.Maildir) -> list[Summary]:
    """Return every message of ``box``, oldest first (by Date; the key breaks ties)."""
    out = []
    for key in box.iterkeys():
        head = _parse(box.get_bytes(key), headers_only=True)
        out.append(
            Summary(
                key=key,
                date=_instant(head.get("Date")),
                sender=str(head.get("From", "")),
                to=str(head.get("To", "")),
                subject=str(head.get("Subject", "")),
                message_id=str(head.get("Message-ID", "")).strip().strip("<>"),
                identity=str(head.get(IDENTITY_HEADER, "")),
            )
        )
    return sorted(out, key=lambda s: (s.date, s.key))


def _instant(value: object) -> str:
    """Return a Date header as RFC 3339 UTC (``""`` when it is missing or unreadable)."""
    when = getattr(value, "datetime", None)
    if not isinstance(when, datetime) or when.tzinfo is None:
        return ""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def find(box: mailbox.Maildir, wanted: str) -> str:
    """Return the key of the one message that ``wanted`` names: a key or a unique prefix of
    one, a Message-ID (with or without angle brackets) or a Tickler identity."""
    keys = list(box.iterkeys())
    if wanted in keys:
        return wanted
    found = [k for k in keys if k.startswith(wanted)]
    if not found:
        bare = wanted.strip().strip("<>")
        found = [s.key for s in summaries(box) if bare in (s.message_id, s.identity)]
    if len(found) == 1:
        return found[0]
    if not found:
        fail(f"no message {wanted!r} in the Maildir (tickler mail list shows the keys)")
    fail(f"{wanted!r} names {len(found)} messages; give more of the key")


@click.group()
def mail() -> None:
    """Read the Maildir the daemon writes to when no SMTP server is set."""


@mail.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Every message, not the last --limit.")
@click.option("--match", help="Only messages whose recipient, subject or identity contain this.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def list_command(obj: Context, limit: int, show_all: bool, match: str | None, fmt: str) -> None:
    """List the messages, oldest first: date (UTC), key, recipient, subject."""
    box = open_maildir(obj.settings.maildir)
    found = summaries(box)
    if match:
        needle = match.casefold()
        found = [
            s
            for s in found
            if any(needle in field.casefold() for field in (s.to, s.subject, s.identity))
        ]
    total = len(found)
    if not show_all:
        found = found[-limit:]
    if fmt == "json":
        click.echo(json.dumps([asdict(s) for s in found], indent=2, ensure_ascii=False))
        return
    # One line a message, nothing cut: greppable, and the key is there to copy into ``show``.
    for s in found:
        click.echo(
            shown(f"{s.date[:16].replace('T', ' ') or '?':16}  {s.key}  {s.to}  {s.subject}")
        )
    if len(found) < total:
        click.echo(f"({len(found)} of {total}; --all for every one)", err=True)


@mail.command("show")
@click.argument("wanted", metavar="KEY|MESSAGE-ID|IDENTITY")
@click.option("--html", "part", flag_value="html", help="Print the HTML part.")
@click.option("--raw", "part", flag_value="raw", help="Print the whole message as written.")
@click.pass_obj
def show_command(obj: Context, wanted: str, part: str | None) -> None:
    """Print one message: its headers, then its text part."""
    from email.message import EmailMessage

    box = open_maildir(obj.settings.maildir)
    key = find(box, wanted)
    data = box.get_bytes(key)
    if part == "raw":
        click.echo(data.decode("utf-8", "replace"), nl=False)
        return
    message = _parse(data)
    for name in ("Date", "From", "To", "Reply-To", "Subject", "Message-ID", IDENTITY_HEADER):
        value = message.get(name)
        if value is not None:
            click.echo(shown(f"{name}: {value}"))
    click.echo(f"Key: {key}")
    parts = [
        p.get_content_type() + (f" ({p.get_filename()})" if p.get_filename() else "")
        for p in message.walk()
        if not p.is_multipart()
    ]
    click.echo(f"Parts: {', '.join(parts)}")
    click.echo()
    body = message.get_body(preferencelist=("html",) if part == "html" else ("plain",))
    if body is None:
        fail(f"message {key} has no {'HTML' if part == 'html' else 'text'} part")
    assert isinstance(body, EmailMessage)
    click.echo(shown_lines(str(body.get_content()).rstrip("\n")))
