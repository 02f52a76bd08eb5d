"""Escalations combined: one email per escalation recipient, program and day, listing everyone.

Why delivery combines them, rather than planning one grouped notice per recipient and day:
planning keeps one outbox row per escalated person, and that row stays the fact that the person
was escalated (the export's "escalated", the status counts, the person's timeline). Its
cancellation when the person answers is the same per-person reconciliation as every other
follow-up, so someone who acts before the send simply drops out of the email. A grouped notice
would need its membership recomputed at each plan and would lose the per-person history.

Delivery claims the due rows of one group together (same program, job, recipient and due
instant), sends one email under a Message-ID derived from the group, and marks every row
``sent`` in the same commit, with the bytes kept once. One email lists at most
``MAX_COMBINED`` people (a renewal date shared by a whole company would otherwise make one
message of tens of thousands of lines and one claim of as many rows); a larger group goes out
as several emails of that many, each under a Message-ID of its own.

Grouping by the due instant is grouping by the day: every escalation is scheduled at its
program's send time on its day (``at_send_time``, then moved to a send day at the same wall
time), so one recipient's escalations of one day share their instant; those of an earlier day
caught up after downtime are another email each, as they would have been.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from calendars.notices import Notice

#: The jobs whose due rows of one recipient and day go out as one email.
COMBINED_JOBS = frozenset({"cmrt_escalation", "fcpa_escalation"})
#: The most people one combined email lists.
MAX_COMBINED = 500
#: Where each job's context keeps the day the escalated person's answer was due.
_DUE_KEY = {"cmrt_escalation": "response_due", "fcpa_escalation": "due"}
#: Where each job's context keeps the escalated person's name.
_NAME_KEY = {"cmrt_escalation": "supplier", "fcpa_escalation": "person"}

GroupKey = tuple[str, str, str, str]


def group_key(notice: Notice) -> GroupKey | None:
    """Return what ``notice`` is combined by, or None for a message that goes out alone."""
    if notice.job not in COMBINED_JOBS:
        return None
    return (notice.program, notice.job, notice.recipient, notice.due.isoformat())


def group_message_id(key: GroupKey, first: str, domain: str) -> str:
    """Return the Message-ID (without angle brackets, on ``domain``) of the combined email of
    ``key`` whose first row (lowest id) has the identity ``first``.

    The same rows claimed again after a crash are claimed in the same order, so the email sent
    again carries the same Message-ID (unless its first person answered in between); the
    emails of a group larger than ``MAX_COMBINED`` differ by their first row.
    """
    digest = hashlib.sha256("/".join([*key, first]).encode()).hexdigest()[:32]
    return f"{digest}.{key[0]}.combined@{domain}"


def combined_context(notices: Sequence[Notice], zone: ZoneInfo) -> dict[str, Any]:
    """Return the template context of one combined escalation: the first row's context (the
    program's fields) and ``escalated``, each person's context sorted by name, with
    ``overdue_days``: from the day their answer was due to the escalation's day in ``zone``.
    """
    if not notices:
        raise ValueError("a combined escalation needs at least one row")
    first = notices[0]
    name_key, due_key = _NAME_KEY[first.job], _DUE_KEY[first.job]
    people = []
    for notice in notices:
        sent_on = notice.due.astimezone(zone).date()
        owed = date.fromisoformat(str(notice.context[due_key]))
        people.append({**notice.context, "overdue_days": (sent_on - owed).days})
    people.sort(key=lambda p: (str(p[name_key]).casefold(), str(p[name_key])))
    return {**first.context, "escalated": people}
