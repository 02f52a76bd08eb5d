"""Evidence: the exact bytes of every sent message, kept compressed beside its outbox row.

The delivery job records a sent message's bytes in the transaction that marks it ``sent``
(``record``), one executemany INSERT per group of outcomes, so keeping the evidence costs the
hot path one statement per commit and the compression, which runs on the writer thread.

A combined email (the escalations of one recipient and day) is kept once: the row it was sent
as holds the bytes, and each other row of the email has a row here with the same Message-ID
and no bytes (an empty ``body``), which ``load`` follows to the bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from jobs.storage.db import (
    EventLog,
    Obligation,
    ObligationKind,
    OutboxMessage,
    Person,
    SentMessage,
)

SENT = cast(Table, SentMessage.__table__)
# zlib's default level: about 4x on these messages for a fraction of a send's cost (level 9
# buys a few per cent more for several times the CPU).
LEVEL = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One sent message as the server accepted it."""

    outbox_id: int
    message_id: str
    sent_at: datetime
    code: int | None
    reply: str
    #: Empty: a row of a combined email, whose bytes the row of the same Message-ID keeps.
    data: bytes


def record(session: Session, sent: Sequence[Sent]) -> None:
    """Keep ``sent`` (the caller marked them ``sent`` in this transaction); never commits."""
    if not sent:
        return
    rows: list[dict[str, Any]] = [
        {
            "outbox_id": s.outbox_id,
            "message_id": s.message_id,
            "sent_at": s.sent_at,
            "code": s.code,
            "reply": s.reply,
            "size": len(s.data),
            "body": zlib.compress(s.data, LEVEL) if s.data else b"",
        }
        for s in sent
    ]
    session.execute(insert(SENT), rows)


def load(session: Session, outbox_id: int) -> Sent | None:
    """Return the evidence of message ``outbox_id``, its bytes decompressed, or None."""
    row = session.get(SentMessage, outbox_id)
    if row is None:
        return None
    if not row.body:  # a row of a combined email: the bytes are kept once, with another row
        kept = session.scalar(
            select(SENT.c.body)
            .where(SENT.c.message_id == row.message_id, SENT.c.body != b"")
            .limit(1)
        )
        if kept is None:
            return None
        row_body = kept
    else:
        row_body = row.body
    return Sent(
        outbox_id=row.outbox_id,
        message_id=row.message_id,
        sent_at=row.sent_at,
        code=row.code,
        reply=row.reply,
        data=zlib.decompress(row_body),
    )


def sent_as(session: Session, message_id: str, *, limit: int) -> list[int]:
    """Return the outbox ids of the rows sent as the email ``message_id`` (without angle
    brackets), lowest first, at most ``limit``: one row, or the rows of a combined email."""
    stmt = (
        select(SENT.c.outbox_id)
        .where(SENT.c.message_id == message_id)
        .order_by(SENT.c.outbox_id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def replies(session: Session, outbox_ids: Sequence[int]) -> dict[int, tuple[int | None, str]]:
    """Return the server's (code, reply) for each of ``outbox_ids`` that has evidence."""
    if not outbox_ids:
        return {}
    stmt = select(SENT.c.outbox_id, SENT.c.code, SENT.c.reply).where(
        SENT.c.outbox_id.in_(list(outbox_ids))
    )
    return {id_: (code, reply) for id_, code, reply in session.execute(stmt)}


# ---------------------------------------------------------------------------------------------
# The evidence export: one row per obligation, read in keyset batches (never a whole table).


@dataclass(frozen=True, slots=True, kw_only=True)
class SentRow:
    """One message of an obligation, as the export lists it."""

    id: int
    due_at: datetime
    sent_at: datetime | None
    job: str
    recipient: str
    message_id: str
    state: str
    code: int | None
    reply: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The fact that answered an obligation, from the event log."""

    event_id: int
    at: datetime
    received_at: datetime
    actor: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObligationRow:
    id: int
    program: str
    occurrence: str
    person: str
    name: str
    email: str
    kind: str
    state: str
    due_at: datetime | None
    messages: list[SentRow]
    response: Response | None


#: Where each planner keeps when the obligation was answered (``calendars.*_notices``).
ANSWERED_KEYS = ("responded_at", "acknowledged_at", "elected_at")


def obligations(
    session: Session,
    program: str,
    *,
    due_from: datetime | None = None,
    due_to: datetime | None = None,
    batch: int = 500,
) -> Iterator[ObligationRow]:
    """Yield ``program``'s obligations (retired ones left out) with their messages and answer.

    ``due_from``/``due_to`` (exclusive) narrow by due instant. Batches of ``batch`` rows by id:
    four queries per batch, memory bounded by the batch whatever the table's size.
    """
    o = cast(Table, Obligation.__table__).c
    after = 0
    while True:
        stmt = (
            select(o.id, o.occurrence, o.person_id, o.kind, o.state, o.due_at, o.details)
            .where(o.program == program, o.state != "retired", o.id > after)
            .order_by(o.id)
            .limit(batch)
        )
        if due_from is not None:
            stmt = stmt.where(o.due_at >= due_from)
        if due_to is not None:
            stmt = stmt.where(o.due_at < due_to)
        rows = session.execute(stmt).all()
        if not rows:
            return
        after = rows[-1].id
        ids = sorted({r.person_id for r in rows})
        people = {
            p.id: p
            for p in session.execute(
                select(Person.id, Person.kind, Person.external_id, Person.name, Person.email).where(
                    Person.id.in_(ids)
                )
            )
        }
        sent = _messages(session, program, ids)
        facts = _facts(session, program, ids)
        for r in rows:
            person = people[r.person_id]
            details = dict(r.details or {})
            answered = next((details[k] for k in ANSWERED_KEYS if details.get(k)), None)
            yield ObligationRow(
                id=r.id,
                program=program,
                occurrence=r.occurrence,
                person=f"{person.kind}:{person.external_id}",
                name=person.name,
                email=person.email,
                kind=str(r.kind),
                state=r.state,
                due_at=r.due_at,
                messages=sent.get((r.person_id, r.occurrence), []),
                response=_answer(facts.get((r.person_id, str(r.kind)), []), answered),
            )


def _messages(
    session: Session, program: str, person_ids: list[int]
) -> dict[tuple[int, str], list[SentRow]]:
    c = cast(Table, OutboxMessage.__table__).c
    stmt = (
        select(
            c.id,
            c.person_id,
            c.occurrence,
            c.due_at,
            c.sent_at,
            c.job,
            c.recipient,
            c.message_id,
            c.state,
            c.last_code,
            c.last_error,
            SENT.c.code,
            SENT.c.reply,
        )
        .select_from(c.id.table.outerjoin(SENT, SENT.c.outbox_id == c.id))
        .where(c.program == program, c.person_id.in_(person_ids))
        .order_by(c.due_at, c.id)
    )
    out: dict[tuple[int, str], list[SentRow]] = {}
    for m in session.execute(stmt):
        if m.state not in ("sent", "failed"):
            continue  # never reached a server (yet): not evidence of anything asked
        reply = m.reply if m.reply is not None else (m.last_error or "")
        out.setdefault((m.person_id, m.occurrence), []).append(
            SentRow(
                id=m.id,
                due_at=m.due_at,
                sent_at=m.sent_at,
                job=m.job,
                recipient=m.recipient,
                message_id=m.message_id,
                state=str(m.state),
                code=m.code if m.code is not None else m.last_code,
                reply=reply,
            )
        )
    return out


def _facts(
    session: Session, program: str, person_ids: list[int]
) -> dict[tuple[int, str], list[Response]]:
    stmt = (
        select(EventLog)
        .where(
            EventLog.program == program,
            EventLog.person_id.in_(person_ids),
            EventLog.kind.in_([k.value for k in ObligationKind]),
        )
        .order_by(EventLog.at, EventLog.id)
    )
    out: dict[tuple[int, str], list[Response]] = {}
    for e in session.scalars(stmt):
        assert e.person_id is not None
        out.setdefault((e.person_id, e.kind), []).append(
            Response(
                event_id=e.id,
                at=e.at,
                received_at=e.received_at,
                actor=e.actor,
                payload=dict(e.payload),
            )
        )
    return out


def _answer(facts: list[Response], answered: str | None) -> Response | None:
    if answered is None:
        return None
    at = datetime.fromisoformat(answered)
    return next((f for f in facts if f.at == at), None)
