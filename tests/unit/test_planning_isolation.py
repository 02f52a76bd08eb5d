"""Planning is isolated: a person whose rows make a program's rules raise, or a program whose
own dates do, is left out and reported, and everything else is planned as if they were not
there (``jobs.planning.compute``, pure: no database)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import pytest

from calendars.notices import PersonView, Plan, Snapshot, Team
from config.loader import load_programs
from config.programs import Program
from jobs.planning import PlanInputs, PlanResult, compute, plan_isolated
from jobs.storage.skips import WHOLE_PROGRAM, Skipped

NOW = datetime(2017, 1, 9, 17, 5, tzinfo=UTC)  # wave 1 of conflict-minerals-2016 is due
TEAM = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")
PROGRAMS = load_programs(None)
# What HR exports write for "no end date", in a column the FCPA rules compute from.
NO_DATE = date(9999, 12, 31)


def supplier(n: int) -> PersonView:
    return PersonView(
        id=n,
        kind="supplier",
        external_id=f"S{n}",
        name=f"Supplier {n}",
        email=f"s{n}@example.com",
        tier="direct",
        owner_email="buyer@example.com",
    )


def employee(n: int, hired: date) -> PersonView:
    return PersonView(
        id=n,
        kind="employee",
        external_id=f"E{n}",
        name=f"Employee {n}",
        email=f"e{n}@example.com",
        country="US",
        hire_date=hired,
        role="employee",
    )


def plan(
    people: list[PersonView],
    programs: list[Program] = PROGRAMS,
    pending: Mapping[str, tuple[str, int | None]] | None = None,
) -> PlanResult:
    inputs = PlanInputs(
        snapshot=Snapshot(people=people, grants=[], facts=[], team=TEAM),
        revisions={},
        pending=pending or {},
    )
    return compute(inputs, programs=programs, team=TEAM, zone="America/Los_Angeles", now=NOW)


def identities(result: PlanResult, person_id: int | None = None) -> set[str]:
    return {n.identity for n in result.notices if person_id is None or n.person_id == person_id}


def test_a_person_the_rules_raise_for_is_left_out_and_the_rest_planned() -> None:
    good = [supplier(1), supplier(2), employee(3, date(2010, 4, 1)), employee(4, date(2015, 6, 1))]
    bad = employee(5, NO_DATE)

    result = plan([*good[:3], bad, good[3]])

    # Old code: OverflowError out of compute, nothing planned for any program.
    assert result.skipped == [
        Skipped(
            program="fcpa",
            person="employee:E5",
            person_id=5,
            error="OverflowError: date value out of range",
        )
    ]
    assert identities(result) == identities(plan(good))
    assert {o.person_id for o in result.obligations} == {1, 2, 3, 4}
    assert identities(result, 3)  # the good employee's FCPA request is planned
    assert not identities(result, 5)


def test_what_was_left_out_keeps_its_pending_messages() -> None:
    bad = employee(5, NO_DATE)
    pending = {
        "fcpa/2017-01-31/employee:E5/request": ("fcpa", 5),  # the bad person's: kept
        "fcpa/2017-01-31/employee:E6/request": ("fcpa", 6),  # someone gone: cancelled
        "conflict-minerals-2016/2016/supplier:S9/request/wave-1": ("conflict-minerals-2016", 9),
    }

    result = plan([supplier(1), bad], pending=pending)

    assert result.cancel == {
        "fcpa/2017-01-31/employee:E6/request",
        "conflict-minerals-2016/2016/supplier:S9/request/wave-1",
    }


def test_a_program_its_own_dates_break_is_left_out_whole() -> None:
    [fcpa] = [p for p in PROGRAMS if p.id == "fcpa"]
    # A date that got past the model (files are range-checked now): the rules overflow.
    broken = fcpa.model_copy(update={"effective": NO_DATE})
    others = [p for p in PROGRAMS if p.id != "fcpa"]
    people = [supplier(1), employee(3, date(2010, 4, 1))]
    pending = {"fcpa/2017-01-31/employee:E3/request": ("fcpa", 3)}

    result = plan(people, [*others, broken], pending=pending)

    assert [(s.program, s.person, s.person_id) for s in result.skipped] == [
        ("fcpa", WHOLE_PROGRAM, None)
    ]
    assert result.skipped[0].error.startswith("OverflowError")
    assert not [n for n in result.notices if n.program == "fcpa"]
    assert identities(result) == identities(plan(people, others))
    assert "fcpa" not in result.revisions
    assert result.cancel == frozenset()  # its pending messages stay as they were
    assert result.programs == {p.id for p in PROGRAMS}


@pytest.mark.parametrize("bad_ids", [[], [1], [7], [1, 2, 3], [0, 63], list(range(0, 64, 5))])
def test_halving_finds_exactly_the_people_that_raise(bad_ids: list[int]) -> None:
    people = [supplier(n) for n in range(64)]
    calls: list[int] = []

    def planner(part: Sequence[PersonView]) -> Plan:
        calls.append(len(part))
        if any(p.id in bad_ids for p in part):
            raise ValueError("bad row")
        return Plan(notices=[], obligations=[])

    _, bad = plan_isolated(planner, people)

    assert [p.id for p, _ in bad] == bad_ids
    # One plan when nobody is bad; a few halvings per bad person, not one plan per person.
    assert len(calls) == 1 if not bad_ids else len(calls) <= 2 + 4 * len(bad_ids) * 6


def test_a_planner_that_raises_for_nobody_raises() -> None:
    def planner(part: Sequence[PersonView]) -> Plan:
        raise ValueError("the program itself")

    with pytest.raises(ValueError, match="the program itself"):
        plan_isolated(planner, [supplier(1)])
