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
