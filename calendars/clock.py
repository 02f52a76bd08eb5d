"""Local wall-clock time and offsets, right across DST.

Rules are written in local time ("9:00 PM Pacific", "09:00 on the due date", "7 days before").
Stored instants are UTC. These helpers are the one place where the two meet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from config.programs import WrittenOffset


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the aware instant at wall-clock ``at`` on ``day`` in ``zone``.

    A wall time that does not exist (02:30 on the spring-forward day) is moved forward by the
    gap (03:30 PDT); an ambiguous one (01:30 on the fall-back day) is the first occurrence
    (PDT). The result is normalised, so its offset is always the real one.
    """
    naive = datetime.combine(day, at)
    return localize(naive, zone)


def localize(naive: datetime, zone: ZoneInfo) -> datetime:
    """Attach ``zone`` to a naive local date-time (see ``local_instant`` for DST gaps)."""
    if naive.tzinfo is not None:
        raise ValueError(f"{naive.isoformat()} is already aware")
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def before(instant: datetime, offset: WrittenOffset, zone: ZoneInfo) -> datetime:
    """Return the instant ``offset`` before ``instant``, as a person in ``zone`` counts it.

    Days (and weeks) count on the wall clock: 7 days before 21:00 PST on 2003-01-20 is 21:00 on
    2003-01-13 whatever DST did in between, as a reader of "7 days before" expects. Hours and
    minutes count real elapsed time, however many there are: "3h" is always 3 hours and "24h"
    (or "PT24H", "1440m") 24 hours of real time, so across a DST change it is 23:00 or 01:00 on
    the wall clock, where "1d" stays at the same wall time. A wall time that does not exist is
    moved forward by the gap (see ``local_instant``).
    """
    if instant.tzinfo is None:
        raise ValueError("naive instant")
    local = instant.astimezone(zone).replace(tzinfo=None) - timedelta(days=offset.days)
    return (localize(local, zone).astimezone(UTC) - offset.real).astimezone(zone)


def to_utc(instant: datetime) -> datetime:
    """Return ``instant`` in UTC; refuse naive values."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime")
    return instant.astimezone(UTC)
