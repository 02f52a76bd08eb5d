"""Why a cancelled message was cancelled, in the words a compliance officer reads.

An outbox row is cancelled in one of two ways, and its ``last_error`` tells which:

- an operator cancelled it (``messages.cancel``): ``cancelled by user:alice: the reason``;
- the planner withdrew it (``outbox.UNPLANNED`` before any attempt, ``outbox.withdrawn``): a
  forecast the facts no longer call for, never a message.

The planner does not store *which* fact made it withdraw a row: it cancels whatever a new plan
no longer holds. What the database does hold is the obligation the row served (answered, and
when) and the facts of its person recorded up to the withdrawal (``updated_at``). So ``why``
names the answer when the obligation was answered by then, else the latest fact of that
person in that program recorded by then, else only that the planner withdrew it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select, tuple_
from sqlalchemy.orm import Session

from config.facts import FactKind, fact_words
from jobs.storage.db import EventLog, Obligation, OutboxMessage, OutboxState
from jobs.storage.messages import Message
from jobs.storage.outbox import UNPLANNED

_c = cast(Table, OutboxMessage.__table__).c
#: The facts of one person and program read to explain a withdrawal (newest first).
FACTS_READ = 50
#: An obligation's details that say it was answered, and how a person says it.
ANSWERED = {
    "acknowledged_at": "acknowledged",
    "responded_at": "CMRT received",
    "elected_at": "elected",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """A fact of the message's person and program, as the event log has it."""

    kind: str
    at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled:
    """Why a message is cancelled; ``withdrawn``: by the planner before any attempt to send it
    (the condition of ``outbox.withdrawn``), a forecast rather than a cancelled message."""

    withdrawn: bool
    why: str


def why(
    message: Message,
    *,
    answered: Mapping[str, Any] | None,
    facts: Sequence[Fact],
    zone: ZoneInfo,
) -> Cancelled | None:
    """Say why ``message`` is cancelled (None: it is not), days in ``zone``.

    ``answered`` is the details of the obligation the message served (None: it served none),
    ``facts`` the facts of its person in its program, in any order.
    """
    if message.state != OutboxState.CANCELLED:
        return None
    if message.last_error != UNPLANNED:
        return Cancelled(withdrawn=False, why=message.last_error or "cancelled")
    withdrawn = message.attempts == 0
    until, on = message.updated_at, _day(message.updated_at, zone)
    # Tried and then no longer owed (a 4xx, then the answer came): a message, cancelled.
    tried = "" if withdrawn else f" (cancelled by the planner on {on} after {_tries(message)})"
    for key, word in ANSWERED.items():
        value = (answered or {}).get(key)
        if isinstance(value, str) and (at := datetime.fromisoformat(value)) <= until:
            return Cancelled(
                withdrawn=withdrawn, why=f"no longer needed: {word} on {_day(at, zone)}{tried}"
            )
    by = f"withdrawn by the planner on {on}" if withdrawn else tried[2:-1]
    before = [f for f in facts if f.received_at <= until]
    if before:
        latest = max(before, key=lambda f: f.received_at)
        what = fact_words(latest.kind) or latest.kind.replace("_", " ")
        return Cancelled(
            withdrawn=withdrawn,
            why=f"{by}, after the {what} recorded on {_day(latest.at, zone)}",
        )
    return Cancelled(withdrawn=withdrawn, why=f"{by}: the facts no longer call for it")


def _tries(message: Message) -> str:
    return f"{message.attempts} attempt{'s' if message.attempts != 1 else ''} to send it"


def _day(at: datetime, zone: ZoneInfo) -> str:
    return f"{at.astimezone(zone):%Y-%m-%d}"


def reasons(session: Session, listed: Sequence[Message], zone: ZoneInfo) -> dict[int, Cancelled]:
    """Return why each cancelled message of ``listed`` is, by id (a page: a few queries)."""
    cancelled = [m for m in listed if m.state == OutboxState.CANCELLED]
    planners = [m for m in cancelled if m.last_error == UNPLANNED]
    person_of: dict[int, int] = {}
    if planners:
        rows = session.execute(
            select(_c.id, _c.person_id).where(
                _c.id.in_([m.id for m in planners]), _c.person_id.is_not(None)
            )
        )
        person_of = {id_: int(person_id) for id_, person_id in rows}
    keys = {(m.program, m.occurrence, person_of[m.id]) for m in planners if m.id in person_of}
    answered: dict[tuple[str, str, int], dict[str, Any]] = {}
    if keys:
        o = Obligation
        for program, occurrence, person_id, details in session.execute(
            select(o.program, o.occurrence, o.person_id, o.details).where(
                tuple_(o.program, o.occurrence, o.person_id).in_(sorted(keys))
            )
        ):
            answered[(program, occurrence, person_id)] = dict(details or {})
    until: dict[tuple[str, int], datetime] = {}
    for m in planners:
        if m.id in person_of:
            pair = (m.program, person_of[m.id])
            until[pair] = max(until.get(pair, m.updated_at), m.updated_at)
    facts = {pair: _facts(session, *pair, last) for pair, last in sorted(until.items())}
    out = {}
    for m in cancelled:
        person = person_of.get(m.id)
        found = why(
            m,
            answered=answered.get((m.program, m.occurrence, person))
            if person is not None
            else None,
            facts=facts.get((m.program, person), []) if person is not None else [],
            zone=zone,
        )
        if found is not None:
            out[m.id] = found
    return out


def _facts(session: Session, program: str, person_id: int, until: datetime) -> list[Fact]:
    """Return the latest facts of ``person_id`` in ``program`` recorded by ``until`` (at most
    ``FACTS_READ``)."""
    e = EventLog
    rows = session.execute(
        select(e.kind, e.at, e.received_at)
        .where(
            e.person_id == person_id,
            e.program == program,
            e.kind.in_([k.value for k in FactKind]),
            e.received_at <= until,
        )
        .order_by(e.id.desc())
        .limit(FACTS_READ)
    )
    return [Fact(kind=kind, at=at, received_at=received) for kind, at, received in rows]
