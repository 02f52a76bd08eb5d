"""Feeds and invitations rendered to bytes, read back by two independent parsers and linted."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from ical.calendar import Calendar as IcalCalendar
from ical.calendar_stream import IcsCalendarStream

from calendars.events import Audience, Event, EventKind
from calendars.ical import (
    DEFAULT_PRODID,
    FeedItem,
    FeedMeta,
    build_vtimezone,
    default_description,
    render_feed,
    render_invitation,
)
from tests.ical_lint import lint_ics, split_content_line

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
META = FeedMeta(name="SOX 302 certifications")
ROOT = Path(__file__).resolve().parents[2]


def timed(key: str, start: datetime, *, minutes: int = 0, **fields: Any) -> Event:
    """Return a timed event of program ``sox`` in ``start``'s zone (zero length: a cutoff)."""
    assert isinstance(start.tzinfo, ZoneInfo)
    fields.setdefault("title", f"Event {key}")
    fields.setdefault("kind", EventKind.ELECTION_CUTOFF if not minutes else EventKind.PRESENTATION)
    return Event(
        program="sox",
        key=key,
        start=start,
        end=start + timedelta(minutes=minutes),
        timezone=start.tzinfo.key,
        audiences=frozenset({Audience.EMPLOYEES}),
        **fields,
    )


def all_day(key: str, day: date, *, days: int = 1, **fields: Any) -> Event:
    """Return an all-day deadline of program ``sd`` lasting ``days`` days (end exclusive)."""
    fields.setdefault("title", f"Deadline {key}")
    return Event(
        program="sd",
        key=key,
        kind=EventKind.FORM_SD_DUE,
        start=day,
        end=day + timedelta(days=days),
        timezone="America/New_York",
        audiences=frozenset({Audience.COMPLIANCE}),
        **fields,
    )


def item(event: Event, **fields: Any) -> FeedItem:
    fields.setdefault("last_modified", STAMP)
    return FeedItem(event=event, **fields)


def parse(data: bytes) -> tuple[icalendar.Calendar, IcalCalendar]:
    """Lint ``data`` and read it with icalendar and with Home Assistant's ical."""
    assert lint_ics(data) == []
    return icalendar.Calendar.from_ical(data), IcsCalendarStream.calendar_from_ics(data.decode())


def lines(data: bytes) -> list[str]:
    """Return the unfolded content lines of ``data``."""
    return data.replace(b"\r\n ", b"").decode().split("\r\n")


def utc(value: date | datetime) -> datetime:
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def by_uid(cal: icalendar.Calendar, uid: str) -> icalendar.Event:
    [found] = [event for event in cal.events if str(event["UID"]) == uid]
    return found


# --- time zones and instants -------------------------------------------------------------

INSTANTS = [
    # (key, local start, UTC instant it must parse back to)
    ("dst-week/fri-2003", datetime(2003, 4, 4, 9, tzinfo=LA), datetime(2003, 4, 4, 17, tzinfo=UTC)),
    ("dst-week/mon-2003", datetime(2003, 4, 7, 9, tzinfo=LA), datetime(2003, 4, 7, 16, tzinfo=UTC)),
    ("dst-week/fri-2026", datetime(2026, 3, 6, 9, tzinfo=LA), datetime(2026, 3, 6, 17, tzinfo=UTC)),
    ("dst-week/mon-2026", datetime(2026, 3, 9, 9, tzinfo=LA), datetime(2026, 3, 9, 16, tzinfo=UTC)),
    ("cutoff/january", datetime(2026, 1, 15, 21, tzinfo=LA), datetime(2026, 1, 16, 5, tzinfo=UTC)),
    ("cutoff/july", datetime(2026, 7, 15, 21, tzinfo=LA), datetime(2026, 7, 16, 4, tzinfo=UTC)),
    ("new-york/fri", datetime(2026, 3, 6, 9, tzinfo=NY), datetime(2026, 3, 6, 14, tzinfo=UTC)),
    ("new-york/mon", datetime(2026, 3, 9, 9, tzinfo=NY), datetime(2026, 3, 9, 13, tzinfo=UTC)),
]


@pytest.fixture(scope="module")
def instant_feed() -> bytes:
    """Render every INSTANTS case into one feed: two zones, 2003 and 2026 US DST rules."""
    events = [timed(key, local, minutes=60 if "dst" in key else 0) for key, local, _ in INSTANTS]
    return render_feed([item(event) for event in events], META)


@pytest.mark.parametrize(("key", "local", "instant"), INSTANTS, ids=[c[0] for c in INSTANTS])
def test_local_times_parse_back_to_their_utc_instants(
    instant_feed: bytes, key: str, local: datetime, instant: datetime
) -> None:
    cal, other = parse(instant_feed)
    uid = f"sox/{key}@tickler"
    assert f"DTSTART;TZID={local.tzinfo}:{local:%Y%m%dT%H%M%S}" in lines(instant_feed)
    assert utc(by_uid(cal, uid).start) == instant
    [parsed] = [event for event in other.events if event.uid == uid]
    assert isinstance(parsed.dtstart, datetime)
    assert parsed.dtstart.astimezone(UTC) == instant


def test_every_zone_used_gets_one_vtimezone_in_name_order(instant_feed: bytes) -> None:
    cal, other = parse(instant_feed)
    assert [tz.tz_name for tz in cal.timezones] == ["America/Los_Angeles", "America/New_York"]
    assert [tz.tz_id for tz in other.timezones] == ["America/Los_Angeles", "America/New_York"]
    assert cal.get_missing_tzids() == set()


def test_utc_events_use_z_and_need_no_vtimezone() -> None:
    event = timed("utc", datetime(2026, 5, 1, 12, tzinfo=ZoneInfo("UTC")))
    data = render_feed([item(event)], META)
    cal, _ = parse(data)
    assert "DTSTART:20260501T120000Z" in lines(data)
    assert cal.timezones == []


VTIMEZONE_CASES = [
    ("America/Los_Angeles", 2003, 2026),  # US rules changed in 2007
    ("America/New_York", 2026, 2026),
    ("Australia/Sydney", 2025, 2027),  # southern hemisphere
    ("Europe/Dublin", 2025, 2027),  # zoneinfo calls winter negative DST
    ("America/Sao_Paulo", 2017, 2021),  # DST abolished in 2019
    ("Asia/Kolkata", 2026, 2026),  # no DST
    ("Pacific/Chatham", 2026, 2026),  # +12:45 / +13:45
]


@pytest.mark.parametrize(
    ("tzid", "first", "last"), VTIMEZONE_CASES, ids=[c[0] for c in VTIMEZONE_CASES]
)
def test_vtimezone_agrees_with_the_iana_zone_every_day(tzid: str, first: int, last: int) -> None:
    # Both parsers resolve an IANA TZID by name, so read the VTIMEZONE itself: clients such as
    # Outlook use it. (ical's own VTIMEZONE reader drops an observance's DTSTART when it has no
    # RRULE, so icalendar's independent expansion is the reference here.)
    wrapper = icalendar.Calendar()
    wrapper.add_component(build_vtimezone(tzid, first, last))
    [vtimezone] = icalendar.Calendar.from_ical(wrapper.to_ical()).timezones
    ours, iana = vtimezone.to_tz(lookup_tzid=False), ZoneInfo(tzid)
    day = datetime(first, 1, 1, 12)
    wrong = []
    while day.year <= last:
        if day.replace(tzinfo=ours).utcoffset() != day.replace(tzinfo=iana).utcoffset():
            wrong.append(day)
        day += timedelta(days=1)
    assert wrong == []


def test_vtimezone_uses_rrules_for_current_rules_and_rdates_for_ended_ones() -> None:
    data = build_vtimezone("America/Los_Angeles", 2003, 2026).to_ical().decode()
    assert "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3" in data
    assert "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11" in data
    assert "RDATE:20030406T020000,20040404T020000,20050403T020000,20060402T020000" in data
    assert "UNTIL" not in data


# --- all-day deadlines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "dtstart", "dtend"),
    [
        (all_day("one-day", date(2026, 5, 29)), date(2026, 5, 29), date(2026, 5, 30)),
        (all_day("year-end", date(2026, 12, 31)), date(2026, 12, 31), date(2027, 1, 1)),
        (all_day("leap", date(2028, 2, 28), days=2), date(2028, 2, 28), date(2028, 3, 1)),
        (all_day("zero", date(2026, 5, 29), days=0), date(2026, 5, 29), date(2026, 5, 30)),
    ],
    ids=["one-day", "year-end", "two-days-over-29-feb", "zero-length"],
)
def test_all_day_deadlines_have_an_exclusive_dtend(
    event: Event, dtstart: date, dtend: date
) -> None:
    data = render_feed([item(event)], META)
    cal, other = parse(data)
    assert f"DTSTART;VALUE=DATE:{dtstart:%Y%m%d}" in lines(data)
    assert f"DTEND;VALUE=DATE:{dtend:%Y%m%d}" in lines(data)
    [parsed] = cal.events
    assert (parsed.start, parsed.end) == (dtstart, dtend)
    assert (other.events[0].dtstart, other.events[0].dtend) == (dtstart, dtend)
    assert str(parsed["TRANSP"]) == "TRANSPARENT"
    assert cal.timezones == []


# --- event properties ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "transp", "has_dtend"),
    [
        (all_day("deadline", date(2026, 5, 29)), "TRANSPARENT", True),
        (timed("cutoff", datetime(2026, 1, 15, 21, tzinfo=LA)), "TRANSPARENT", False),
        (timed("meeting", datetime(2026, 1, 15, 9, tzinfo=LA), minutes=45), "OPAQUE", True),
    ],
    ids=["all-day", "cutoff-instant", "meeting"],
)
def test_event_properties(event: Event, transp: str, has_dtend: bool) -> None:
    data = render_feed([item(event, sequence=3)], META)
    cal, other = parse(data)
    [parsed] = cal.events
    assert str(parsed["UID"]) == event.uid
    assert str(parsed["SUMMARY"]) == event.title
    assert str(parsed["DESCRIPTION"]) == default_description(event)
    assert parsed.DTSTAMP == parsed.LAST_MODIFIED == STAMP
    assert parsed["SEQUENCE"] == 3
    assert [str(c) for c in parsed.categories] == [event.program, str(event.kind)]
    assert (str(parsed["STATUS"]), str(parsed["TRANSP"])) == ("CONFIRMED", transp)
    assert ("DTEND" in parsed) is has_dtend
    assert "LOCATION" not in parsed
    assert other.events[0].categories == [event.program, str(event.kind)]


def test_given_description_and_location_are_written_escaped() -> None:
    event = timed(
        "talk",
        datetime(2026, 2, 3, 10, tzinfo=NY),
        minutes=30,
        description="Bring: the signed form; a pen, and ID.\nRoom changes are emailed.",
        location="HQ, floor 2; room 201",
    )
    data = render_feed([item(event)], META)
    cal, other = parse(data)
    assert "LOCATION:HQ\\, floor 2\\; room 201" in lines(data)
    assert str(cal.events[0]["DESCRIPTION"]) == event.description
    assert (other.events[0].description, other.events[0].location) == (
        event.description,
        event.location,
    )


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            all_day("one", date(2026, 5, 29), title="File Form SD"),
            "File Form SD\nDue by the end of Friday 2026-05-29.\nProgram: sd",
        ),
        (
            all_day("window", date(2026, 5, 26), days=4, title="Send CMRT requests"),
            "Send CMRT requests\nFrom Tuesday 2026-05-26 through Friday 2026-05-29.\nProgram: sd",
        ),
        (
            timed("cutoff", datetime(2026, 1, 15, 21, tzinfo=LA), title="Elect by the cutoff"),
            "Elect by the cutoff\nBy 21:00 PST on Thursday 2026-01-15 (America/Los_Angeles)."
            "\nProgram: sox",
        ),
        (
            timed("talk", datetime(2026, 7, 1, 9, tzinfo=NY), minutes=90, title="Presentation"),
            "Presentation\nWednesday 2026-07-01, 09:00 to 10:30 EDT (America/New_York)."
            "\nProgram: sox",
        ),
    ],
    ids=["all-day", "multi-day", "cutoff", "meeting"],
)
def test_default_description_says_what_and_by_when(event: Event, expected: str) -> None:
    assert default_description(event) == expected


def test_feed_is_sorted_by_event_sort_key() -> None:
    events = [
        timed("late", datetime(2026, 5, 29, 17, tzinfo=NY), minutes=30),
        all_day("same-day", date(2026, 5, 29)),
        timed("early", datetime(2026, 5, 29, 9, tzinfo=NY), minutes=30),
        all_day("before", date(2026, 1, 2)),
    ]
    cal, _ = parse(render_feed([item(event) for event in events], META))
    expected = [event.uid for event in sorted(events, key=Event.sort_key)]
    assert [str(event["UID"]) for event in cal.events] == expected


# --- calendar properties ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "present", "absent"),
    [
        (
            META,
            [
                f"PRODID:{DEFAULT_PRODID}",
                "VERSION:2.0",
                "CALSCALE:GREGORIAN",
                "METHOD:PUBLISH",
                "NAME:SOX 302 certifications",
                "X-WR-CALNAME:SOX 302 certifications",
                "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
                "X-PUBLISHED-TTL:PT1H",
            ],
            ["DESCRIPTION", "X-WR-CALDESC", "COLOR", "X-APPLE-CALENDAR-COLOR", "X-WR-TIMEZONE"],
        ),
        (
            FeedMeta(
                name="Conflict minerals",
                description="Form SD and CMRT deadlines",
                color="#aa0000",
                refresh=timedelta(minutes=30),
                timezone="America/New_York",
                prodid="-//Example//Test//EN",
            ),
            [
                "PRODID:-//Example//Test//EN",
                "DESCRIPTION:Form SD and CMRT deadlines",
                "X-WR-CALDESC:Form SD and CMRT deadlines",
                "COLOR:#aa0000",
                "X-APPLE-CALENDAR-COLOR:#aa0000",
                "REFRESH-INTERVAL;VALUE=DURATION:PT30M",
                "X-PUBLISHED-TTL:PT30M",
                "X-WR-TIMEZONE:America/New_York",
            ],
            [],
        ),
        (FeedMeta(name="n", color="darkred"), ["COLOR:darkred"], []),
    ],
    ids=["minimal", "everything", "css-color-name"],
)
def test_calendar_properties(meta: FeedMeta, present: list[str], absent: list[str]) -> None:
    data = render_feed([item(all_day("d", date(2026, 5, 29)))], meta)
    _, other = parse(data)
    header = lines(data)[: lines(data).index("BEGIN:VEVENT")]
    assert [line for line in present if line not in header] == []
    assert [line for line in header if split_content_line(line)[0] in absent] == []
    assert other.name == [meta.name]
    assert other.refresh_interval == meta.refresh


HEADER_NAMES = {
    "PRODID", "VERSION", "CALSCALE", "METHOD", "NAME", "X-WR-CALNAME", "DESCRIPTION",
    "X-WR-CALDESC", "REFRESH-INTERVAL", "X-PUBLISHED-TTL",
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "description", "shown_name", "shown_description"),
    [
        ("Offer\nBEGIN:VEVENT", "a\r\nEND:VCALENDAR", "Offer BEGIN:VEVENT", "a\nEND:VCALENDAR"),
        ("A\r\nX-EVIL:1", "two\rlines", "A X-EVIL:1", "two\nlines"),
        ("semi;colon,comma\\slash", "", "semi;colon,comma\\slash", ""),
        ("\x1b[31mred\x1b[0m \x85NEL\x00", "bell\x07 c1\x9b", "[31mred[0m NEL", "bell c1"),
    ],
    ids=["lf", "crlf-cr", "text-specials", "controls"],
)
def test_calendar_level_text_is_escaped(
    name: str, description: str, shown_name: str, shown_description: str
) -> None:
    # A program's or a person's name is data: it names the calendar, and must not break it.
    data = render_feed(
        [item(all_day("d", date(2026, 5, 29)))], FeedMeta(name=name, description=description)
    )
    cal, other = parse(data)
    header = lines(data)[: lines(data).index("BEGIN:VEVENT")]
    assert {split_content_line(line)[0] for line in header[1:]} <= HEADER_NAMES
    assert other.name == [shown_name]  # icalendar reads NAME and X-WR-* unescaped
    values = {split_content_line(line)[0]: split_content_line(line)[2] for line in header}
    assert values["NAME"] == values["X-WR-CALNAME"]
    if description:
        assert str(cal["DESCRIPTION"]) == shown_description
        assert values["DESCRIPTION"] == values["X-WR-CALDESC"]
    assert len(cal.events) == 1


def test_calendar_level_text_is_escaped_under_python_o() -> None:
    # Under -O icalendar's assert is gone: without escaping the raw line would be written.
    script = (
        "import sys; from calendars.ical import FeedMeta, render_feed; "
        "sys.stdout.buffer.write(render_feed([], FeedMeta(name='x\\nBEGIN:VEVENT')))"
    )
    out = subprocess.run(
        [sys.executable, "-O", "-c", script], cwd=ROOT, capture_output=True, check=True
    ).stdout
    assert b"\nBEGIN:VEVENT" not in out
    assert lint_ics(out) == []


def test_empty_feed_is_still_a_valid_calendar() -> None:
    cal, other = parse(render_feed([], META))
    assert (cal.events, other.events) == ([], [])


# --- stable output and updates ---------------------------------------------------------------


def sample_feed() -> bytes:
    """Render a feed that uses two zones, for the byte-stability tests."""
    events = [timed(key, local, minutes=30) for key, local, _ in INSTANTS]
    return render_feed([item(event) for event in events[::-1]], META)


def test_same_inputs_render_identical_bytes_in_any_input_order() -> None:
    events = [timed(key, local, minutes=30) for key, local, _ in INSTANTS]
    assert sample_feed() == sample_feed() == render_feed([item(e) for e in events], META)


def test_bytes_do_not_depend_on_the_hash_seed() -> None:
    # Set iteration order changes with PYTHONHASHSEED; icalendar keeps used TZIDs in a set.
    script = "import sys; from tests.unit.test_ical import sample_feed as f; "
    script += "sys.stdout.buffer.write(f())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {sample_feed()}


def test_update_keeps_the_uid_and_bumps_sequence_and_times() -> None:
    before = item(all_day("form-sd/2026", date(2026, 5, 29)))
    moved = item(
        all_day("form-sd/2026", date(2026, 6, 1)),
        sequence=1,
        last_modified=STAMP + timedelta(days=3),
    )
    old, _ = parse(render_feed([before], META))
    new, other = parse(render_feed([moved], META))
    assert str(old.events[0]["UID"]) == str(new.events[0]["UID"]) == other.events[0].uid
    assert (new.events[0]["SEQUENCE"], other.events[0].sequence) == (1, 1)
    assert new.events[0].start == date(2026, 6, 1)
    assert new.events[0].LAST_MODIFIED == new.events[0].DTSTAMP == moved.last_modified


def test_cancelled_item_has_status_cancelled() -> None:
    data = render_feed([item(all_day("gone", date(2026, 5, 29)), sequence=2, cancelled=True)], META)
    cal, other = parse(data)
    assert str(cal.events[0]["STATUS"]) == "CANCELLED"
    assert other.events[0].status == "CANCELLED"
    assert "METHOD:PUBLISH" in lines(data)


def test_long_non_ascii_description_folds_between_characters() -> None:
    text = "Bestätigung der Schulung über Korruptionsbekämpfung — 締め切りは金曜日です. " * 8
    data = render_feed([item(all_day("fcpa", date(2026, 5, 29), description=text))], META)
    physical = data.split(b"\r\n")
    assert max(len(line) for line in physical) <= 75
    assert sum(line.startswith(b" ") for line in physical) > 5
    cal, other = parse(data)  # parse() lints: each physical line must decode alone
    assert str(cal.events[0]["DESCRIPTION"]) == text
    assert other.events[0].description == text


# --- invitations -----------------------------------------------------------------------------

MEETING = timed(
    "presentation/2026-03-09",
    datetime(2026, 3, 9, 9, tzinfo=LA),
    minutes=60,
    title="Stock option presentation",
    location="Boardroom, HQ",
)
ORGANIZER = "Tickler <tickler@example.com>"
ATTENDEES = ["Jane Roe <jane@example.com>", "bob@example.com", "JANE@example.com"]


def test_invitation_request() -> None:
    data = render_invitation(
        item(MEETING, sequence=1), method="REQUEST", organizer=ORGANIZER, attendees=ATTENDEES
    )
    cal, other = parse(data)
    content = lines(data)
    assert "METHOD:REQUEST" in content
    assert "ORGANIZER;CN=Tickler:mailto:tickler@example.com" in content
    [event] = cal.events
    assert str(event["UID"]) == MEETING.uid
    assert event["SEQUENCE"] == 1
    assert event.DTSTAMP == STAMP
    assert utc(event.start) == datetime(2026, 3, 9, 16, tzinfo=UTC)
    assert str(event["LOCATION"]) == "Boardroom, HQ"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert [tz.tz_name for tz in cal.timezones] == ["America/Los_Angeles"]
    attendees = [split_content_line(line) for line in content if line.startswith("ATTENDEE")]
    assert [value for _, _, value in attendees] == [
        "mailto:jane@example.com",
        "mailto:bob@example.com",
    ]
    for _, params, _ in attendees:
        assert params["RSVP"] == "TRUE"
        assert params["ROLE"] == "REQ-PARTICIPANT"
        assert params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendees[0][1]["CN"] == "Jane Roe"
    [parsed] = other.events
    assert parsed.organizer is not None and parsed.organizer.uri == "mailto:tickler@example.com"
    assert [a.rsvp for a in parsed.attendees] == [True, True]


def test_invitation_cancel_keeps_the_uid() -> None:
    request = render_invitation(
        item(MEETING, sequence=1), method="REQUEST", organizer=ORGANIZER, attendees=ATTENDEES
    )
    cancel = render_invitation(
        item(MEETING, sequence=2, cancelled=True),
        method="CANCEL",
        organizer=ORGANIZER,
        attendees=ATTENDEES,
    )
    first, _ = parse(request)
    cal, other = parse(cancel)
    assert "METHOD:CANCEL" in lines(cancel)
    assert str(cal.events[0]["UID"]) == str(first.events[0]["UID"]) == MEETING.uid
    assert (str(cal.events[0]["STATUS"]), cal.events[0]["SEQUENCE"]) == ("CANCELLED", 2)
    assert other.events[0].status == "CANCELLED"
    assert not [line for line in lines(cancel) if "RSVP" in line]


def test_invitation_is_byte_stable() -> None:
    def render() -> bytes:
        return render_invitation(
            item(MEETING), method="REQUEST", organizer=ORGANIZER, attendees=ATTENDEES
        )

    assert render() == render()


# --- rejected inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FeedItem(event=MEETING, last_modified=datetime(2026, 1, 1)), "naive"),
        (lambda: item(MEETING, sequence=-1), "negative sequence"),
        (lambda: FeedMeta(name=" "), "name"),
        (lambda: FeedMeta(name="n", color="red\r\nX-EVIL:1"), "colour"),
        (lambda: FeedMeta(name="n", refresh=timedelta(0)), "positive"),
        (lambda: render_feed([item(MEETING), item(MEETING)], META), "duplicate uids"),
        (
            lambda: render_invitation(
                item(MEETING, cancelled=True),
                method="REQUEST",
                organizer=ORGANIZER,
                attendees=ATTENDEES,
            ),
            "CANCEL",
        ),
        (
            lambda: render_invitation(
                item(MEETING), method="REQUEST", organizer=ORGANIZER, attendees=[]
            ),
            "attendee",
        ),
        (
            lambda: render_invitation(
                item(MEETING), method="REQUEST", organizer="tickler", attendees=ATTENDEES
            ),
            "email address",
        ),
        (
            lambda: render_invitation(
                item(MEETING),
                method="REQUEST",
                organizer=ORGANIZER,
                attendees=["a@example.com\r\nX-EVIL:1"],
            ),
            "email address",
        ),
        (
            lambda: render_invitation(
                item(MEETING),
                method="REQUEST",
                organizer=ORGANIZER,
                attendees=["Jane <jane@example.com>, Bob <bob@example.com>"],
            ),
            "email address",
        ),
    ],
    ids=[
        "naive-last-modified",
        "negative-sequence",
        "blank-name",
        "color-injection",
        "zero-refresh",
        "duplicate-uid",
        "request-for-cancelled",
        "no-attendees",
        "bad-organizer",
        "attendee-injection",
        "two-addresses-in-one",
    ],
)
def test_rejected_inputs(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_unknown_feed_timezone_is_rejected() -> None:
    with pytest.raises(Exception, match="No time zone found"):
        FeedMeta(name="n", timezone="Mars/Olympus_Mons")


# --- the lint itself -------------------------------------------------------------------------

GOOD = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
    b"REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n"
    b"BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T000000Z\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.mark.parametrize(
    ("data", "finding"),
    [
        (GOOD.replace(b"\r\n", b"\n"), "bare CR or LF"),
        (GOOD.replace(b"UID:u", b"UID:" + b"u" * 80), "octets"),
        (
            GOOD.replace(b"UID:u", b"UID:" + "é".encode() * 30 + b"\r\n " + "é".encode()[1:]),
            "UTF-8",
        ),
        (GOOD.replace(b"UID:u\r\n", b""), "0 UID"),
        (GOOD.replace(b"DTSTAMP:20260101T000000Z\r\n", b""), "0 DTSTAMP"),
        (GOOD.replace(b"DTSTART:", b"DTSTART;TZID=Europe/Paris:"), "has no VTIMEZONE"),
        (GOOD.replace(b"VERSION:2.0\r\n", b""), "0 VERSION"),
        (GOOD.replace(b"PRODID:-//t//t//EN\r\n", b""), "0 PRODID"),
        (GOOD.replace(b";VALUE=DURATION", b""), "REFRESH-INTERVAL without VALUE=DURATION"),
        (GOOD.replace(b"PT1H", b"1:00:00"), "not a duration"),
        (GOOD.replace(b"END:VEVENT\r\n", b""), "does not close"),
    ],
    ids=[
        "bare-lf",
        "long-line",
        "split-utf8",
        "no-uid",
        "no-dtstamp",
        "undeclared-tzid",
        "no-version",
        "no-prodid",
        "refresh-without-value",
        "refresh-not-duration",
        "unbalanced",
    ],
)
def test_lint_finds(data: bytes, finding: str) -> None:
    assert lint_ics(GOOD) == []
    assert any(finding in message for message in lint_ics(data)), lint_ics(data)
