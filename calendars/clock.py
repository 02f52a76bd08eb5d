"""Local wall-clock time and offsets, right across DST.

Rules are written in local time ("9:00 PM Pacific", "09:00 on the due date", "7 days before").
Stored instants are UTC. These helpers are the one place where the two meet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


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


def before(instant: datetime, offset: timedelta, zone: ZoneInfo) -> datetime:
    """Return the instant ``offset`` before ``instant``, as a person in ``zone`` counts it.

    Whole days count on the wall clock: 7 days before 21:00 PST on 2003-01-20 is 21:00 on
    2003-01-13 whatever DST did in between, as a reader of "7 days before" expects. Hours and
    minutes count real elapsed time: 3 hours before is always 3 hours of real time.
    """
    if instant.tzinfo is None:
        raise ValueError("naive instant")
    days = timedelta(days=offset.days)
    rest = offset - days
    local = instant.astimezone(zone).replace(tzinfo=None) - days
    return (localize(local, zone).astimezone(UTC) - rest).astimezone(zone)


def to_utc(instant: datetime) -> datetime:
    """Return ``instant`` in UTC; refuse naive values."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime")
    return instant.astimezone(UTC)
