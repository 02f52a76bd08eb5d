"""Run a program's rules once on stand-in people, so that ``tickler check`` finds what they fail on.

A program file can pass its model and still make the rules fail: dates and offsets each in
range whose sum is not. ``rehearse`` expands the program and plans it for one stand-in of each
kind of person (a supplier of each tier, an employee holding an option and electing, a third
party), and lets whatever the rules raise propagate. Stand-ins only touch the code paths a
real person would; they are never stored.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import get_args

from calendars.kinds import effective, expand_program, plan_notices
from calendars.notices import Fact, GrantView, PersonView, Snapshot, Team
from config.dates import EARLIEST
from config.facts import FactKind
from config.programs import FcpaRole, Program, Tier

_TEAM = Team(compliance="compliance@example.com", compliance_officer="officer@example.com")


def stand_ins(program: Program) -> Snapshot:
    """Return a snapshot of one stand-in of each kind of person, with the facts that take each
    down the longest path of the rules (an incomplete CMRT, an election, an acknowledgment)."""
    people: list[PersonView] = []

    def add(kind: str, **fields: object) -> PersonView:
        n = len(people) + 1
        person = PersonView(
            id=n,
            kind=kind,
            external_id=f"X{n}",
            name="Stand-in",
            email=f"stand-in-{n}@example.com",
            **fields,  # type: ignore[arg-type]
        )
        people.append(person)
        return person

    for tier in get_args(Tier):
        add("supplier", tier=tier, owner_email="owner@example.com")
    # Hired as early as allowed, so every offer's eligibility cut-off admits them.
    employee = add("employee", country="US", hire_date=EARLIEST, role="employee")
    for role in get_args(FcpaRole):
        if role not in ("employee", "director", "officer"):
            add("third_party", role=role, start_date=EARLIEST)
    start = datetime.combine(EARLIEST, datetime.min.time(), tzinfo=UTC)
    opened = getattr(program, "open", None)
    at = datetime.combine(opened, datetime.min.time(), tzinfo=UTC) if opened else start
    facts = [
        Fact(
            id=1,
            kind=FactKind.CMRT_RESPONSE,
            at=at,
            program=program.id,
            person_id=1,
            payload={"complete": False, "issues": "stand-in"},
        ),
        Fact(id=2, kind=FactKind.ELECTION, at=at, program=program.id, person_id=employee.id),
        Fact(id=3, kind=FactKind.FCPA_ACK, at=at, program=program.id, person_id=employee.id),
    ]
    grants = [
        GrantView(
            id=1,
            person_id=employee.id,
            external_id="G1",
            grant_date=date(EARLIEST.year, 1, 2),
            unexercised=1000,
            price=Decimal("99999999"),
        )
    ]
    return Snapshot(people=people, grants=grants, facts=facts, team=_TEAM)


def rehearse(program: Program, *, now: datetime) -> None:
    """Expand ``program`` and plan it for the stand-ins at ``now``; raise what the rules raise."""
    snapshot = stand_ins(program)
    expand_program(effective(program, snapshot.facts), now=now)
    plan_notices(program, snapshot, now)
