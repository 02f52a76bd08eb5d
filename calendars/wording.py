"""Dates and times as people read them: in a named zone, never a raw ISO instant."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def spoken_instant(instant: datetime, zone: ZoneInfo) -> str:
    """Return ``instant`` in ``zone`` with the zone named: ``Monday 20 January 2003, 9:00 PM PST``.

    The abbreviation is the one in force at that instant (PST in January, PDT in July), so the
    same rule reads right on both sides of a DST change.
    """
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} is naive")
    local = instant.astimezone(zone)
    hour = local.hour % 12 or 12
    return f"{local:%A} {local.day} {local:%B %Y}, {hour}:{local:%M %p} {local.tzname()}"
