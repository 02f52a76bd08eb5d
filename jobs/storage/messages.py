"""Messages as an operator handles them: list, show, retry, cancel, resend.

Each action is a conditional UPDATE (or an INSERT) whose row count says whether the message
was in the state the action needs, plus an event-log row saying who did it: the audit trail
of a message is the event log's, like every other fact. Listing pages by keyset (``id >
after``, ``LIMIT``), so a page costs the same at the millionth message as at the first.
Every function runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    String,
    Table,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from calendars.notices import Notice
from jobs.storage.db import EventLog, EventSource, OutboxMessage, OutboxState, Person

OUTBOX = cast(Table, OutboxMessage.__table__)
_c = OUTBOX.c
#: How long a resend may wait for the delivery job before it has lost its purpose.
RESEND_EXPIRES = timedelta(days=7)


class MessageError(Exception):
    """An action the message's state does not allow (409) or an unknown message (404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What ``tickler messages list`` and ``GET /api/v1/messages`` narrow a listing by."""

    program: str | None = None
    person_id: int | None = None
    state: OutboxState | None = None
    job: str | None = None
    due_from: datetime | None = None
    due_to: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One outbox row as an operator sees it; ``person`` is the person's key, if any."""

    id: int
    identity: str
    message_id: str
    program: str
    occurrence: str
    person: str | None
    recipient: str
    job: str
    step: str
    state: str
    due_at: datetime
    expires_at: datetime | None
    attempts: int
    last_code: int | None
    last_error: str | None
    sent_at: datetime | None
    resend_of: int | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name in self.__slots__
            if (value := getattr(self, name)) is not None or name in _NULLABLE
        }


_NULLABLE = {"person", "expires_at", "last_code", "last_error", "sent_at", "resend_of"}
_FIELDS = [
    _c.id,
    _c.identity,
    _c.message_id,
    _c.program,
    _c.occurrence,
    (type_coerce(Person.kind, String()) + ":" + Person.external_id).label("person"),
    _c.recipient,
    _c.job,
    _c.step,
    _c.state,
    _c.due_at,
    _c.expires_at,
    _c.attempts,
    _c.last_code,
    _c.last_error,
    _c.sent_at,
    _c.resend_of,
    _c.created_at,
    _c.updated_at,
]


def _select() -> Select[Any]:
    return select(*_FIELDS).select_from(OUTBOX.outerjoin(Person, Person.id == _c.person_id))


def _message(row: Any) -> Message:
    values = dict(row._mapping)
    values["state"] = str(values["state"])
    return Message(**values)


def page(session: Session, filters: Filters, *, after: int = 0, limit: int = 50) -> list[Message]:
    """Return up to ``limit`` messages matching ``filters`` with an id above ``after``, by id."""
    stmt = _select().where(_c.id > after).order_by(_c.id).limit(limit)
    if filters.program is not None:
        stmt = stmt.where(_c.program == filters.program)
    if filters.person_id is not None:
        stmt = stmt.where(_c.person_id == filters.person_id)
    if filters.state is not None:
        stmt = stmt.where(_c.state == filters.state)
    if filters.job is not None:
        stmt = stmt.where(_c.job == filters.job)
    if filters.due_from is not None:
        stmt = stmt.where(_c.due_at >= filters.due_from)
    if filters.due_to is not None:
        stmt = stmt.where(_c.due_at < filters.due_to)
    return [_message(row) for row in session.execute(stmt)]


def troubled(
    session: Session,
    *,
    retrying: bool,
    now: datetime,
    program: str | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> list[Message]:
    """Return messages that went wrong, newest due first, keyset-paged by ``(due_at, id)``.

    Failed ones (a 5xx, or attempts used up), or with ``retrying`` the pending ones a
    temporary failure sent back to wait for another attempt. Both walk the (state, due_at)
    index: a retrying message was tried, so it fell due at or before ``now``, and the pending
    rows due by then are the few the delivery job has not finished, not the million ahead.
    ``before`` is the last row of the previous page.
    """
    where: ColumnElement[bool] = _c.state == OutboxState.FAILED
    if retrying:
        where = (_c.state == OutboxState.PENDING) & (_c.due_at <= now) & (_c.attempts > 0)
    stmt = _select().where(where).order_by(_c.due_at.desc(), _c.id.desc()).limit(limit)
    if program is not None:
        stmt = stmt.where(_c.program == program)
    if before is not None:
        due, id_ = before
        stmt = stmt.where((_c.due_at < due) | ((_c.due_at == due) & (_c.id < id_)))
    return [_message(row) for row in session.execute(stmt)]


def find(session: Session, ref: str | int) -> Message | None:
    """Return the message whose id, identity or Message-ID is ``ref`` (``<…>`` allowed)."""
    if isinstance(ref, int) or ref.isdigit():
        where = _c.id == int(ref)
    else:
        text = ref.strip().removeprefix("<").removesuffix(">")
        where = (_c.identity == text) | (_c.message_id == text)
    row = session.execute(_select().where(where)).first()
    return None if row is None else _message(row)


def latest(session: Session, person_id: int, *, limit: int) -> list[Message]:
    """Return the ``limit`` newest messages of ``person_id`` (by id, newest first)."""
    stmt = _select().where(_c.person_id == person_id).order_by(_c.id.desc()).limit(limit)
    return [_message(row) for row in session.execute(stmt)]


def by_ids(session: Session, ids: Sequence[int]) -> list[Message]:
    """Return the messages ``ids`` (those that exist), by id."""
    stmt = _select().where(_c.id.in_(list(ids))).order_by(_c.id)
    return [_message(row) for row in session.execute(stmt)]


def resends(session: Session, id: int) -> list[int]:
    """Return the ids of the resends of message ``id``, oldest first."""
    return list(session.scalars(select(_c.id).where(_c.resend_of == id).order_by(_c.id)))


def events(session: Session, message: Message) -> list[EventLog]:
    """Return the event-log rows about ``message`` (operators' actions), oldest first."""
    stmt = (
        select(EventLog)
        .where(EventLog.kind.in_(list(ACTIONS.values())), EventLog.program == message.program)
        .order_by(EventLog.id)
    )
    if message.person is not None:
        stmt = stmt.where(EventLog.person_id == _person_id(session, message.id))
    return [e for e in session.scalars(stmt) if e.payload.get("message") == message.identity]


ACTIONS = {"retry": "message_retried", "cancel": "message_cancelled", "resend": "message_resent"}


def retry(session: Session, ref: str, *, actor: str, source: EventSource, now: datetime) -> Message:
    """Send a failed message again: pending at once, its attempts counted afresh.

    A message of the person's own goes to their current address: a 550 is often a stale
    address, and an operator corrects the address before retrying (planning re-addresses the
    pending rows the same way).
    """
    message = _require(session, ref)
    if message.expires_at is not None and message.expires_at <= now:
        raise MessageError(
            409,
            f"message {message.id} expired {message.expires_at.isoformat()}: a retry would be "
            "skipped; resend it instead once it was sent, or let the plan send what is owed",
        )
    stmt = (
        update(OUTBOX)
        .where(_c.id == message.id, _c.state == OutboxState.FAILED)
        .values(
            state=OutboxState.PENDING,
            recipient=_current_recipient(session, message),
            attempts=0,
            next_attempt_at=now,
            last_error=f"retry by {actor}",
            updated_at=now,
        )
    )
    _transition(session, stmt, message, "failed", "retry")
    _log(session, "retry", message, actor, source, now, {"was": message.state})
    return _require(session, str(message.id))


def cancel(
    session: Session,
    ref: str,
    *,
    actor: str,
    source: EventSource,
    now: datetime,
    reason: str = "",
) -> Message:
    """Cancel a pending message (a claimed one may be on the wire already: refused)."""
    message = _require(session, ref)
    why = f"cancelled by {actor}" + (f": {reason}" if reason else "")
    stmt = (
        update(OUTBOX)
        .where(_c.id == message.id, _c.state == OutboxState.PENDING)
        .values(state=OutboxState.CANCELLED, last_error=why, updated_at=now)
    )
    _transition(session, stmt, message, "pending", "cancel")
    _log(session, "cancel", message, actor, source, now, {"reason": reason} if reason else {})
    return _require(session, str(message.id))


def resend(
    session: Session, ref: str, *, actor: str, source: EventSource, now: datetime
) -> Message:
    """Queue a new message with a new identity and Message-ID, repeating a sent one.

    It goes to the person's current address (the original's, when it went to an internal
    address), due now, and names the original in ``resend_of``. Planning leaves it alone.
    """
    message = _require(session, ref)
    if message.state != OutboxState.SENT:
        raise MessageError(
            409, f"message {message.id} is {message.state}: only a sent message is resent"
        )
    row = session.execute(select(OUTBOX).where(_c.id == message.id)).one()._mapping
    count = 1 + len(resends(session, message.id))
    notice = Notice(
        program=message.program,
        occurrence=message.occurrence,
        person_id=row["person_id"],
        recipient_key=_recipient_key(message),
        recipient=_current_recipient(session, message),
        job=message.job,
        step=f"{message.step}+resend-{count}",
        template=row["template"],
        context=row["context"],
        due=now,
        expires=now + RESEND_EXPIRES,
        domain=message.message_id.rpartition("@")[2],  # the original's
    )
    new_id = session.execute(
        insert(OUTBOX)
        .values(
            identity=notice.identity,
            message_id=notice.message_id,
            program=notice.program,
            occurrence=notice.occurrence,
            person_id=notice.person_id,
            recipient=notice.recipient,
            job=notice.job,
            step=notice.step,
            template=notice.template,
            context=dict(notice.context),
            due_at=notice.due,
            expires_at=notice.expires,
            state=OutboxState.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            resend_of=message.id,
        )
        .returning(_c.id)
    ).scalar_one()
    extra = {"resend": notice.identity, "resend_message_id": notice.message_id}
    _log(session, "resend", message, actor, source, now, extra)
    return _require(session, str(new_id))


def _recipient_key(message: Message) -> str:
    """Return the recipient part of the identity ("program/occurrence/RECIPIENT/step")."""
    head = len(message.program) + len(message.occurrence) + 2
    return message.identity[head : -len(message.step) - 1]


def to_person(message: Message) -> bool:
    """Tell whether ``message`` is addressed to its person (not, say, an escalation about
    them to their internal owner): their address is the one it goes to."""
    return message.person is not None and _recipient_key(message) == message.person


def _current_recipient(session: Session, message: Message) -> str:
    """Return the address ``message`` goes to now: the person's current one when it is the
    person's own message, else (an escalation to their internal owner) the one it had."""
    if not to_person(message):
        return message.recipient
    current = session.scalar(
        select(Person.email)
        .join(OUTBOX, OUTBOX.c.person_id == Person.id)
        .where(_c.id == message.id)
    )
    return current or message.recipient


def _require(session: Session, ref: str) -> Message:
    message = find(session, ref)
    if message is None:
        raise MessageError(404, f"no message {ref!r} (an id, an identity or a Message-ID)")
    return message


def _transition(session: Session, stmt: Any, message: Message, needs: str, action: str) -> None:
    result = cast("CursorResult[Any]", session.execute(stmt))
    if result.rowcount != 1:
        # The state may have changed since it was read: say what it is now.
        state = session.scalar(select(_c.state).where(_c.id == message.id))
        raise MessageError(
            409, f"message {message.id} is {state}: only a {needs} message can {action}"
        )


def _person_id(session: Session, id: int) -> int | None:
    return session.scalar(select(_c.person_id).where(_c.id == id))


def _log(
    session: Session,
    action: str,
    message: Message,
    actor: str,
    source: EventSource,
    now: datetime,
    extra: dict[str, Any],
) -> None:
    session.add(
        EventLog(
            at=now,
            received_at=now,
            actor=actor,
            source=source,
            kind=ACTIONS[action],
            program=message.program,
            person_id=_person_id(session, message.id),
            payload={"message": message.identity, "message_id": message.message_id, **extra},
        )
    )
    session.flush()
