"""The weekly digest goes out at 08:00 on the week's first federal business day."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from calendars.notices import Team
from jobs.planning import digest_notices

TEAM = Team(compliance="compliance@example.com", compliance_officer="cco@example.com")


@pytest.mark.parametrize(
    ("now", "zone", "monday", "sent"),
    [
        # An ordinary week: Monday 08:00 Pacific (PST, UTC-8).
        (
            "2026-12-02T12:00:00+00:00",
            "America/Los_Angeles",
            date(2026, 11, 30),
            "2026-11-30T16:00",
        ),
        # Martin Luther King Day (the seed offer's cutoff, 2003-01-20): Tuesday instead.
        ("2003-01-20T12:00:00+00:00", "America/Los_Angeles", date(2003, 1, 20), "2003-01-21T16:00"),
        # New Year's Day observed on Monday 2 January 2023.
        ("2023-01-03T00:00:00+00:00", "America/New_York", date(2023, 1, 2), "2023-01-03T13:00"),
        # Memorial Day on 31 May 2027, the Form SD due date's own week; PDT (UTC-7).
        ("2027-05-31T20:00:00+00:00", "America/Los_Angeles", date(2027, 5, 31), "2027-06-01T15:00"),
        # The DST week: Monday 9 March 2026 is open, 08:00 PDT.
        ("2026-03-10T00:00:00+00:00", "America/Los_Angeles", date(2026, 3, 9), "2026-03-09T15:00"),
        # Christmas on Monday 25 December 2028.
        ("2028-12-27T00:00:00+00:00", "UTC", date(2028, 12, 25), "2028-12-26T08:00"),
    ],
)
def test_digest_moves_off_a_monday_holiday(now: str, zone: str, monday: date, sent: str) -> None:
    this_week, next_week = digest_notices(TEAM, zone, datetime.fromisoformat(now))
    assert this_week.occurrence == monday.isoformat()  # the identity stays the Monday
    assert this_week.due == datetime.fromisoformat(sent).replace(tzinfo=UTC)
    assert this_week.expires > this_week.due
    assert next_week.occurrence > this_week.occurrence
