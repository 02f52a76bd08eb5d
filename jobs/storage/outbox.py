"""The outbox: every SQL statement about outgoing messages, and why each is safe to repeat.

A message is *planned* (``enqueue``) under a deterministic identity, "program/occurrence/
recipient/step", so planning the same thing twice, from a rerun, a restart or a second replica,
finds the row already there. A worker *claims* due rows (``claim_due``): a lease (owner, until)
written in a short transaction of its own. It then sends, and *finishes* the row with a
conditional UPDATE (``mark_sent`` and friends) whose row count says whether it still owned the
lease. A worker that died mid-send leaves a claimed row whose lease runs out; ``reap_leases``
returns it to pending, and the retry carries the same Message-ID, so the one unavoidable
duplicate (the SMTP server accepted the message, the process died before committing ``sent``)
can be recognised by the recipient's server.

Rules for callers:
- Every function runs in the caller's session and transaction and never commits: the caller
  commits (``with db.begin_write(factory) as session: ...``, which on SQLite also takes the
  write lock up front). Commit a claim before sending, and a ``sent`` mark soon after the
  server's 250: nothing is durable before the commit, and every accepted message not yet
  recorded is one a crash sends twice (the delivery job bounds how many may wait).
- ``now`` is always an argument (aware, any zone); nothing here reads the clock.
- On SQLite ``claim_due`` must open its transaction (it takes the write lock with BEGIN
  IMMEDIATE, since SQLAlchemy silently drops ``skip_locked`` there); SQLite means one replica.
  On PostgreSQL it holds ``CLAIM_LOCK`` until the commit: replicas' claims take turns.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from calendars.notices import Notice
from jobs.storage.db import OutboxMessage, OutboxState, begin_immediate, dialect_name

# Rows per INSERT / IN (...) list: far below SQLite's 32766 and PostgreSQL's 65535 bind
# parameters per statement, big enough that 20,000 messages take a few dozen round trips.
CHUNK = 500

OUTBOX = cast(Table, OutboxMessage.__table__)
_T = TypeVar("_T")
_c = OUTBOX.c


# A message is the core's ``Notice`` as it is: the outbox stores each of its fields in the
# column of the same name, except these two, ``recipient_key``, which is part of the stored
# ``identity`` (derived, like ``message_id``, and stored too), and ``domain``, the right-hand
# side of the stored ``message_id``. A new field of ``Notice`` needs its column and a
# migration, nothing here.
_COLUMNS = {"due": "due_at", "expires": "expires_at"}
_STORED = [
    (f.name, _COLUMNS.get(f.name, f.name))
    for f in fields(Notice)
    if f.init and f.name not in ("recipient_key", "domain")
]
_NAMES = [name for name, _ in _STORED]


@dataclass(frozen=True, slots=True)
class Lease:
    """One claim of a row: who holds it and when its lease runs out.

    The pair names the claim, not just the worker: a row reaped and claimed again by the same
    owner (a later batch of the same daemon) gets another ``until``, so an outcome of the
    earlier claim (a late release, a late mark) can never finish the later one, which is on
    its way to being sent.
    """

    owner: str
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedMessage:
    """A row this worker holds the lease on, detached from any session: the planned
    ``notice`` as it was stored, and the claim's own fields."""

    id: int
    notice: Notice
    attempts: int
    lease_owner: str
    lease_until: datetime

    @property
    def lease(self) -> Lease:
        return Lease(self.lease_owner, self.lease_until)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueReport:
    inserted: int
    updated: int
    unchanged: int


def enqueue(session: Session, planned: Iterable[Notice], now: datetime) -> EnqueueReport:
    """Insert the planned messages that are new; refresh the ones still pending.

    New identities are inserted with ``INSERT … ON CONFLICT (identity) DO NOTHING``, so two
    replicas planning at once both succeed and only one row exists. A row already there is
    updated only while it is ``pending`` and only if its schedule, content or address changed
    (an offer extension moves ``due_at``; an import that corrects a person's email re-addresses
    every message still pending for them, since planning addresses each notice to the
    person's current email; the row keeps the address it goes to, so a sent row keeps the
    address actually used); a row that is claimed, sent, failed, skipped or cancelled is
    history and is never touched: re-planning must not resend or resurrect anything. Those count
    as ``unchanged`` (so does a row another replica inserted a moment before this one).

    Except a *withdrawn forecast* (``withdrawn``): a row that planning itself cancelled
    (``UNPLANNED``) before any attempt to send it was never a message, only what an earlier
    plan expected; planned again (an election, then a withdrawal that puts the cutoff
    reminders back), it is pending again, as a single plan of the same facts would have it.

    Per chunk of ``CHUNK``: one SELECT of the rows already there, one executemany INSERT of the
    others, one executemany UPDATE of the changed ones. The steady state (everything planned
    before, nothing changed) is one SELECT per chunk.
    """
    _require_aware("now", now)
    messages = list(planned)
    repeated = [i for i, n in Counter(m.identity for m in messages).items() if n > 1]
    if repeated:
        raise ValueError(f"identities planned twice in one batch: {sorted(repeated)[:5]}")

    # No RETURNING on purpose: without it psycopg runs a real executemany (one short statement,
    # pipelined) instead of SQLAlchemy's multi-VALUES text with thousands of placeholders,
    # which psycopg re-parses on every execution (measured 3x slower for 20,000 rows).
    insert = sqlite_insert if dialect_name(session) == "sqlite" else postgresql_insert
    insert_new = insert(OUTBOX).on_conflict_do_nothing(index_elements=[_c.identity])
    inserted = updated = 0
    for chunk in _chunks(messages):
        found = {
            row.identity: row
            for row in session.execute(
                select(
                    _c.id,
                    _c.identity,
                    _c.state,
                    _c.due_at,
                    _c.expires_at,
                    _c.template,
                    _c.context,
                    _c.recipient,
                ).where(_c.identity.in_([m.identity for m in chunk]))
            )
        }
        new = [_row(m, now) for m in chunk if m.identity not in found]
        if new:
            inserted += _rowcount(session, insert_new, new)
        changed = [
            _change(row, m)
            for m in chunk
            if (row := found.get(m.identity)) is not None and row.state == OutboxState.PENDING
        ]
        updated += _refresh_pending(session, [c for c in changed if c is not None], now)
        again = [
            row.id
            for m in chunk
            if (row := found.get(m.identity)) is not None and row.state == OutboxState.CANCELLED
        ]
        updated += _replan_withdrawn(session, again, {m.identity: m for m in chunk}, now)
    return EnqueueReport(
        inserted=inserted, updated=updated, unchanged=len(messages) - inserted - updated
    )


def _row(message: Notice, now: datetime) -> dict[str, Any]:
    row = {column: getattr(message, name) for name, column in _STORED}
    return row | {
        "identity": message.identity,
        "message_id": message.message_id,
        "context": _json(message.context),
        "state": OutboxState.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _change(row: Row[*tuple[Any, ...]], message: Notice) -> dict[str, Any] | None:
    context = _json(message.context)
    planned = (message.due, message.expires, message.template, context, message.recipient)
    if (row.due_at, row.expires_at, row.template, row.context, row.recipient) == planned:
        return None
    return _bound(row.id, message)


def _bound(id_: int, message: Notice) -> dict[str, Any]:
    """Return the bound parameters that set row ``id_`` to ``message`` as planned."""
    return {
        "b_id": id_,
        "b_recipient": message.recipient,
        "b_due_at": message.due,
        "b_expires_at": message.expires,
        "b_template": message.template,
        "b_context": _json(message.context),
    }


#: Why planning cancels a pending message: its facts no longer call for it.
UNPLANNED = "no longer planned"


def withdrawn() -> ColumnElement[bool]:
    """Return the condition of a withdrawn forecast: a row planning cancelled (``UNPLANNED``)
    before any attempt to send it. Neither a message nor a cancelled one: what an earlier
    plan expected, which a plan made after the same facts would never have queued."""
    return and_(
        _c.state == OutboxState.CANCELLED,
        _c.attempts == 0,
        _c.last_error.is_not_distinct_from(UNPLANNED),
    )


def _replan_withdrawn(
    session: Session, ids: list[int], planned: Mapping[str, Notice], now: datetime
) -> int:
    """Make the withdrawn forecasts among ``ids`` pending again, as ``planned`` now has them."""
    if not ids:
        return 0
    rows = session.execute(select(_c.id, _c.identity).where(_c.id.in_(ids), withdrawn()))
    changes = [_bound(id_, planned[identity]) for id_, identity in rows]
    if not changes:
        return 0
    stmt = (
        update(OUTBOX)
        .where(_c.id == bindparam("b_id"), withdrawn())
        .values(
            **_as_planned(),
            state=OutboxState.PENDING,
            last_error=None,
            next_attempt_at=now,
            updated_at=now,
        )
    )
    return _rowcount(session, stmt, changes)


def _refresh_pending(session: Session, changes: list[dict[str, Any]], now: datetime) -> int:
    if not changes:
        return 0
    # state='pending' again in the UPDATE: a worker may have claimed the row since the SELECT
    # (PostgreSQL, READ COMMITTED); a claimed message goes out as it was claimed.
    stmt = (
        update(OUTBOX)
        .where(_c.id == bindparam("b_id"), _c.state == OutboxState.PENDING)
        .values(**_as_planned(), updated_at=now)
    )
    return _rowcount(session, stmt, changes)


def _as_planned() -> dict[str, Any]:
    """Return the SET of a row to the values ``_bound`` binds."""
    return {
        "due_at": bindparam("b_due_at"),
        "expires_at": bindparam("b_expires_at"),
        "template": bindparam("b_template"),
        "context": bindparam("b_context"),
        "recipient": bindparam("b_recipient"),
    }


def cancel_pending(session: Session, identities: Iterable[str], reason: str, now: datetime) -> int:
    """Cancel the pending messages among ``identities``; return how many were cancelled.

    Only ``pending`` rows: a claimed message may be on the wire already, and sent/failed/
    skipped ones are history. A job that must not send a claimed message after all (the
    supplier answered a second ago) re-checks its obligation and calls ``mark_skipped``.
    """
    return sum(cancel_pending_by_kind(session, identities, reason, now).values())


def cancel_pending_by_kind(
    session: Session, identities: Iterable[str], reason: str, now: datetime
) -> Counter[tuple[str, str]]:
    """``cancel_pending``, counting what was cancelled by (program, job): for ``/metrics``."""
    _require_aware("now", now)
    cancelled: Counter[tuple[str, str]] = Counter()
    for chunk in _chunks(sorted(set(identities))):
        stmt = (
            update(OUTBOX)
            .where(_c.identity.in_(chunk), _c.state == OutboxState.PENDING)
            .values(state=OutboxState.CANCELLED, last_error=reason, updated_at=now)
            .returning(_c.program, _c.job)
        )
        cancelled.update((str(program), str(job)) for program, job in session.execute(stmt))
    return cancelled


def pending_owners(
    session: Session, programs: AbstractSet[str]
) -> dict[str, tuple[str, int | None]]:
    """Return the (program, person id) of every pending message of ``programs``, by identity.

    Planning cancels what it no longer plans, except the messages of a program or a person it
    had to leave out: those are what it cannot decide about.
    """
    rows = session.execute(
        select(_c.identity, _c.program, _c.person_id).where(
            _c.state == OutboxState.PENDING,
            _c.program.in_(list(programs)),
            # An operator's resend is no plan's to cancel (``jobs.storage.messages``).
            _c.resend_of.is_(None),
        )
    )
    return {identity: (program, person_id) for identity, program, person_id in rows}


def pending_of(
    session: Session, programs: AbstractSet[str], person_ids: Iterable[int] | None
) -> dict[str, tuple[str, int | None]]:
    """``pending_owners`` for the people ``person_ids`` only, or (``None``) for the messages
    that belong to no person (milestones, the digest): what one part of a plan decides."""
    if person_ids is None:
        # Only person_id in the WHERE: SQLite would otherwise walk every pending row through
        # the (state, due_at) index (1.7 s at 240,000); the rows of no person are a handful.
        found = session.execute(
            select(_c.identity, _c.program, _c.state, _c.resend_of).where(_c.person_id.is_(None))
        )
        return {
            identity: (program, None)
            for identity, program, state, resend_of in found
            if state == OutboxState.PENDING and program in programs and resend_of is None
        }
    rows = session.execute(
        select(_c.identity, _c.program, _c.person_id).where(
            _c.state == OutboxState.PENDING,
            _c.program.in_(list(programs)),
            _c.person_id.in_(list(person_ids)),
            _c.resend_of.is_(None),  # see pending_owners
        )
    )
    return {identity: (program, person_id) for identity, program, person_id in rows}


def people_due_between(session: Session, after: datetime, until: datetime) -> set[int]:
    """Return the people with a message (in any state) due in (after, until]: the clock has
    crossed one of their instants, so their obligations may have moved (overdue, escalated)."""
    rows = session.scalars(
        select(_c.person_id)
        .where(
            _c.state.in_(list(OutboxState)),  # the (state, due_at) index, one range per state
            _c.due_at > after,
            _c.due_at <= until,
            _c.person_id.is_not(None),
        )
        .distinct()
    )
    return {int(p) for p in rows}


def cancel_pending_except(
    session: Session,
    program: str,
    occurrence: str,
    job: str,
    keep: AbstractSet[str],
    now: datetime,
    *,
    reason: str = UNPLANNED,
) -> int:
    """Cancel the pending messages of (program, occurrence, job) whose identity is not in ``keep``.

    The planner's way to say "this is now the whole plan": a follow-up no longer owed (the
    supplier responded, the employee left) disappears from ``keep`` and is cancelled. The
    difference is computed in Python rather than as ``NOT IN (keep)`` because ``keep`` can
    hold more identities than a statement takes bind parameters.
    """
    _require_aware("now", now)
    pending = session.scalars(
        select(_c.identity).where(
            _c.program == program,
            _c.occurrence == occurrence,
            _c.job == job,
            _c.state == OutboxState.PENDING,
        )
    )
    return cancel_pending(session, set(pending) - keep, reason, now)


# pg_advisory_xact_lock key every claim holds on PostgreSQL ("claim" in ASCII): ``claim_due``.
CLAIM_LOCK = 0x636C61696D


def claim_due(
    session: Session,
    *,
    now: datetime,
    owner: str,
    lease: timedelta,
    limit: int,
    combine: AbstractSet[str] = frozenset(),
    combine_max: int = 500,
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due messages to ``owner``; return them, earliest due first.

    Due means pending with ``due_at <= now`` and ``next_attempt_at <= now`` (retry backoff).
    Leases that ran out by ``now`` are reaped first (``reap_leases``), in the same transaction.
    ``attempts`` counts claims, so it also counts the attempts of workers that died.

    Claims take turns, on both databases, so that a combined group (below) is claimed whole by
    one of them. SQLite: BEGIN IMMEDIATE first (its write lock; SQLAlchemy would drop
    ``skip_locked`` silently). PostgreSQL: the transaction first waits for ``CLAIM_LOCK``, an
    advisory lock held until its commit, so each claim's statements see every earlier claim
    committed. Row locks alone did not do it: replicas selecting at once with ``SKIP LOCKED``
    each took some rows of the same group and each brought in the rest it could, two or three
    partial emails, and their extensions, waiting on each other's rows in no order, hit
    "deadlock detected" (4 replicas on interleaved groups: every run, and a split in 3 runs of
    10). Taking turns costs little while sending is the bound: a claim is a few statements
    (20-40 ms for 200 rows) and the sending happens after its commit. Three replicas now claim
    about as fast as one, 3,000-4,700 rows a second, more than the 2,500 they can send at best
    (``bench.bench_claims``, bench/README.md).

    ``FOR UPDATE SKIP LOCKED`` stays, on the due rows and on a group's mates: a claim never
    waits on a row lock, so it never holds the other replicas' turn while a plan or an
    operator's action changes a pending row, and can never be part of a deadlock (it waits only
    for the claim lock, whose holder waits for nothing). No other claim holds row locks on
    pending rows while one runs, so what it skips is a row someone else is changing right now
    (cancelling it, re-planning it), left for the next claim; that is the one way a group can
    still go out in two emails. On both, the UPDATE re-checks ``state='pending'``: only rows it
    actually changed are returned.

    ``combine`` names the jobs whose rows go out as one email per (program, job, recipient,
    due instant) (``calendars.escalations``): a claimed row of one of them brings the due
    pending rows of its group into the same claim, beyond ``limit``, up to ``combine_max`` rows
    of the group in all (the lowest ids first): one email lists that many at most, and the
    rest of a larger group goes in the next claim's email.

    The caller commits at once and only then sends; until that commit the lease protects
    nothing, and on SQLite every other writer is waiting.
    """
    _require_aware("now", now)
    if lease <= timedelta(0):
        raise ValueError(f"lease must be positive, got {lease}")
    if limit <= 0:
        return []
    sqlite = dialect_name(session) == "sqlite"
    if sqlite:
        begin_immediate(session)
    else:
        session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({CLAIM_LOCK})")
    reap_leases(session, now)
    due = (
        select(_c.id)
        .where(_c.state == OutboxState.PENDING, _c.due_at <= now, _c.next_attempt_at <= now)
        .order_by(_c.due_at, _c.id)
        .limit(limit)
    )
    if not sqlite:
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        return []
    # One claim: the same owner and lease instant on every row it takes (``Lease``).
    take = update(OUTBOX).values(
        state=OutboxState.CLAIMED,
        lease_owner=owner,
        lease_until=now + lease,
        attempts=_c.attempts + 1,
        updated_at=now,
    )
    stmt = take.where(_c.id.in_(ids), _c.state == OutboxState.PENDING)
    claimed = [_claimed(row) for row in session.execute(stmt.returning(*_CLAIMED_COLUMNS))]
    groups = Counter(
        (m.notice.program, m.notice.job, m.notice.recipient, m.notice.due)
        for m in claimed
        if m.notice.job in combine
    )
    for (program, job, recipient, due_at), taken in sorted(groups.items()):
        if taken >= combine_max:
            continue
        mates = (
            select(_c.id)
            .where(
                _c.program == program,
                _c.job == job,
                _c.recipient == recipient,
                _c.due_at == due_at,
                _c.state == OutboxState.PENDING,
                _c.next_attempt_at <= now,
            )
            .order_by(_c.id)
            .limit(combine_max - taken)
        )
        if not sqlite:
            mates = mates.with_for_update(skip_locked=True)  # never wait: see above
        # The ids first, as for the due rows: inside the UPDATE, PostgreSQL may rescan a
        # locking subquery once per row, and each rescan skips the rows just updated and
        # reads on past its LIMIT (a group of 130 with 50 an email was claimed whole).
        stmt = take.where(_c.id.in_(list(session.scalars(mates))), _c.state == OutboxState.PENDING)
        claimed += [_claimed(row) for row in session.execute(stmt.returning(*_CLAIMED_COLUMNS))]
    claimed.sort(key=lambda m: (m.notice.due, m.id))  # RETURNING has no order
    return claimed


def _claimed(row: Row[*tuple[Any, ...]]) -> ClaimedMessage:
    # By position (see _CLAIMED_COLUMNS): this runs for every message delivered.
    id, identity, message_id, *stored, attempts, lease_owner, lease_until = row
    values = dict(zip(_NAMES, stored, strict=True))
    # identity is "program/occurrence/recipient_key/step" and the other three are columns of
    # their own, so the key is what lies between them, whatever characters it holds.
    start = len(values["program"]) + len(values["occurrence"]) + 2
    # The Message-ID keeps the domain it was planned on (a row planned before the domain
    # setting changed goes out as planned: its retries must repeat the same Message-ID).
    domain = message_id.rpartition("@")[2]
    key = identity[start : -len(values["step"]) - 1]
    notice = Notice(recipient_key=key, domain=domain, **values)
    if notice.identity != identity or notice.message_id != message_id:
        raise ValueError(f"outbox row {id}: identity {identity!r} is not program/occ/key/step")
    return ClaimedMessage(
        id=id,
        notice=notice,
        attempts=attempts,
        lease_owner=lease_owner,
        lease_until=lease_until,
    )


_CLAIMED_COLUMNS = [
    _c.id,
    _c.identity,
    _c.message_id,
    *(_c[column] for _, column in _STORED),
    _c.attempts,
    _c.lease_owner,
    _c.lease_until,
]


def mark_sent(session: Session, id: int, lease: Lease, now: datetime) -> bool:
    """Record that the SMTP server accepted message ``id``; False if ``lease`` was lost.

    False means the lease expired and was reaped (and maybe claimed by another worker), so the
    message may go out twice: log it. Commit this soon after the server's 250.
    """
    return id in mark_sent_many(session, [id], lease, now)


def mark_sent_many(session: Session, ids: Sequence[int], lease: Lease, now: datetime) -> set[int]:
    """``mark_sent`` for messages of one claim; return the ids whose ``lease`` still held.

    One UPDATE per ``CHUNK`` ids: the delivery job records a group of accepted messages in one
    statement and one commit.
    """
    _require_aware("now", now)
    marked: set[int] = set()
    connection = session.connection()
    for chunk in _chunks(ids):
        params = {
            "m_ids": list(chunk),
            "m_owner": lease.owner,
            "m_until": lease.until,
            "m_now": now,
        }
        marked.update(connection.execute(_MARK_SENT, params).scalars())
    return marked


def mark_retry(
    session: Session,
    id: int,
    lease: Lease,
    next_attempt_at: datetime,
    code: int | None,
    error: str,
    now: datetime,
) -> bool:
    """Put message ``id`` back to pending until ``next_attempt_at`` (a temporary failure).

    ``code`` is the SMTP reply code when there was one (4xx), None for a connection error or
    timeout. False if ``lease`` was lost: someone else owns the retry now.
    """
    _require_aware("now", now)
    _require_aware("next_attempt_at", next_attempt_at)
    values = {"next_attempt_at": next_attempt_at, "last_code": code, "last_error": error}
    return _finish(session, _MARK_RETRY, id, lease, now, values)


def mark_failed(
    session: Session, id: int, lease: Lease, code: int | None, error: str, now: datetime
) -> bool:
    """Record a permanent failure (5xx, retries exhausted); False if ``lease`` was lost."""
    _require_aware("now", now)
    return _finish(session, _MARK_FAILED, id, lease, now, {"last_code": code, "last_error": error})


def mark_skipped(session: Session, id: int, lease: Lease, reason: str, now: datetime) -> bool:
    """Record that message ``id`` was not sent on purpose (expired, no longer owed).

    False if ``lease`` was lost.
    """
    _require_aware("now", now)
    return _finish(session, _MARK_SKIPPED, id, lease, now, {"last_error": reason})


def release(session: Session, id: int, lease: Lease, now: datetime) -> bool:
    """Give message ``id`` back unsent: pending again at once, its claim not counted as an
    attempt. False if ``lease`` was lost."""
    _require_aware("now", now)
    return _finish(session, _RELEASE, id, lease, now, {})


# The finishing marks run once per message, on the delivery hot path: each is one UPDATE
# built once, here, with bind parameters, and executed on the session's connection (the same
# transaction) rather than through the ORM's execute, which would rebuild, re-key and
# re-dispatch a Core statement per call. The WHERE clause is the ownership test: exactly one
# row changes if this claim (owner and lease instant, ``Lease``) still holds, none if it was
# reaped, taken over or claimed again. ``lease_until`` is compared for equality, not with the
# clock: an expired lease that nobody reaped yet is still ours, and recording the truth beats
# leaving the row to be sent again. ``lease_owner`` stays on
# finished rows (who sent it); retry and release clear it.
def _mark(state: OutboxState, rows: ColumnElement[bool] | None = None, **values: Any) -> Update:
    return (
        update(OUTBOX)
        .where(
            _c.id == bindparam("m_id") if rows is None else rows,
            _c.state == OutboxState.CLAIMED,
            _c.lease_owner == bindparam("m_owner"),
            _c.lease_until == bindparam("m_until"),
        )
        .values(state=state, lease_until=None, updated_at=bindparam("m_now"), **values)
    )


# Several rows at once, saying which: RETURNING the ids it changed.
_MARK_SENT = _mark(
    OutboxState.SENT, _c.id.in_(bindparam("m_ids", expanding=True)), sent_at=bindparam("m_now")
).returning(_c.id)
_MARK_RETRY = _mark(
    OutboxState.PENDING,
    next_attempt_at=bindparam("next_attempt_at"),
    lease_owner=None,
    last_code=bindparam("last_code"),
    last_error=bindparam("last_error"),
)
_MARK_FAILED = _mark(
    OutboxState.FAILED, last_code=bindparam("last_code"), last_error=bindparam("last_error")
)
_MARK_SKIPPED = _mark(OutboxState.SKIPPED, last_error=bindparam("last_error"))
_RELEASE = _mark(OutboxState.PENDING, lease_owner=None, attempts=_c.attempts - 1)


def _finish(
    session: Session, stmt: Executable, id: int, lease: Lease, now: datetime, values: dict[str, Any]
) -> bool:
    params = {"m_id": id, "m_owner": lease.owner, "m_until": lease.until, "m_now": now, **values}
    result = cast("CursorResult[Any]", session.connection().execute(stmt, params))
    return result.rowcount == 1


def reap_leases(session: Session, now: datetime) -> int:
    """Return claimed rows whose lease ran out (their worker died) to pending; count them.

    A reaped message may already have been accepted by the SMTP server (the crash window
    between 250 and the ``sent`` commit); it is retried with the same Message-ID. ``attempts``
    was counted at the claim, so a message that kills its worker every time runs out of
    attempts instead of looping forever.
    """
    _require_aware("now", now)
    expired = (_c.state == OutboxState.CLAIMED, _c.lease_until < now)
    target = update(OUTBOX).where(*expired)
    if dialect_name(session) == "postgresql":
        # Only the rows no one holds: replicas reaping at once, each UPDATE waiting on row
        # locks the other took in another order, hit "deadlock detected". A row locked now
        # is another reaper's or its sender's (a late mark); the next sweep sees it again.
        free = select(_c.id).where(*expired).with_for_update(skip_locked=True)
        target = update(OUTBOX).where(_c.id.in_(free.scalar_subquery()), *expired)
    stmt = target.values(
        state=OutboxState.PENDING,
        last_error=literal("lease expired: ") + func.coalesce(_c.lease_owner, "?"),
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )
    return _rowcount(session, stmt)


def next_due_at(session: Session) -> datetime | None:
    """Return the next instant at which ``claim_due`` or ``reap_leases`` will find work.

    That is the earliest of: for pending rows, the later of ``due_at`` and ``next_attempt_at``;
    for claimed rows, ``lease_until``. None when there is nothing left to do. The instant may
    be in the past (work is waiting now).
    """
    ready: ColumnElement[datetime] = case(
        (_c.due_at > _c.next_attempt_at, _c.due_at), else_=_c.next_attempt_at
    )
    pending = session.scalar(select(func.min(ready)).where(_c.state == OutboxState.PENDING))
    leases = session.scalar(select(func.min(_c.lease_until)).where(_c.state == OutboxState.CLAIMED))
    instants = [t for t in (pending, leases) if t is not None]
    return min(instants, default=None)


def counts(session: Session, program: str | None = None) -> dict[OutboxState, int]:
    """Return the number of messages in each state (every state present, zeros included)."""
    stmt = select(_c.state, func.count()).group_by(_c.state)
    if program is not None:
        stmt = stmt.where(_c.program == program)
    result = dict.fromkeys(OutboxState, 0)
    for state, count in session.execute(stmt):
        result[OutboxState(state)] = count
    return result


def sent_since(session: Session, program: str, since: datetime) -> int:
    """Count the messages of ``program`` sent at or after ``since``, or claimed since then and
    maybe on the wire: what may already have reached someone."""
    sent = (_c.state == OutboxState.SENT) & (_c.sent_at >= since)
    claimed = (_c.state == OutboxState.CLAIMED) & (_c.updated_at >= since)
    stmt = select(func.count()).where(_c.program == program, sent | claimed)
    return int(session.scalar(stmt) or 0)


# ---------------------------------------------------------------------------------------------


def _rowcount(
    session: Session, stmt: Executable, params: list[dict[str, Any]] | None = None
) -> int:
    # preserve_rowcount: without it SQLAlchemy reports -1 for an executemany on psycopg.
    options = {"preserve_rowcount": True}
    result = cast("CursorResult[Any]", session.execute(stmt, params, execution_options=options))
    return result.rowcount


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _json(context: Mapping[str, Any]) -> Any:
    # What the database will give back: compare like with like (tuples become lists, and a
    # non-serialisable value fails here, naming itself, not deep inside the driver).
    return json.loads(json.dumps(dict(context)))


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
