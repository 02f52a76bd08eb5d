"""``/dashboard/calendar``: the next 90 days of every program, the events its feeds publish.

The events come from the feeds' own source (``FeedSource.program_events``: the program's
rules with the recorded extensions applied, less the example vesting schedule), so this page
and a subscribed calendar never disagree. Each program is shown in its own zone, named; an
event is on the day its start falls on there (a 9:00 PM Pacific cutoff is on the 20th,
though it is the 21st in UTC). Page assembly (``agenda``) is pure and tested without HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from calendars.events import Event
from config.programs import Program
from scheduler.web.auth import Role, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import render
from scheduler.web.feeds import FeedSource

HORIZON = timedelta(days=90)


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    time: str  # "9:00 PM PST", or "all day"
    title: str
    kind: str
    location: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Day:
    day: date
    label: str  # "Monday 11 January 2027"
    items: list[Item]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramAgenda:
    id: str
    name: str
    zone: str  # "America/Los_Angeles (PST)"
    days: list[Day]


def _local_day(event: Event, program: Program) -> date:
    if isinstance(event.start, datetime):
        return event.start.astimezone(program.zone).date()
    return event.start


def _time(event: Event, program: Program) -> str:
    if not isinstance(event.start, datetime):
        return "all day"
    local = event.start.astimezone(program.zone)
    return f"{local.hour % 12 or 12}:{local:%M %p} {local.tzname()}"


def agenda(program: Program, events: Sequence[Event], now: datetime) -> ProgramAgenda:
    """Return ``program``'s events from today to ``HORIZON`` ahead, by day in its zone.

    "Today" is the program's local day at ``now``: an all-day deadline of today is shown,
    and so is a timed event of today that already started; 90 days means local days, so a
    DST change inside the window neither adds nor drops a day.
    """
    zone = program.zone
    first = now.astimezone(zone).date()
    last = first + timedelta(days=HORIZON.days)
    by_day: dict[date, list[tuple[float, Item]]] = {}
    for event in events:
        day = _local_day(event, program)
        if not first <= day < last:
            continue
        # All-day events first, then by instant.
        order = event.start.timestamp() if isinstance(event.start, datetime) else float("-inf")
        by_day.setdefault(day, []).append(
            (
                order,
                Item(
                    time=_time(event, program),
                    title=event.title,
                    kind=event.kind.value,
                    location=event.location,
                ),
            )
        )
    days = [
        Day(
            day=day,
            label=f"{day:%A} {day.day} {day:%B %Y}",
            items=[item for _, item in sorted(found, key=lambda pair: pair[0])],
        )
        for day, found in sorted(by_day.items())
    ]
    abbreviation = now.astimezone(zone).tzname()
    return ProgramAgenda(
        id=program.id, name=program.name, zone=f"{program.timezone} ({abbreviation})", days=days
    )


async def calendar(request: Request) -> Response:
    await require(request, Role.VIEWER)
    dashboard = dashboard_of(request)
    now = dashboard.clock()
    service = dashboard.service
    source = FeedSource(
        service.factory,
        service.programs,
        team=service.team,
        timezone=service.settings.timezone,
    )
    programs = sorted(dashboard.programs.values(), key=lambda p: p.name)

    def read() -> list[ProgramAgenda]:
        with service.factory() as session:
            return [agenda(p, source.program_events(session, p.id, now)[1], now) for p in programs]

    agendas = await asyncio.to_thread(read)
    return render(
        request,
        "calendar.html",
        active="calendar",
        title="Calendar",
        agendas=agendas,
        days=HORIZON.days,
    )


def routes() -> list[Route]:
    return [Route("/calendar", calendar, methods=["GET"])]
