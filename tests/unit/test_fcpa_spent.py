"""The FCPA planner leaves out spent cycles and plans exactly what the full planner keeps.

``fcpa_notices.plan`` builds no notice of a cycle whose notices had all expired ``HISTORY``
before ``now`` (planning drops those as history); ``every_cycle=True`` builds them all. What
planning keeps (notices not yet history) and every obligation must be the same either way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calendars import fcpa_notices
from calendars.notices import HISTORY, Fact, Notice, PersonView, Plan, Snapshot, Team
from config.facts import FactKind
from config.loader import load_programs
from config.programs import Fcpa

_SHIPPED = next(p for p in load_programs(None) if isinstance(p, Fcpa))
TEAM = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")


def variant(**changes: Any) -> Fcpa:
    return Fcpa.model_validate({**_SHIPPED.model_dump(), **changes})


FIXED = _SHIPPED
ANNIVERSARY = variant(renewal={"mode": "anniversary"})


def person(n: int, hired: date, ended: date | None = None, role: str = "employee") -> PersonView:
    return PersonView(
        id=n,
        kind="employee",
        external_id=f"E{n}",
        name=f"Employee {n}",
        email=f"e{n}@example.com",
        hire_date=hired,
        termination_date=ended,
        role=role,
    )


def ack(n: int, person_id: int, at: datetime) -> Fact:
    return Fact(
        id=n,
        kind=FactKind.FCPA_ACK,
        at=at,
        program=_SHIPPED.id,
        person_id=person_id,
        payload={"policy_version": "2017-1"},
    )


def kept(notices: list[Notice], now: datetime) -> list[tuple[str, datetime, datetime, str]]:
    """What planning queues of ``notices``: those not yet history at ``now``, comparably."""
    return sorted(
        (n.identity, n.due, n.expires, repr(sorted(n.context.items())))
        for n in notices
        if n.expires > now - HISTORY
    )


def assert_same(program: Fcpa, snapshot: Snapshot, now: datetime) -> Plan:
    full = fcpa_notices.plan(program, snapshot, now, every_cycle=True)
    short = fcpa_notices.plan(program, snapshot, now)
    assert kept(short.notices, now) == kept(full.notices, now)
    assert short.obligations == full.obligations
    # Only whole spent cycles are left out: what is built is built as the full planner does.
    assert {n.identity for n in short.notices} <= {n.identity for n in full.notices}
    return short


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


SEED_NOW = at("2026-12-02T12:00:00+00:00")


@pytest.mark.parametrize("program", [FIXED, ANNIVERSARY], ids=["fixed", "anniversary"])
@pytest.mark.parametrize(
    ("hired", "ended", "now"),
    [
        # The demo company's hires (config/demo/employees.csv), planned today.
        (date(1999, 4, 12), None, SEED_NOW),
        (date(1994, 3, 1), None, SEED_NOW),
        (date(2003, 1, 6), None, SEED_NOW),
        # The policy's effective date, and a start the day before it.
        (date(2017, 1, 1), None, at("2017-02-15T17:00:00+00:00")),
        (date(2016, 12, 31), None, at("2018-04-30T17:00:00+00:00")),
        # Month ends and leap days.
        (date(2020, 2, 29), None, at("2021-03-10T17:00:00+00:00")),
        (date(2020, 2, 29), None, at("2024-03-29T16:00:00+00:00")),
        (date(2019, 1, 31), None, at("2023-04-30T16:00:00+00:00")),
        (date(2021, 12, 31), None, at("2025-05-31T16:00:00+00:00")),
        # Hired decades ago; terminated ones.
        (date(1965, 7, 1), None, at("2040-01-01T00:00:00+00:00")),
        (date(1972, 2, 29), date(2019, 5, 1), SEED_NOW),
        (date(2018, 2, 1), date(2018, 12, 31), at("2021-06-01T00:00:00+00:00")),
        # Just at the edge: the shipped cycle due 2024-03-31 escalates on 2024-04-28 (its
        # notice expires 30 days on), so it is spent from 2024-06-04 on.
        (date(2010, 5, 5), None, at("2024-06-04T15:59:59+00:00")),
        (date(2010, 5, 5), None, at("2024-06-04T16:00:00+00:00")),
        (date(2010, 5, 5), None, at("2024-06-04T16:00:01+00:00")),
    ],
)
def test_same_notices_as_every_cycle(
    program: Fcpa, hired: date, ended: date | None, now: datetime
) -> None:
    snapshot = Snapshot(people=[person(1, hired, ended)], grants=[], facts=[], team=TEAM)
    assert_same(program, snapshot, now)


def test_acknowledged_and_overdue_cycles_keep_their_obligations() -> None:
    # Acknowledged in 2019, silent since: old cycles keep their states, not their notices.
    facts = [ack(1, 1, at("2019-03-20T17:00:00+00:00"))]
    snapshot = Snapshot(people=[person(1, date(1999, 4, 12))], grants=[], facts=facts, team=TEAM)
    plan = assert_same(FIXED, snapshot, SEED_NOW)
    states = {o.occurrence: o.state for o in plan.obligations}
    assert states["2019-03-31"] == "acknowledged"
    assert states["2020-03-31"] == "escalated"
    assert states["2027-03-31"] == "pending"
    assert {n.occurrence for n in plan.notices} == {"2027-03-31"}


def test_a_decades_old_hire_builds_only_the_live_cycles() -> None:
    snapshot = Snapshot(people=[person(1, date(1965, 7, 1))], grants=[], facts=[], team=TEAM)
    now = at("2040-01-01T00:00:00+00:00")
    full = fcpa_notices.plan(FIXED, snapshot, now, every_cycle=True)
    short = fcpa_notices.plan(FIXED, snapshot, now)
    assert len(full.notices) > 150  # a cycle a year since 2017, 8 notices each
    assert {n.occurrence for n in short.notices} == {"2040-03-31"}


_DAYS = st.dates(min_value=date(1950, 1, 1), max_value=date(2035, 12, 31))
_INSTANTS = st.datetimes(
    min_value=datetime(2010, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)


@st.composite
def programs(draw: st.DrawFn) -> Fcpa:
    return variant(
        renewal=draw(
            st.sampled_from(
                [
                    {"mode": "anniversary"},
                    {"mode": "fixed", "month_day": "03-31"},
                    {"mode": "fixed", "month_day": "02-28"},
                    {"mode": "fixed", "month_day": "12-31"},
                ]
            )
        ),
        onboarding_due_days=draw(st.integers(0, 90)),
        reminders_before=draw(st.sampled_from([[], ["14d", "3d"], ["30d", "1d", "3h"]])),
        overdue={
            "interval_days": draw(st.integers(1, 30)),
            "max": draw(st.integers(0, 6)),
            "escalate_after_days": draw(st.none() | st.integers(0, 60)),
        },
        send_on_closed_days=draw(st.booleans()),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Fcpa, Snapshot, datetime]:
    people = []
    facts: list[Fact] = []
    for n in range(1, draw(st.integers(1, 4)) + 1):
        hired = draw(_DAYS)
        ended = draw(st.none() | st.dates(min_value=hired + timedelta(days=1)))
        people.append(person(n, hired, ended))
        for when in draw(st.lists(_INSTANTS, max_size=4)):
            facts.append(ack(len(facts) + 1, n, when))
    return (
        draw(programs()),
        Snapshot(people=people, grants=[], facts=facts, team=TEAM),
        draw(_INSTANTS),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property_same_notices_as_every_cycle(case: tuple[Fcpa, Snapshot, datetime]) -> None:
    program, snapshot, now = case
    assert_same(program, snapshot, now)
