"""A person's own calendar: which of their events are live, as the facts change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from calendars.events import EventKind
from calendars.kinds import personal_calendar
from calendars.notices import Fact, GrantView, PersonView, Snapshot, Team
from calendars.personal import PersonalCalendar
from config.facts import FactKind
from config.loader import load_programs

PROGRAMS = load_programs(None)
TEAM = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")
OFFER = "option-exchange-2003"
CM = "conflict-minerals-2016"
BEFORE_CUTOFF = datetime(2003, 1, 10, 18, tzinfo=UTC)
AFTER_GRANT = datetime(2003, 8, 1, 18, tzinfo=UTC)


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def pat(**changes: Any) -> PersonView:
    base: dict[str, Any] = dict(
        id=1,
        kind="employee",
        external_id="E1001",
        name="Pat Quinn",
        email="pat@example.com",
        country="US",
        hire_date=date(1999, 4, 12),
        role="employee",
    )
    return PersonView(**(base | changes))


def supplier() -> PersonView:
    return PersonView(
        id=2,
        kind="supplier",
        external_id="S001",
        name="Foxhollow",
        email="cmrt@foxhollow.example",
        tier="contract_manufacturer",
    )


# The reference table of slide 9: 800 + 1000 + 500 exchanged -> 600 + 750 + 375 = 1725 new.
GRANTS = [
    GrantView(id=i, person_id=1, external_id=f"G{i}", grant_date=d, unexercised=u, price=Decimal(p))
    for i, (d, u, p) in enumerate(
        [
            (date(2000, 5, 20), 800, "6.00"),
            (date(2001, 3, 5), 1000, "4.50"),
            (date(2002, 2, 28), 500, "2.18"),
            (date(2002, 7, 1), 500, "0.40"),
        ]
    )
]


def fact(n: int, kind: str, at: str, program: str | None, **payload: Any) -> Fact:
    person = 2 if kind == "cmrt_response" else 1
    return Fact(
        id=n, kind=FactKind(kind), at=z(at), program=program, person_id=person, payload=payload
    )


def calendar(
    person: PersonView, facts: Sequence[Fact], now: datetime, grants: Sequence[GrantView] = GRANTS
) -> PersonalCalendar:
    snapshot = Snapshot(people=[person], grants=list(grants), facts=list(facts), team=TEAM)
    return personal_calendar(PROGRAMS, person, snapshot, now)


def vesting(cal: PersonalCalendar) -> list[tuple[str, int, bool]]:
    return [
        (str(o.event.start), int(o.event.details["shares"]), o.live)
        for o in cal.own
        if o.event.kind == EventKind.VESTING
    ]


ELECTED = fact(1, "election", "2003-01-06T09:15:00-08:00", OFFER)
WITHDRAWN = fact(2, "withdrawal", "2003-01-08T09:15:00-08:00", OFFER)


def test_eligible_employee_sees_the_offer_and_no_example_grant() -> None:
    cal = calendar(pat(), [], BEFORE_CUTOFF)
    kinds = [e.kind for e in cal.shared]
    assert EventKind.ELECTION_CUTOFF in kinds and EventKind.PRESENTATION in kinds
    assert EventKind.VESTING not in kinds  # the program's example grant is not theirs
    assert EventKind.CUTOFF_REMINDER not in kinds  # a compliance-team event
    assert all(e.program == OFFER for e in cal.shared)


def test_ineligible_employee_sees_nothing_of_the_offer() -> None:
    director = pat(is_director=True)
    assert calendar(director, [ELECTED], BEFORE_CUTOFF).shared == []


@pytest.mark.parametrize(
    ("facts", "person", "now", "live"),
    [
        ([], pat(), BEFORE_CUTOFF, 0),
        ([ELECTED], pat(), BEFORE_CUTOFF, 25),
        ([ELECTED, WITHDRAWN], pat(), BEFORE_CUTOFF, 0),
        ([ELECTED], pat(), AFTER_GRANT, 25),
        # terminated on the grant date: not employed on it, no grant, nothing vests
        ([ELECTED], pat(termination_date=date(2003, 7, 21)), AFTER_GRANT, 0),
        # leaves in mid-2005: the tranches after the last day are withdrawn
        ([ELECTED], pat(termination_date=date(2005, 6, 1)), AFTER_GRANT, 17),
    ],
    ids=["not-elected", "elected", "withdrawn", "granted", "left-before-grant", "left-later"],
)
def test_vesting_tranches_are_live_while_owed(
    facts: list[Fact], person: PersonView, now: datetime, live: int
) -> None:
    tranches = vesting(calendar(person, facts, now))
    assert len(tranches) == 25  # every candidate is there, live or not
    assert sum(is_live for *_, is_live in tranches) == live
    assert sum(shares for _, shares, _ in tranches) == 1725
    assert tranches[0][:2] == ("2004-01-21", 863)  # half on the six-month anniversary
    assert tranches[-1][0] == "2006-01-21"


def test_vesting_uids_are_per_person_and_stable() -> None:
    [first, *_] = [o.event for o in calendar(pat(), [ELECTED], BEFORE_CUTOFF).own]
    assert first.uid == f"{OFFER}/vesting/employee:E1001/1@tickler"
    assert first.person == "employee:E1001"


def test_recorded_extension_moves_the_cutoff_and_the_grant() -> None:
    extension = fact(3, "offer_extension", "2003-01-15T10:00:00-08:00", OFFER)
    extension = Fact(
        id=3,
        kind=FactKind.OFFER_EXTENSION,
        at=extension.at,
        program=OFFER,
        person_id=None,
        payload={"cutoff": "2003-02-03T21:00:00"},
    )
    cal = calendar(pat(), [ELECTED, extension], datetime(2003, 1, 20, tzinfo=UTC))
    cutoff = next(e for e in cal.shared if e.kind == EventKind.ELECTION_CUTOFF)
    grant = next(e for e in cal.shared if e.kind == EventKind.GRANT_DATE)
    assert cutoff.start == z("2003-02-04T05:00:00+00:00")
    assert str(grant.start) == "2003-08-04"  # 6 months and a day later, a Monday


SUPPLIER_NOW = datetime(2017, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("responses", "live"),
    [
        ([], [True, True, True]),
        # answered before the due date: no reminder was ever needed
        ([("2017-02-01T10:00:00-08:00", True)], [False, False, False]),
        # answered after the first reminder went out (2017-02-17 09:00)
        ([("2017-02-20T10:00:00-08:00", True)], [True, False, False]),
    ],
    ids=["silent", "on-time", "after-one-reminder"],
)
def test_supplier_follow_ups_stay_live_once_sent(
    responses: list[tuple[str, bool]], live: list[bool]
) -> None:
    facts = [
        fact(10 + n, "cmrt_response", at, CM, complete=complete)
        for n, (at, complete) in enumerate(responses)
    ]
    cal = calendar(supplier(), facts, SUPPLIER_NOW, grants=[])
    follow_ups = [o for o in cal.own if o.event.program == CM and "follow-up" in o.event.key]
    assert [str(o.event.start) for o in follow_ups] == ["2017-02-17", "2017-02-24", "2017-03-03"]
    assert [o.live for o in follow_ups] == live
    shared = [e for e in cal.shared if e.program == CM]
    assert {e.kind for e in shared} == {EventKind.CMRT_WAVE, EventKind.CMRT_RESPONSE_DUE}
    assert all(e.details["wave"] == "wave-1" for e in shared)
    # one survey per reporting year: the 2026 cycle asks again
    assert {e.program for e in cal.shared} == {CM, "conflict-minerals-2026"}


def test_incomplete_response_asks_for_a_correction_until_a_complete_one() -> None:
    incomplete = fact(10, "cmrt_response", "2017-02-01T10:00:00-08:00", CM, complete=False)
    complete = fact(11, "cmrt_response", "2017-02-10T10:00:00-08:00", CM, complete=True)
    cal = calendar(supplier(), [incomplete, complete], SUPPLIER_NOW, grants=[])
    corrections = [(str(o.event.start), o.live) for o in cal.own if "correction" in o.event.key]
    # asked at once and a week later; the third request was not needed any more
    assert corrections == [("2017-02-01", True), ("2017-02-08", True), ("2017-02-15", False)]


def test_fcpa_cycles_of_a_third_party_end_with_the_relationship() -> None:
    agent = PersonView(
        id=3,
        kind="third_party",
        external_id="T001",
        name="Harborline",
        email="h@example.com",
        role="distributor",
        start_date=date(2016, 5, 2),
        termination_date=date(2019, 1, 1),
    )
    ack = Fact(
        id=20,
        kind=FactKind.FCPA_ACK,
        at=z("2017-01-20T10:00:00-08:00"),
        program="fcpa",
        person_id=3,
        payload={"policy_version": "2017-1"},
    )
    snapshot = Snapshot(people=[agent], grants=[], facts=[ack], team=TEAM)
    cal = personal_calendar(PROGRAMS, agent, snapshot, datetime(2020, 1, 1, tzinfo=UTC))
    cycles = [(str(o.event.start), o.live) for o in cal.own]
    assert cycles[:3] == [("2017-01-31", True), ("2018-03-31", True), ("2019-03-31", False)]
    assert "Acknowledged on 2017-01-20" in cal.own[0].event.description
    assert "Acknowledged" not in cal.own[1].event.description
    assert all(o.event.kind == EventKind.FCPA_ACK_DUE for o in cal.own)
