"""Expand programs into their calendar: the pure entry point ``tickler plan`` and feeds use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from calendars import conflict_minerals, fcpa, option_exchange
from calendars.events import Event
from config.programs import ConflictMinerals, Fcpa, OptionExchange, Program


def expand_program(program: Program, *, now: datetime) -> list[Event]:
    """Return the program's dated events.

    Continuous programs (FCPA) have no last date: their company-wide due dates run to the end
    of the year after ``now``'s.
    """
    if isinstance(program, ConflictMinerals):
        return conflict_minerals.expand(program)
    if isinstance(program, OptionExchange):
        return option_exchange.expand(program)
    if isinstance(program, Fcpa):
        return fcpa.expand(program, until=date(now.year + 1, 12, 31))
    raise TypeError(f"unknown program type {type(program).__name__}")


def event_day(event: Event) -> date:
    """Return the local day an event starts on."""
    return event.start.date() if isinstance(event.start, datetime) else event.start


def plan(
    programs: Iterable[Program],
    *,
    now: datetime,
    start: date | None = None,
    end: date | None = None,
) -> list[Event]:
    """Return the events of ``programs`` whose local day is within [start, end], sorted."""
    events = [e for p in programs for e in expand_program(p, now=now)]
    if start is not None:
        events = [e for e in events if event_day(e) >= start]
    if end is not None:
        events = [e for e in events if event_day(e) <= end]
    return sorted(events, key=Event.sort_key)
