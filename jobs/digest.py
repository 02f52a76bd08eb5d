"""The compliance digest: what is due, overdue and failed, gathered when the digest is sent."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.storage.db import Obligation, OutboxMessage, OutboxState, Person

WINDOW = timedelta(days=7)
LISTED = 25  # lines per section; the counts are always complete


def digest_context(
    session: Session, context: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Return the digest's template context at ``now``, or None when there is nothing to report."""
    due = session.execute(
        select(OutboxMessage.due_at, OutboxMessage.job, OutboxMessage.recipient)
        .where(
            OutboxMessage.state == OutboxState.PENDING,
            OutboxMessage.due_at >= now,
            OutboxMessage.due_at < now + WINDOW,
            OutboxMessage.job != "digest",
        )
        .order_by(OutboxMessage.due_at)
    ).all()
    failed = session.execute(
        select(OutboxMessage.job, OutboxMessage.recipient, OutboxMessage.last_error)
        .where(OutboxMessage.state == OutboxState.FAILED, OutboxMessage.updated_at >= now - WINDOW)
        .order_by(OutboxMessage.updated_at)
    ).all()
    obligations = session.execute(
        select(
            Obligation.program, Obligation.state, Obligation.due_at, Person.kind, Person.external_id
        ).join(Person, Person.id == Obligation.person_id)
    ).all()
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
