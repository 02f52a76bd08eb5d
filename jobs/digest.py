"""The compliance digest: what is due, overdue and failed, gathered when the digest is sent."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from jobs.storage import Session, queries

WINDOW = timedelta(days=7)
LISTED = 25  # lines per section; the counts are always complete


def digest_context(
    session: Session, context: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Return the digest's template context at ``now``, or None when there is nothing to report."""
    rows = queries.digest_rows(session, now, WINDOW)
    due, failed, obligations = rows.due, rows.failed, rows.obligations
    overdue = [
        o
        for o in obligations
        if o.state in ("overdue", "escalated", "pending")
        and o.due_at is not None
        and o.due_at < now
        and o.due_at >= now - timedelta(days=365)
    ]
    if not due and not failed and not overdue:
        return None
    states: dict[str, Counter[str]] = {}
    for o in obligations:
        states.setdefault(o.program, Counter())[o.state] += 1
    return {
        **context,
        "due_count": len(due),
        "due": [
            {"due": d.due_at.isoformat(), "job": d.job, "recipient": d.recipient}
            for d in due[:LISTED]
        ],
        "overdue_count": len(overdue),
        "overdue": [
            {
                "program": o.program,
                "person": f"{o.kind.value}:{o.external_id}",
                "state": o.state,
                "due": o.due_at.date().isoformat(),
            }
            for o in overdue[:LISTED]
        ],
        "failed_count": len(failed),
        "failed": [
            {"job": f.job, "recipient": f.recipient, "error": f.last_error} for f in failed[:LISTED]
        ],
        "programs": [
            {"program": p, "states": dict(sorted(c.items()))} for p, c in sorted(states.items())
        ],
    }
