"""Program kinds: one registration per kind of program file, and the entry points that use it.

A kind says, for its program model (``config.programs``), how a program file expands into
dated events (``tickler plan``, the feeds), how the facts recorded so far change it (an offer's
extensions), which emails and obligations it calls for (the planning job), and which dates it
gives one person (their personal feed). Everything that depends on the kind of a program goes
through ``kind_of``: adding a kind is a model in ``config.programs``, its rule modules here in
``calendars/``, and one entry in ``KINDS`` (README, "Adding a program kind").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from calendars import (
    cmrt_notices,
    conflict_minerals,
    fcpa,
    fcpa_notices,
    offer_notices,
    option_exchange,
    personal,
)
from calendars.events import Event
from calendars.notices import Fact, PersonView, Plan, Snapshot
from calendars.personal import PersonalCalendar
from config.programs import ConflictMinerals, Fcpa, OptionExchange, Program


def _as_written(program: Any, _facts: Sequence[Fact]) -> Any:
    return program


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramKind:
    """What the core does with one kind of program (the callables take that kind's model)."""

    model: type[Any]
    #: The program's dated events as of ``now`` (continuous programs run to a horizon).
    expand: Callable[[Any, datetime], list[Event]]
    #: The emails and obligations the facts of the snapshot call for at ``now``.
    plan: Callable[[Any, Snapshot, datetime], Plan]
    #: Add one person's dates to a personal calendar (nothing when the program skips them).
    personal: Callable[[Any, PersonView, Snapshot, datetime, PersonalCalendar], None]
    #: The program as recorded facts leave it (an offer with its extensions).
    effective: Callable[[Any, Sequence[Fact]], Any] = _as_written


def _fcpa_events(program: Fcpa, now: datetime) -> list[Event]:
    # Continuous: the company-wide due dates run to the end of the year after now's.
    return fcpa.expand(program, until=date(now.year + 1, 12, 31))


KINDS: tuple[ProgramKind, ...] = (
    ProgramKind(
        model=ConflictMinerals,
        expand=lambda program, _now: conflict_minerals.expand(program),
        plan=cmrt_notices.plan,
        personal=personal.cmrt_dates,
    ),
    ProgramKind(
        model=OptionExchange,
        expand=lambda program, _now: option_exchange.expand(program),
        plan=offer_notices.plan,
        personal=personal.offer_dates,
        effective=offer_notices.with_recorded_extensions,
    ),
    ProgramKind(
        model=Fcpa,
        expand=_fcpa_events,
        plan=fcpa_notices.plan,
        personal=personal.fcpa_dates,
    ),
)
_BY_MODEL = {kind.model: kind for kind in KINDS}


def kind_of(program: Program) -> ProgramKind:
    """Return the registration of ``program``'s kind; ``TypeError`` for an unregistered one."""
    try:
        return _BY_MODEL[type(program)]
    except KeyError:
        raise TypeError(f"unknown program type {type(program).__name__}") from None


def expand_program(program: Program, *, now: datetime) -> list[Event]:
    """Return the program's dated events (continuous programs up to a horizon after ``now``)."""
    return kind_of(program).expand(program, now)


def effective(program: Program, facts: Sequence[Fact]) -> Program:
    """Return the program as the recorded ``facts`` leave it (an offer with its extensions)."""
    result: Program = kind_of(program).effective(program, facts)
    return result


def plan_notices(program: Program, snapshot: Snapshot, now: datetime) -> Plan:
    """Return the emails and obligations ``program`` calls for at ``now``."""
    return kind_of(program).plan(program, snapshot, now)


def personal_calendar(
    programs: Sequence[Program], person: PersonView, snapshot: Snapshot, now: datetime
) -> PersonalCalendar:
    """Return the events of ``person`` under every program, as the facts up to ``now`` leave them.

    ``snapshot`` needs the person, their grants and the facts; other people are ignored.
    """
    mine = Snapshot(
        people=[person],
        grants=[g for g in snapshot.grants if g.person_id == person.id],
        facts=snapshot.facts,
        team=snapshot.team,
    )
    result = PersonalCalendar(shared=[], own=[])
    for program in programs:
        kind_of(program).personal(program, person, mine, now, result)
    return result
