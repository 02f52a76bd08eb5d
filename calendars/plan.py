"""Expand programs into their calendar: the pure entry point ``tickler plan`` and feeds use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from calendars.events import Event
from calendars.kinds import expand_program
from config.programs import Program


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
