"""Metrics in the Prometheus text format: outbox state from the database, HTTP counters in memory.

Outbox figures are read from the database at each scrape, so every replica reports the same
totals (sum them in a query with care, or scrape one). Send lateness is a histogram of
``sent_at - due_at`` over every message ever sent: sent rows never change, so its buckets only
grow, as a Prometheus histogram must.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, extract, func, select
from sqlalchemy.orm import Session

from jobs.storage.db import Obligation, OutboxMessage, OutboxState, dialect_name

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENESS_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)


@dataclass(slots=True)
class Counters:
    """Process-local counters, incremented by the HTTP handlers."""

    feed_requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status)
    feed_renders: Counter[str] = field(default_factory=Counter)  # kind
    api_requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (endpoint, status)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxFigures:
    by_state: Mapping[str, int]
    obligations: Mapping[tuple[str, str], int]  # (program, state)
    due_backlog: int
    oldest_due_seconds: float
    lateness_buckets: tuple[int, ...]  # cumulative, one per LATENESS_BUCKETS bound
    lateness_count: int
    lateness_sum: float


def outbox_figures(session: Session, now: datetime) -> OutboxFigures:
    """Read the outbox and obligation figures at ``now``."""
    c = OutboxMessage
    by_state = {
        str(state): int(n)
        for state, n in session.execute(select(c.state, func.count()).group_by(c.state))
    }
    backlog, oldest = session.execute(
        select(func.count(), func.min(c.due_at)).where(
            c.state == OutboxState.PENDING, c.due_at <= now
        )
    ).one()
    lateness = _seconds_between(session, c.sent_at, c.due_at)
    sent = c.state == OutboxState.SENT
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(lateness), 0.0),
            *(
                func.coalesce(func.sum(case((lateness <= b, 1), else_=0)), 0)
                for b in LATENESS_BUCKETS
            ),
        ).where(sent, c.sent_at.is_not(None))
    ).one()
    obligations = {
        (program, state): int(n)
        for program, state, n in session.execute(
            select(Obligation.program, Obligation.state, func.count()).group_by(
                Obligation.program, Obligation.state
            )
        )
    }
    return OutboxFigures(
        by_state={str(s): by_state.get(str(s), 0) for s in OutboxState},
        obligations=obligations,
        due_backlog=int(backlog),
        oldest_due_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        lateness_buckets=tuple(int(n) for n in row[2:]),
        lateness_count=int(row[0]),
        lateness_sum=float(row[1]),
    )


def _seconds_between(session: Session, later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect_name(session) == "sqlite":
        # UtcDateTime is stored as ISO text there; julianday() reads it.
        days = func.julianday(later) - func.julianday(earlier)
        return cast(days * 86400.0, Float)
    return cast(extract("epoch", later - earlier), Float)


def render(
    figures: OutboxFigures,
    counters: Counters,
    *,
    scheduler_running: bool,
    ticks: int,
) -> str:
    """Return the exposition text (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    metric(
        "tickler_outbox_messages",
        "gauge",
        "Messages in the outbox, by state.",
        ((_labels(state=s), n) for s, n in sorted(figures.by_state.items())),
    )
    metric(
        "tickler_outbox_due_backlog",
        "gauge",
        "Pending messages whose due time has passed.",
        [("", figures.due_backlog)],
    )
    metric(
        "tickler_outbox_oldest_due_seconds",
        "gauge",
        "How long the oldest due pending message has waited.",
        [("", figures.oldest_due_seconds)],
    )
    name = "tickler_send_lateness_seconds"
    out.append(f"# HELP {name} Time from a message's due time to its acceptance by the server.")
    out.append(f"# TYPE {name} histogram")
    for bound, n in zip(LATENESS_BUCKETS, figures.lateness_buckets, strict=True):
        out.append(f"{name}_bucket{_labels(le=_number(bound))} {n}")
    out.append(f'{name}_bucket{{le="+Inf"}} {figures.lateness_count}')
    out.append(f"{name}_sum {_number(figures.lateness_sum)}")
    out.append(f"{name}_count {figures.lateness_count}")
    metric(
        "tickler_obligations",
        "gauge",
        "Obligations (responses, elections, acknowledgments) by program and state.",
        ((_labels(program=p, state=s), n) for (p, s), n in sorted(figures.obligations.items())),
    )
    metric(
        "tickler_feed_requests_total",
        "counter",
        "Feed requests by feed kind and status (304: not modified).",
        (
            (_labels(kind=kind, code=str(code)), n)
            for (kind, code), n in sorted(counters.feed_requests.items())
        ),
    )
    metric(
        "tickler_feed_renders_total",
        "counter",
        "Feeds rendered (cache misses), by feed kind.",
        ((_labels(kind=kind), n) for kind, n in sorted(counters.feed_renders.items())),
    )
    metric(
        "tickler_api_requests_total",
        "counter",
        "JSON API calls by endpoint and status.",
        (
            (_labels(endpoint=endpoint, code=str(code)), n)
            for (endpoint, code), n in sorted(counters.api_requests.items())
        ),
    )
    metric(
        "tickler_scheduler_running",
        "gauge",
        "1 while the scheduler runs in this process.",
        [("", 1 if scheduler_running else 0)],
    )
    metric("tickler_scheduler_ticks_total", "counter", "Scheduler ticks.", [("", ticks)])
    return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
