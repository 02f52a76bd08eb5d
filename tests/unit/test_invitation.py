"""Invitations carry the calendar's own event: its JSON form round-trips, the planner puts it in.

The comparison of an emailed invitation with the feed's event, field by field, is in
``tests/integration/test_invitation.py``; these are the pure halves of it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from calendars import offer_notices
from calendars.events import Audience, Event, EventKind, event_from_dict, event_to_dict
from calendars.notices import Notice, PersonView, Snapshot, Team
from calendars.plan import plan
from calendars.versions import Revision, fingerprint, revise
from config.loader import load_programs
from config.programs import OptionExchange
from tests.unit.test_notices import grants

PROGRAMS = load_programs(None)
OFFER = next(p for p in PROGRAMS if isinstance(p, OptionExchange))
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2002, 12, 19, 18, 0, tzinfo=UTC)
TEAM = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")
PAT = PersonView(
    id=1,
    kind="employee",
    external_id="E1001",
    name="Pat Quinn",
    email="pat@example.com",
    country="US",
    hire_date=date(1999, 4, 12),
    role="employee",
)


def meeting(start: date | datetime, end: date | datetime, **changes: Any) -> Event:
    fields: dict[str, Any] = dict(
        program="p",
        key="presentation/x",
        kind=EventKind.PRESENTATION,
        title="Offer presentation",
        start=start,
        end=end,
        timezone="America/Los_Angeles",
        audiences=frozenset({Audience.EMPLOYEES, Audience.COMPLIANCE}),
        description="Presentation of the offer.",
        location="E-Net conference room, Irvine; dial-in (877) 314-3187",
        details={"location": "E-Net", "dial_in": "(877) 314-3187"},
    )
    return Event(**(fields | changes))


EDGE_CASES = {
    # 1 November 2026, 01:30 happens twice in Los Angeles: the second time (PST, fold=1)
    "repeated hour, second time": meeting(
        datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=LA), datetime(2026, 11, 1, 3, tzinfo=LA)
    ),
    "repeated hour, first time": meeting(
        datetime(2026, 11, 1, 1, 30, tzinfo=LA), datetime(2026, 11, 1, 3, tzinfo=LA)
    ),
    "across the spring gap": meeting(
        datetime(2026, 3, 8, 1, 30, tzinfo=LA), datetime(2026, 3, 8, 3, 30, tzinfo=LA)
    ),
    "UTC instant": meeting(
        datetime(2003, 1, 21, 5, tzinfo=UTC), datetime(2003, 1, 21, 5, tzinfo=UTC), timezone="UTC"
    ),
    "fixed offset": meeting(
        datetime(2003, 1, 21, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2003, 1, 21, 6, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ),
    "leap day, all day, a person's": meeting(
        date(2024, 2, 29),
        date(2024, 3, 2),
        kind=EventKind.VESTING,
        person="employee:E1001",
        location="",
        details={"tranche": 1, "shares": "863/2", "vested": None, "flags": [True, False]},
    ),
    "text a template or a header would choke on": meeting(
        datetime(2026, 1, 5, 9, tzinfo=LA),
        datetime(2026, 1, 5, 10, tzinfo=LA),
        title='Zhōngshān "Q&A"; line\r\nBcc: x@example.com',
        description="",
        location="",
        details={},
    ),
}
SEED_EVENTS = {e.uid: e for e in plan(PROGRAMS, now=NOW)}


def _same(a: date | datetime, b: date | datetime) -> bool:
    """Equal, and the same wall time, offset, zone and fold (``==`` compares instants only)."""
    if not isinstance(a, datetime) or not isinstance(b, datetime):
        return type(a) is type(b) and a == b
    return (a, a.isoformat(), a.tzinfo, a.fold) == (b, b.isoformat(), b.tzinfo, b.fold)


@pytest.mark.parametrize("event", [*EDGE_CASES.values(), *SEED_EVENTS.values()], ids=str)
def test_an_event_round_trips_through_json_exactly(event: Event) -> None:
    data = json.loads(json.dumps(event_to_dict(event)))
    back = event_from_dict(data)
    assert back == event
    assert _same(back.start, event.start) and _same(back.end, event.end)
    assert event_to_dict(back) == data  # and again: a stable context, no needless outbox update


def test_an_instant_keeps_its_zone_in_brackets() -> None:
    data = event_to_dict(EDGE_CASES["repeated hour, second time"])
    assert data["start"] == "2026-11-01T01:30:00-08:00[America/Los_Angeles]"
    assert data["end"] == "2026-11-01T03:00:00-08:00[America/Los_Angeles]"
    assert event_to_dict(EDGE_CASES["UTC instant"])["start"] == "2003-01-21T05:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"start": "2002-12-19T15:30:00"}, ValueError),  # naive
        ({"start": "2002-12-19T15:30:00-08:00[Mars/Olympus]"}, KeyError),  # unknown zone
        ({"kind": "party"}, ValueError),
        ({"audiences": ["everyone"]}, ValueError),
        ({"end": "2002-12-19T14:30:00-08:00[America/Los_Angeles]"}, ValueError),  # before start
        ({"end": "2002-12-20"}, ValueError),  # a date and a datetime
    ],
)
def test_a_malformed_event_is_refused(change: dict[str, Any], error: type[Exception]) -> None:
    data = event_to_dict(EDGE_CASES["repeated hour, first time"]) | change
    with pytest.raises(error):
        event_from_dict(data)


def test_a_missing_field_is_refused() -> None:
    data = event_to_dict(EDGE_CASES["UTC instant"])
    del data["location"]
    with pytest.raises(KeyError, match="location"):
        event_from_dict(data)


# --- the planner -------------------------------------------------------------------------------


def notices(snapshot: Snapshot, job: str) -> dict[str, Notice]:
    planned = offer_notices.plan(OFFER, snapshot, NOW).notices
    return {str(n.context["event_key"]): n for n in planned if n.job == job}


def test_invitations_carry_the_calendars_event() -> None:
    changed = datetime(2002, 12, 18, 22, 0, tzinfo=UTC)
    versions = {"presentation/2002-12-19": (0, changed), "presentation/2002-12-20": (3, changed)}
    got = notices(
        Snapshot(people=[PAT], grants=grants(1), facts=[], team=TEAM, versions=versions),
        "presentation_invitation",
    )
    calendar = {e.key: e for e in plan([OFFER], now=NOW)}
    assert sorted(got) == ["presentation/2002-12-19", "presentation/2002-12-20"]
    for key, notice in got.items():
        context = json.loads(json.dumps(dict(notice.context)))  # the outbox stores JSON
        assert event_from_dict(context["event"]) == calendar[key]
        assert context["sequence"] == versions[key][0]
        assert context["last_modified"] == changed.isoformat()
        assert "(877) 314-3187, pass code 394843#" in calendar[key].location
    assert got["presentation/2002-12-20"].step == "invite/2002-12-20/3"


def test_a_cancellation_carries_the_meeting_as_it_was() -> None:
    removed = datetime(2002, 12, 19, 17, 0, tzinfo=UTC)
    was = meeting(
        datetime(2002, 12, 23, 8, 30, tzinfo=LA),
        datetime(2002, 12, 23, 9, 30, tzinfo=LA),
        program=OFFER.id,
        key="presentation/2002-12-23",
    )
    versions = {"presentation/2002-12-23": (2, removed)}
    base = Snapshot(people=[PAT], grants=grants(1), facts=[], team=TEAM, versions=versions)
    [(key, notice)] = notices(base, "presentation_cancellation").items()
    assert key == "presentation/2002-12-23"
    assert (notice.step, notice.due) == ("cancel/presentation/2002-12-23/2", removed)
    assert "event" not in notice.context  # storage kept no copy (a row from before it did)

    with_copy = Snapshot(
        people=[PAT],
        grants=grants(1),
        facts=[],
        team=TEAM,
        versions=versions,
        events={"presentation/2002-12-23": was},
    )
    [notice] = notices(with_copy, "presentation_cancellation").values()
    assert event_from_dict(notice.context["event"]) == was
    assert notice.context["sequence"] == 2
    assert notice.context["start"] == "2002-12-23T08:30:00-08:00"
    assert notice.context["last_modified"] == removed.isoformat()


# --- the kept copy (calendars.versions) --------------------------------------------------------

T0 = datetime(2002, 12, 18, 17, 0, tzinfo=UTC)


def kept(event: Event, sequence: int = 0, copy: Event | None = None) -> Revision:
    return Revision(fingerprint=fingerprint(event), sequence=sequence, last_modified=T0, event=copy)


FRIDAY = meeting(
    datetime(2002, 12, 20, 8, 30, tzinfo=LA),
    datetime(2002, 12, 20, 9, 30, tzinfo=LA),
    key="presentation/2002-12-20",
)
LATER = meeting(
    datetime(2002, 12, 20, 10, 0, tzinfo=LA),
    datetime(2002, 12, 20, 11, 0, tzinfo=LA),
    key="presentation/2002-12-20",
)


@pytest.mark.parametrize(
    ("before", "events", "keep", "expected"),
    [
        pytest.param({}, [FRIDAY], True, {FRIDAY.key: (0, NOW, FRIDAY)}, id="new: kept"),
        pytest.param({}, [FRIDAY], False, {FRIDAY.key: (0, NOW, None)}, id="a person's: not"),
        pytest.param(
            {FRIDAY.key: kept(FRIDAY, 1, FRIDAY)},
            [LATER],
            True,
            {FRIDAY.key: (2, NOW, LATER)},
            id="moved: the new copy",
        ),
        pytest.param(
            {FRIDAY.key: kept(FRIDAY, 1, FRIDAY)},
            [],
            False,
            {FRIDAY.key: (2, NOW, FRIDAY)},
            id="removed: cancelled as it was",
        ),
        pytest.param(
            {FRIDAY.key: kept(FRIDAY, 1)},
            [FRIDAY],
            True,
            {FRIDAY.key: (1, T0, FRIDAY)},
            id="stored without a copy: the copy, same SEQUENCE",
        ),
        pytest.param(
            {FRIDAY.key: kept(FRIDAY, 1, dataclasses.replace(FRIDAY, details={}))},
            [FRIDAY],
            True,
            {FRIDAY.key: (1, T0, FRIDAY)},
            id="a copy stale in what the fingerprint leaves out: rewritten",
        ),
        pytest.param(
            {FRIDAY.key: kept(FRIDAY, 1, FRIDAY)}, [FRIDAY], True, {}, id="unchanged: nothing"
        ),
        pytest.param({FRIDAY.key: kept(FRIDAY, 1)}, [FRIDAY], False, {}, id="not kept: nothing"),
    ],
)
def test_revisions_keep_the_event(
    before: dict[str, Revision],
    events: list[Event],
    keep: bool,
    expected: dict[str, tuple[int, datetime, Event | None]],
) -> None:
    got = revise(before, events, NOW, keep_events=keep)
    assert {k: (r.sequence, r.last_modified, r.event) for k, r in got.items()} == expected
