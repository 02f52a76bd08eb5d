"""The dated event: what every program expands into, and what feeds, emails and jobs share.

An event's identity is ``uid``: derived from the program id and a key that names *what* the
event is (``cutoff``, ``presentation/2002-12-19``, ``vesting/7``), never its position or its
date, so that an event whose date moves keeps its uid and calendar clients update it in place.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

UID_DOMAIN = "tickler"


class EventKind(enum.StrEnum):
    """What an event is; the same names appear in ``tickler plan --format json``."""

    FORM_SD_DUE = "form_sd_due"
    CMRT_WAVE = "cmrt_wave"
    CMRT_RESPONSE_DUE = "cmrt_response_due"
    CMRT_FOLLOW_UP = "cmrt_follow_up"
    CMRT_ESCALATION = "cmrt_escalation"
    MILESTONE = "milestone"
    OFFER_OPEN = "offer_open"
    PRESENTATION = "presentation"
    CUTOFF_REMINDER = "cutoff_reminder"
    ELECTION_CUTOFF = "election_cutoff"
    PROMISE_TO_GRANT = "promise_to_grant"
    GRANT_DATE = "grant_date"
    EXERCISE_PRICE_DATE = "exercise_price_date"
    VESTING = "vesting"
    OPTION_EXPIRATION = "option_expiration"
    FCPA_POLICY_EFFECTIVE = "fcpa_policy_effective"
    FCPA_ACK_DUE = "fcpa_ack_due"


class Audience(enum.StrEnum):
    """Who an event is for; feeds per program and audience filter on it."""

    COMPLIANCE = "compliance"
    SUPPLIERS = "suppliers"
    EMPLOYEES = "employees"
    REPRESENTATIVES = "representatives"


def make_uid(program: str, key: str) -> str:
    """Return the stable uid of the event ``key`` of ``program``."""
    return f"{program}/{key}@{UID_DOMAIN}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One dated event of a program.

    ``start`` is a ``date`` for all-day events (deadlines) and an aware ``datetime`` for timed
    ones; ``end`` is exclusive for all-day events (the next day for a one-day deadline), as in
    RFC 5545. ``timezone`` is the IANA zone the event is shown in. ``person`` is set on events
    that belong to one person (a participant's vesting tranche, a supplier's follow-up).
    """

    program: str
    key: str
    kind: EventKind
    title: str
    start: date | datetime
    end: date | datetime
    timezone: str
    audiences: frozenset[Audience]
    description: str = ""
    location: str = ""
    person: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        timed = isinstance(self.start, datetime)
        if timed != isinstance(self.end, datetime):
            raise ValueError(f"{self.key}: start and end must both be dates or both datetimes")
        if isinstance(self.start, datetime) and self.start.tzinfo is None:
            raise ValueError(f"{self.key}: naive start datetime")
        if isinstance(self.end, datetime) and self.end.tzinfo is None:
            raise ValueError(f"{self.key}: naive end datetime")
        if self.end < self.start:
            raise ValueError(f"{self.key}: end before start")

    @property
    def uid(self) -> str:
        return make_uid(self.program, self.key)

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)

    def sort_key(self) -> tuple[str, str, str]:
        """Order events by their date (all-day events first on a day), then uid."""
        day = self.start.date() if isinstance(self.start, datetime) else self.start
        at = "" if not isinstance(self.start, datetime) else self.start.isoformat()
        return (day.isoformat(), at, self.uid)


def day_event(
    *,
    program: str,
    key: str,
    kind: EventKind,
    title: str,
    day: date,
    timezone: str,
    audiences: frozenset[Audience],
    description: str = "",
    person: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Event:
    """Build a one-day, all-day event (a deadline): its end is the next day, exclusive."""
    return Event(
        program=program,
        key=key,
        kind=kind,
        title=title,
        start=day,
        end=day + timedelta(days=1),
        timezone=timezone,
        audiences=audiences,
        description=description,
        person=person,
        details=dict(details or {}),
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    """Return ``event`` as JSON-ready values that ``event_from_dict`` turns back into it.

    This is how an event travels in an outbox row's context and is kept in storage: the
    invitation an email carries is then the calendar's own event, not a copy rebuilt from
    strings. ``details`` must already hold JSON values (they do: ``tickler plan --format
    json`` writes them).
    """
    return {
        "program": event.program,
        "key": event.key,
        "kind": str(event.kind),
        "title": event.title,
        "start": _when_to_text(event.start),
        "end": _when_to_text(event.end),
        "timezone": event.timezone,
        "audiences": sorted(str(a) for a in event.audiences),
        "description": event.description,
        "location": event.location,
        "person": event.person,
        "details": dict(event.details),
    }


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Return the event ``event_to_dict`` wrote; raise ``ValueError`` or ``KeyError`` if
    ``data`` is not one."""
    return Event(
        program=str(data["program"]),
        key=str(data["key"]),
        kind=EventKind(data["kind"]),
        title=str(data["title"]),
        start=_when_from_text(str(data["start"])),
        end=_when_from_text(str(data["end"])),
        timezone=str(data["timezone"]),
        audiences=frozenset(Audience(a) for a in data["audiences"]),
        description=str(data["description"]),
        location=str(data["location"]),
        person=None if data["person"] is None else str(data["person"]),
        details=dict(data["details"]),
    )


def _when_to_text(value: date | datetime) -> str:
    """Write a date, or an instant with its offset and, for an IANA zone, the zone's name in
    brackets (RFC 9557: ``2002-12-19T15:30:00-08:00[America/Los_Angeles]``).

    The offset alone would come back as a fixed-offset instant: equal, but no longer in the
    zone, so adding a day to it would go wrong across a DST change.
    """
    if not isinstance(value, datetime):
        return value.isoformat()
    zone = value.tzinfo
    return f"{value.isoformat()}[{zone.key}]" if isinstance(zone, ZoneInfo) else value.isoformat()


def _when_from_text(text: str) -> date | datetime:
    stamp, _, zone = text.partition("[")
    if "T" not in stamp:
        return date.fromisoformat(stamp)
    value = datetime.fromisoformat(stamp)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {text!r}")
    # The offset fixes the instant (and so the fold of a repeated local hour); the zone is
    # put back around it.
    return value.astimezone(ZoneInfo(zone.removesuffix("]"))) if zone else value
