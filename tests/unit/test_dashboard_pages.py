"""The dashboard's operator pages assembled without HTTP: the calendar's days, the deliveries'
rows and pages, the record-by-hand form, the export's file name and stream."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime, timedelta
from typing import IO

import pytest

from calendars.events import Audience, Event, EventKind, day_event
from calendars.kinds import expand_program
from config.facts import FactKind
from jobs.storage.messages import Message
from scheduler.web.dashboard import deliveries, exports, recording, upcoming
from tests.world import OFFER, PROGRAMS

BY_ID = {p.id: p for p in PROGRAMS}
LA = "America/Los_Angeles"
EVERYONE = frozenset({Audience.COMPLIANCE})


def timed(key: str, start: datetime) -> Event:
    return Event(
        program=OFFER,
        key=key,
        kind=EventKind.PRESENTATION,
        title=key,
        start=start,
        end=start + timedelta(hours=1),
        timezone=LA,
        audiences=EVERYONE,
    )


def all_day(key: str, day: date) -> Event:
    return day_event(
        program=OFFER,
        key=key,
        kind=EventKind.MILESTONE,
        title=key,
        day=day,
        timezone=LA,
        audiences=EVERYONE,
    )


def test_the_calendar_shows_the_offer_by_pacific_day_with_the_zone_named() -> None:
    offer = BY_ID[OFFER]
    now = datetime(2003, 1, 10, 18, tzinfo=UTC)
    shown = upcoming.agenda(offer, expand_program(offer, now=now), now)
    assert shown.zone == "America/Los_Angeles (PST)"
    days = {d.label: [(i.time, i.title) for i in d.items] for d in shown.days}
    # 2003-01-21T05:00Z is the evening of the 20th in Pacific time.
    assert days["Monday 20 January 2003"] == [
        ("6:00 PM PST", "Election cutoff reminder (3h before)"),
        ("9:00 PM PST", "Election cutoff (elections and withdrawals close)"),
    ]
    assert "Thursday 19 December 2002" not in days  # before today: not shown


@pytest.mark.parametrize(
    ("event", "shown_on", "time"),
    [
        # Today's all-day deadline and an event of today already past are both shown.
        (all_day("today", date(2027, 1, 10)), "Sunday 10 January 2027", "all day"),
        (
            timed("this-morning", datetime(2027, 1, 10, 16, tzinfo=UTC)),
            "Sunday 10 January 2027",
            "8:00 AM PST",
        ),
        # Day 89 is in, day 90 is out (local days: the DST change on 14 March adds none).
        (all_day("day-89", date(2027, 4, 9)), "Friday 9 April 2027", "all day"),
        (all_day("day-90", date(2027, 4, 10)), None, ""),
        (
            timed("before-dst", datetime(2027, 3, 13, 17, tzinfo=UTC)),
            "Saturday 13 March 2027",
            "9:00 AM PST",
        ),
        (
            timed("after-dst", datetime(2027, 3, 14, 17, tzinfo=UTC)),
            "Sunday 14 March 2027",
            "10:00 AM PDT",
        ),
        # Yesterday, and the UTC day that is still yesterday in Los Angeles.
        (all_day("yesterday", date(2027, 1, 9)), None, ""),
        (timed("utc-today", datetime(2027, 1, 10, 5, tzinfo=UTC)), None, ""),
    ],
)
def test_the_calendar_window_is_90_local_days_from_today(
    event: Event, shown_on: str | None, time: str
) -> None:
    now = datetime(2027, 1, 10, 20, tzinfo=UTC)  # noon in Los Angeles
    shown = upcoming.agenda(BY_ID[OFFER], [event], now)
    if shown_on is None:
        assert shown.days == []
    else:
        [day] = shown.days
        assert (day.label, [i.time for i in day.items]) == (shown_on, [time])


def test_a_day_lists_all_day_events_first_then_by_time() -> None:
    now = datetime(2027, 1, 10, 20, tzinfo=UTC)
    events = [
        timed("late", datetime(2027, 1, 12, 23, tzinfo=UTC)),
        timed("early", datetime(2027, 1, 12, 17, tzinfo=UTC)),
        all_day("deadline", date(2027, 1, 12)),
    ]
    [day] = upcoming.agenda(BY_ID[OFFER], events, now).days
    assert [i.title for i in day.items] == ["deadline", "early", "late"]


NOW = datetime(2017, 1, 24, 12, tzinfo=UTC)


def message(**changes: object) -> Message:
    values: dict[str, object] = {
        "id": 7,
        "identity": "conflict-minerals-2016/2016/supplier:S002/cmrt_request-1",
        "message_id": "abc@tickler",
        "program": "conflict-minerals-2016",
        "occurrence": "2016",
        "person": "supplier:S002",
        "recipient": "s002@example.com",
        "job": "cmrt_request",
        "step": "cmrt_request-1",
        "state": "failed",
        "due_at": datetime(2017, 1, 23, 16, tzinfo=UTC),
        "expires_at": datetime(2017, 3, 1, tzinfo=UTC),
        "attempts": 1,
        "last_code": 550,
        "last_error": "5.1.1 no such user",
        "sent_at": None,
        "resend_of": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Message(**(values | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "retry", "cancel", "reply"),
    [
        ({}, True, False, "550 5.1.1 no such user"),
        ({"expires_at": NOW}, False, False, "550 5.1.1 no such user"),  # a retry would be skipped
        (
            {"state": "pending", "last_code": 451, "last_error": "try later"},
            False,
            True,
            "451 try later",
        ),
        ({"last_code": None, "last_error": None}, True, False, "-"),
        (
            {"state": "pending", "last_error": "retry by user:alice"},
            False,
            True,
            "retry by user:alice",
        ),
    ],
)
def test_a_delivery_row_says_what_went_wrong_and_what_may_be_done(
    changes: dict[str, object], retry: bool, cancel: bool, reply: str
) -> None:
    row = deliveries.row(message(**changes), BY_ID, NOW)
    assert (row.can_retry, row.can_cancel, row.reply) == (retry, cancel, reply)
    assert row.due == "2017-01-23 08:00 PST"  # the program's zone, named


def test_a_message_page_offers_the_address_only_for_the_persons_own_message() -> None:
    own = deliveries.detail(
        message(),
        programs=BY_ID,
        sent=None,
        actions=[],
        resent_as=[],
        current="s002@example.com",
        now=NOW,
    )
    assert own.own_address and not own.can_resend
    escalation = message(
        identity="conflict-minerals-2016/2016/owner:buyer@example.com/cmrt_escalation",
        step="cmrt_escalation",
        job="cmrt_escalation",
        state="sent",
    )
    other = deliveries.detail(
        escalation,
        programs=BY_ID,
        sent=(250, "ok"),
        actions=[],
        resent_as=[3],
        current="s002@example.com",
        now=NOW,
    )
    assert not other.own_address and other.can_resend and other.sent_reply == "250 ok"


def test_the_deliveries_cursor_round_trips_and_refuses_anything_else() -> None:
    m = message(due_at=datetime(2017, 1, 23, 16, 0, 0, 123456, tzinfo=UTC), id=42)
    assert deliveries.parse_cursor(deliveries.cursor(m)) == (m.due_at, 42)
    old = message(due_at=datetime(1969, 12, 31, tzinfo=UTC), id=1)
    assert deliveries.parse_cursor(deliveries.cursor(old)) == (old.due_at, 1)
    for bad in ("", "42", "x-1", "1-x", "1-2-3", "9" * 50 + "-1"):
        with pytest.raises(ValueError, match="is not a page of this list"):
            deliveries.parse_cursor(bad)


FORM = {
    "program": "conflict-minerals-2016",
    "person": "supplier:S002",
    "what": "response",
    "complete": "incomplete",
    "issues": "Smelter list: row 5 has no country",
    "reason": "CMRT arrived by post",
}


def test_the_record_form_becomes_the_fact_record_takes() -> None:
    entry = recording.parse(FORM, BY_ID)
    assert isinstance(entry, recording.Entry)
    assert (entry.kind, entry.program, entry.person) == (
        FactKind.CMRT_RESPONSE,
        "conflict-minerals-2016",
        "supplier:S002",
    )
    assert entry.payload == {
        "reason": "CMRT arrived by post",
        "complete": False,
        "issues": "Smelter list: row 5 has no country",
    }
    election = recording.parse(FORM | {"program": OFFER, "what": "election"}, BY_ID)
    assert isinstance(election, recording.Entry)
    assert election.payload == {"reason": "CMRT arrived by post"}  # nothing of a CMRT
    bare = recording.parse(FORM | {"complete": "", "issues": ""}, BY_ID)
    assert isinstance(bare, recording.Entry) and bare.payload["complete"] is True


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"program": "nope"}, "Program: choose one of the programs"),
        ({"what": "termination"}, "What: choose what came back"),
        ({"person": ""}, "Person: KIND:ID"),
        ({"person": "supplier:S002\r\nBcc: x"}, "Person: KIND:ID"),
        ({"reason": "  "}, "Reason: say why"),
        ({"reason": "a\nb"}, "Reason: one line"),
        ({"reason": "x" * 501}, "Reason: one line of at most 500"),
        ({"issues": "\x00"}, "What is missing"),
        ({"complete": "maybe"}, "Complete: complete or incomplete"),
    ],
)
def test_the_record_form_names_each_bad_field(changes: dict[str, str], problem: str) -> None:
    found = recording.parse(FORM | changes, BY_ID)
    assert isinstance(found, list) and len(found) == 1 and found[0].startswith(problem), found


def test_an_export_is_named_for_its_program_and_day() -> None:
    now = datetime(2027, 1, 1, 7, tzinfo=UTC)
    assert exports.filename("fcpa", "evidence.xlsx", now) == "fcpa-evidence-20270101.xlsx"
    assert exports.filename('a"b/../c', "statistics.csv", now) == "a_b____c-statistics-20270101.csv"


async def collect(produce: object) -> bytes:
    return b"".join([chunk async for chunk in exports.stream(produce)])  # type: ignore[arg-type]


def test_the_export_stream_passes_on_what_is_written_in_chunks() -> None:
    def produce(out: IO[bytes]) -> None:
        for _ in range(100):
            out.write(b"x" * 10_000)

    assert asyncio.run(collect(produce)) == b"x" * 1_000_000


def test_the_export_stream_raises_what_the_export_raised() -> None:
    def produce(out: IO[bytes]) -> None:
        out.write(b"partial")
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        asyncio.run(collect(produce))


def test_a_reader_that_goes_away_stops_the_export() -> None:
    written: list[int] = []

    def produce(out: IO[bytes]) -> None:
        for n in range(10_000):
            out.write(b"y" * exports.CHUNK)
            written.append(n)

    async def first_chunk() -> None:
        chunks = exports.stream(produce)
        assert len(await chunks.__anext__()) == exports.CHUNK
        await chunks.aclose()  # the client disconnected

    asyncio.run(first_chunk())
    # At most the pipe's depth (and the chunk in hand) was written beyond what was read.
    assert len(written) <= exports.DEPTH + 3


def test_the_pipe_is_a_stream_a_zip_can_write_without_seeking() -> None:
    pipe = exports.Pipe()
    assert pipe.writable() and not pipe.seekable()
    with pytest.raises(io.UnsupportedOperation):
        pipe.tell()
