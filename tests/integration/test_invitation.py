"""The emailed invitation is the feed's event: field by field, as two clients would read them.

Each case plans and delivers the seed offer into a Maildir (the messages ``jobs.deliver.compose``
built, as the transport wrote them), renders the program feed the employees subscribe to, and
reads both with ``icalendar``. A client that has the feed and the email must see one meeting:
same UID and SEQUENCE, same text, same place with the dial-in, same local times and zone. A
cancelled presentation is cancelled as it was: its own times, not the election cutoff.
"""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import icalendar
import pytest
from sqlalchemy import null, select, update

from config.programs import OptionExchange, Presentation
from jobs.storage.db import EventVersion, OutboxMessage, begin_write
from scheduler.daemon.service import Service
from scheduler.web.feeds import FeedSource
from tests.world import OFFER, PROGRAMS, events_by_uid, parse, seeded, service, utc

SEED = next(p for p in PROGRAMS if isinstance(p, OptionExchange) and p.id == OFFER)
FEED = f"program:{OFFER}:employees"
PAT = "e1001@example.com"  # the seed world's eligible employee
#: The morning of the offer's first day: the announcement and first invitations have gone out.
OPENED = utc("2002-12-19T10:00:00-08:00")
#: Two hours later the program file changes (a meeting moved, or removed).
CHANGED = OPENED + timedelta(hours=2)
FRIDAY = f"{OFFER}/presentation/2002-12-20@tickler"
THURSDAY = f"{OFFER}/presentation/2002-12-19@tickler"
#: What must agree; DTSTART and DTEND are compared with their TZID parameter.
FIELDS = ("UID", "SUMMARY", "DESCRIPTION", "LOCATION", "DTSTART", "DTEND", "CATEGORIES")


def moved() -> OptionExchange:
    """The seed offer with Friday's meeting an hour later, in another room."""
    [thursday, friday] = SEED.presentations
    later = friday.model_copy(
        update={
            "start": friday.start + timedelta(hours=1),
            "end": friday.end + timedelta(hours=1),
            "location": "Board room, Irvine",
        }
    )
    return SEED.model_copy(update={"presentations": [thursday, later]})


def removed() -> OptionExchange:
    """The seed offer without Friday's meeting."""
    return SEED.model_copy(update={"presentations": SEED.presentations[:1]})


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """After OPENED, ``program`` replaces the seed at CHANGED (or nothing changes)."""

    program: OptionExchange | None
    method: str
    uid: str
    sequence: int
    cancelled: bool = False


CASES = {
    "first invitation, Thursday": Case(program=None, method="REQUEST", uid=THURSDAY, sequence=0),
    "first invitation, Friday": Case(program=None, method="REQUEST", uid=FRIDAY, sequence=0),
    "update of a moved meeting": Case(program=moved(), method="REQUEST", uid=FRIDAY, sequence=1),
    "cancellation": Case(
        program=removed(), method="CANCEL", uid=FRIDAY, sequence=1, cancelled=True
    ),
}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    svc = seeded(service(db_url, tmp_path, programs=[SEED]))
    yield svc, tmp_path
    svc.engine.dispose()


def run(svc: Service, now: datetime) -> None:
    asyncio.run(svc.plan(now))
    report = asyncio.run(svc.deliver(now))
    assert report.failed == 0 and report.retried == 0


def feed(svc: Service, now: datetime) -> dict[str, Any]:
    source = FeedSource(svc.factory, svc.programs, team=svc.team, timezone=svc.settings.timezone)
    return events_by_uid(source.render(FEED, now).body)


def invitations(maildir: Path) -> dict[tuple[str, str, int], tuple[EmailMessage, Any]]:
    """Return Pat's calendar messages by (METHOD, UID, SEQUENCE): the email and its VEVENT."""
    out: dict[tuple[str, str, int], tuple[EmailMessage, Any]] = {}
    box = mailbox.Maildir(maildir, create=False)
    for key in box.iterkeys():
        email = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(email, EmailMessage)
        if email["To"] != PAT:
            continue
        part = next((p for p in email.walk() if p.get_content_type() == "text/calendar"), None)
        if part is None:
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        # A Maildir file has the local line ending; on the wire (and in iCalendar) it is CRLF.
        data = payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        parse(data)  # lints it, and Home Assistant's ical must read it too
        calendar = icalendar.Calendar.from_ical(data)
        method = str(calendar["METHOD"])
        assert part.get_param("method") == method
        [event] = list[Any](calendar.events)
        found = (method, str(event["UID"]), int(event["SEQUENCE"]))
        assert found not in out, f"sent twice: {found}"
        out[found] = (email, event)
    return out


def timezones(data: Any) -> dict[str, str]:
    return {name: str(data[name].params.get("TZID")) for name in ("DTSTART", "DTEND")}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_the_invitation_is_the_feeds_event(world: tuple[Service, Path], case: Case) -> None:
    svc, tmp_path = world
    run(svc, OPENED)
    before = feed(svc, OPENED)
    now = OPENED
    if case.program is not None:
        svc = service(svc.settings.database_url, tmp_path, programs=[case.program])
        try:
            now = CHANGED
            run(svc, now)
            after = feed(svc, now)
        finally:
            svc.engine.dispose()
    else:
        after = before

    sent = invitations(tmp_path / "maildir")
    email, got = sent[(case.method, case.uid, case.sequence)]
    # the feed's copy: the meeting as published now, or for a cancellation as it was published
    # before its removal (the program feed no longer lists it)
    want = before[case.uid] if case.cancelled else after[case.uid]
    assert case.cancelled is (case.uid not in after)
    for name in FIELDS:
        assert got[name].to_ical() == want[name].to_ical(), name
    assert (
        timezones(got)
        == timezones(want)
        == {
            "DTSTART": "America/Los_Angeles",
            "DTEND": "America/Los_Angeles",
        }
    )
    assert int(got["SEQUENCE"]) == int(want["SEQUENCE"]) + case.cancelled
    # DTSTAMP is the change the message announces: the feed's LAST-MODIFIED, or the removal
    changed = CHANGED if case.cancelled else want["LAST-MODIFIED"].dt
    assert got["DTSTAMP"].dt == got["LAST-MODIFIED"].dt == changed
    assert str(got["STATUS"]) == ("CANCELLED" if case.cancelled else "CONFIRMED")
    assert str(want["STATUS"]) == "CONFIRMED"
    # the meeting's own place and dial-in, and its own times (never the election cutoff)
    assert "(877) 314-3187, pass code 394843#" in str(got["LOCATION"])
    presentation = _presentation(case)
    assert got["DTSTART"].dt.replace(tzinfo=None) == presentation.start
    assert got["DTEND"].dt.replace(tzinfo=None) == presentation.end
    subject = str(email["Subject"])
    assert ("Cancelled" in subject) is case.cancelled
    # the meeting's day as people read it (the templates write no ISO dates)
    start = presentation.start
    assert f"{start:%A} {start.day} {start:%B %Y}" in subject


def _presentation(case: Case) -> Presentation:
    key = case.uid.removeprefix(f"{OFFER}/presentation/").removesuffix("@tickler")
    program = SEED if case.program is None or case.cancelled else case.program
    return next(p for p in program.presentations if p.key == key)


# --- what an older version left behind ---------------------------------------------------------


def test_a_row_planned_before_invitations_carried_the_event_still_sends(
    world: tuple[Service, Path],
) -> None:
    """A pending invitation whose context has no event (planned by an older version and not
    replanned since) is sent from what its context holds: the feed's uid, SEQUENCE, instants
    (in UTC: the old context names no zone) and the place with the dial-in."""
    svc, tmp_path = world
    asyncio.run(svc.plan(OPENED))
    with begin_write(svc.factory) as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.job == "presentation_invitation")
        ).all()
        assert rows
        for row in rows:
            row.context = {
                k: v for k, v in row.context.items() if k not in ("event", "last_modified")
            }
    assert asyncio.run(svc.deliver(OPENED)).failed == 0
    published = feed(svc, OPENED)
    sent = invitations(tmp_path / "maildir")
    for uid in (THURSDAY, FRIDAY):
        _, got = sent[("REQUEST", uid, 0)]
        want = published[uid]
        for name in ("UID", "SEQUENCE", "LOCATION"):
            assert got[name].to_ical() == want[name].to_ical(), name
        for name in ("DTSTART", "DTEND"):
            assert got[name].dt == want[name].dt, name  # the same instant


def test_revisions_stored_without_their_event_get_it_at_the_next_plan(
    world: tuple[Service, Path],
) -> None:
    """Rows from before ``event_versions.event`` existed: the next plan keeps each program
    event's copy (SEQUENCE unchanged), so a meeting removed after that is cancelled as it was;
    one removed before still gets its cancellation, from the old context."""
    svc, tmp_path = world

    def kept() -> dict[str, tuple[int, bool]]:
        with svc.factory() as session:
            rows = session.scalars(select(EventVersion).where(EventVersion.program == OFFER))
            return {row.key: (row.sequence, row.event is not None) for row in rows}

    asyncio.run(svc.plan(OPENED))
    first = kept()
    assert first and all(has for _, has in first.values())
    with begin_write(svc.factory) as session:
        session.execute(update(EventVersion).values(event=null()))
    assert not any(has for _, has in kept().values())
    asyncio.run(svc.plan(OPENED + timedelta(minutes=1)))
    assert kept() == first  # the copies are back; no SEQUENCE moved

    with begin_write(svc.factory) as session:  # once more, then remove Friday's meeting
        session.execute(update(EventVersion).values(event=null()))
    other = service(svc.settings.database_url, tmp_path, programs=[removed()])
    try:
        run(other, CHANGED)
    finally:
        other.engine.dispose()
    _, got = invitations(tmp_path / "maildir")[("CANCEL", FRIDAY, 1)]
    assert str(got["STATUS"]) == "CANCELLED"
