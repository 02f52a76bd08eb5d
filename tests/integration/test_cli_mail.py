"""``tickler mail list|show`` over a Maildir the daemon's own transport wrote."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobs.mail.mime import OutgoingMessage
from jobs.mail.transport import DeliveryStatus, MaildirTransport
from scheduler.cli.main import cli

DUE = datetime(2003, 1, 10, 17, tzinfo=UTC)
INVITE = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


def message(n: int, to: str, subject: str, **fields: object) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=f"m{n}.tickler@tickler",
        sender="Tickler Compliance <compliance@example.com>",
        to=(to,),
        subject=subject,
        text=f"Dear reader {n},\n\nbody {n}.\n",
        headers=(("X-Tickler-Identity", f"fcpa/2003/employee:E{n}/request"),),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    """Three messages written out of date order: an HTML one, an invitation, a plain one."""
    path = tmp_path / "maildir"
    transport = MaildirTransport(path)
    sends = [
        (message(2, "ada@example.com", "Second", html="<p>body 2</p>"), DUE + timedelta(days=1)),
        (message(3, "bo@supplier.example", "Third", calendar=INVITE), DUE + timedelta(days=2)),
        (message(1, "ada@example.com", "First"), DUE),
    ]
    for msg, when in sends:
        result = asyncio.run(transport.send(msg, date=when))
        assert result.status is DeliveryStatus.SENT, result
    return path


def run(maildir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["mail", *args], env={"TICKLER_MAILDIR": str(maildir)})


def keys(maildir: Path) -> list[str]:
    return sorted(p.name for p in (maildir / "new").iterdir())


def test_list_is_oldest_first_one_line_each_and_filters(maildir: Path) -> None:
    listed = run(maildir, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert [line.split()[-1] for line in lines] == ["First", "Second", "Third"]
    assert lines[0].startswith("2003-01-10 17:00  ")
    assert {line.split()[2] for line in lines} == set(keys(maildir))
    assert "bo@supplier.example" in lines[2]

    last = run(maildir, "list", "--limit", "1")
    assert last.stdout.splitlines() == lines[-1:]
    assert "(1 of 3; --all for every one)" in last.stderr
    matched = run(maildir, "list", "--match", "ADA@", "--format", "json")
    rows = json.loads(matched.stdout)
    assert [r["subject"] for r in rows] == ["First", "Second"]
    assert rows[0] == {
        "key": rows[0]["key"],
        "date": "2003-01-10T17:00:00Z",
        "sender": "Tickler Compliance <compliance@example.com>",
        "to": "ada@example.com",
        "subject": "First",
        "message_id": "m1.tickler@tickler",
        "identity": "fcpa/2003/employee:E1/request",
    }


@pytest.mark.parametrize(
    "wanted",
    ["<m2.tickler@tickler>", "m2.tickler@tickler", "fcpa/2003/employee:E2/request", "KEY"],
)
def test_show_finds_a_message_by_message_id_identity_or_key(maildir: Path, wanted: str) -> None:
    rows = json.loads(run(maildir, "list", "--format", "json").stdout)
    key = rows[1]["key"]
    shown = run(maildir, "show", key if wanted == "KEY" else wanted)
    assert shown.exit_code == 0, shown.output
    head, _, body = shown.output.partition("\n\n")
    assert "Subject: Second" in head and "Message-ID: <m2.tickler@tickler>" in head
    assert f"Key: {key}" in head and "Parts: text/plain, text/html" in head
    assert body == "Dear reader 2,\n\nbody 2.\n"
    assert run(maildir, "show", "--html", key).output.endswith("<p>body 2</p>\n")


def test_show_raw_invitation_and_reading_leaves_messages_unread(maildir: Path) -> None:
    before = keys(maildir)
    rows = json.loads(run(maildir, "list", "--format", "json").stdout)
    invitation = rows[2]["key"]
    shown = run(maildir, "show", invitation[:-2])  # a unique prefix is enough
    assert "Parts: text/plain, text/calendar" in shown.output
    raw = run(maildir, "show", "--raw", invitation)
    assert raw.output == (maildir / "new" / invitation).read_text()
    assert "METHOD:REQUEST" in raw.output
    assert keys(maildir) == before  # still in new/: a mail client sees them unread


def test_what_cannot_be_shown_says_why_and_exits_2(maildir: Path, tmp_path: Path) -> None:
    unknown = run(maildir, "show", "nothing-like-it")
    assert unknown.exit_code == 2
    assert "no message 'nothing-like-it' in the Maildir" in unknown.stderr
    common = keys(maildir)[0][:3]  # every key starts with the same seconds
    ambiguous = run(maildir, "show", common)
    assert ambiguous.exit_code == 2
    assert "names 3 messages; give more of the key" in ambiguous.stderr
    no_html = run(maildir, "show", "--html", "m1.tickler@tickler")
    assert no_html.exit_code == 2 and "has no HTML part" in no_html.stderr
    missing = run(tmp_path / "none", "list")
    assert missing.exit_code == 2
    assert "no Maildir at" in missing.stderr and "TICKLER_SMTP_HOST" in missing.stderr
