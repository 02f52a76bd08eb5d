"""The compliance digest: what is due, overdue and failed, gathered when the digest is sent.

Counts are complete; each list shows its first ``LISTED`` lines (the dashboard and
``tickler status`` have the rest). Times are written by the templates' ``when`` filter, in the
deployment's zone with the zone named.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jobs.storage import Session, queries

WINDOW = timedelta(days=7)
LOOK_BACK = timedelta(days=365)  # an obligation owed for over a year is history, not news
LISTED = 25  # lines per section; the counts are always complete


def digest_context(
    session: Session, context: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Return the digest's template context at ``now``, or None when there is nothing to report."""
    rows = queries.digest_rows(session, now, WINDOW, listed=LISTED, look_back=LOOK_BACK)
    if not rows.due_count and not rows.failed_count and not rows.overdue_count:
        return None
    states: dict[str, dict[str, int]] = {}
    for row in rows.states:
        states.setdefault(row.program, {})[row.state] = row.n
    return {
        **context,
        "listed": LISTED,
        "due_count": rows.due_count,
        "due": [
            {
                "due": r.due_at.isoformat(),
                "program": r.program,
                "what": readable(r.job),
                "to": _whom(r.name, r.recipient),
            }
            for r in rows.due
        ],
        "overdue_count": rows.overdue_count,
        "overdue": [
            {
                "program": r.program,
                "person": f"{r.name} ({r.kind.value} {r.external_id})",
                "state": r.state,
                "due": r.due_at.isoformat(),
            }
            for r in rows.overdue
        ],
        "failed_count": rows.failed_count,
        "failed": [
            {
                "at": r.updated_at.isoformat(),
                "program": r.program,
                "what": readable(r.job),
                "to": _whom(r.name, r.recipient),
                "error": r.last_error or "no reply recorded",
            }
            for r in rows.failed
        ],
        "programs": [{"program": p, "states": states[p]} for p in sorted(states)],
    }


def readable(job: str) -> str:
    """Return a job's name as a reader says it: ``cmrt_follow_up`` is "CMRT follow up"."""
    words = [w.upper() if w in _ACRONYMS else w for w in job.split("_")]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


_ACRONYMS = frozenset({"cmrt", "fcpa", "sd"})


def _whom(name: str | None, address: str) -> str:
    return f"{name} <{address}>" if name else address
