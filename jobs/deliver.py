"""The delivery job: claim due outbox rows, render them, send, and record each outcome.

Order of operations, and why: the claim (a lease) is committed before sending, so two workers
never send the same row; ``sent`` is committed right after the server's 250, so a crash can
only repeat a message the server had already accepted (the same Message-ID goes out again).
A temporary failure (4xx, connection error, timeout) is retried with exponential backoff and
jitter; a permanent one (5xx, refused recipient, broken template) is recorded as failed.
A row whose purpose has passed (``expires_at``) is recorded as skipped, never sent late.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calendars.events import Audience, Event, EventKind
from calendars.ical import FeedItem, render_invitation
from jobs.digest import digest_context
from jobs.render import TemplateError, render
from scheduler import outbox
from scheduler.mail import DeliveryStatus, Transport
from scheduler.mime import OutgoingMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOptions:
    sender: str
    template_dir: Path | None = None
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    batch: int = 200
    concurrency: int = 4


@dataclass(slots=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    lost_lease: int = 0
    by_job: dict[str, int] = field(default_factory=dict)

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.lost_lease += other.lost_lease
        for job, n in other.by_job.items():
            self.by_job[job] = self.by_job.get(job, 0) + n


def backoff_delay(
    attempt: int, options: DeliveryOptions, rand: Callable[[], float] = random.random
) -> timedelta:
    """Return the wait before retry ``attempt`` (1-based): doubling, capped, with full jitter
    on its upper half so that many failed messages do not retry in lockstep."""
    base = min(options.backoff * (2 ** (attempt - 1)), options.backoff_cap)
    half: timedelta = base / 2
    return half + half * rand()


def compose(
    message: outbox.ClaimedMessage, context: dict[str, Any], options: DeliveryOptions
) -> OutgoingMessage:
    """Render a claimed row into an email (with a calendar invitation for meetings)."""
    rendered = render(message.template, context, options.template_dir)
    calendar: bytes | None = None
    if message.job in ("presentation_invitation", "presentation_cancellation"):
        calendar = _invitation(message, context, options.sender)
    return OutgoingMessage(
        message_id=message.message_id,
        sender=options.sender,
        to=(message.recipient,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        calendar=calendar,
        headers=(("X-Tickler-Identity", message.identity),),
    )


def _invitation(message: outbox.ClaimedMessage, context: dict[str, Any], organizer: str) -> bytes:
    key = str(context["event_key"])
    cancel = message.job == "presentation_cancellation"
    start = datetime.fromisoformat(str(context.get("start") or context["cutoff_utc"]))
    end = datetime.fromisoformat(str(context.get("end") or context["cutoff_utc"]))
    event = Event(
        program=message.program,
        key=key,
        kind=EventKind.PRESENTATION,
        title=f"{context['program_name']}: presentation",
        start=start,
        end=end,
        timezone=str(getattr(start.tzinfo, "key", "UTC")),
        audiences=frozenset({Audience.EMPLOYEES}),
        location=str(context.get("location", "")),
        description=f"Presentation of the offer. Elections close {context['cutoff']}.",
    )
    item = FeedItem(
        event=event,
        sequence=int(context["sequence"]),
        last_modified=message.due_at,
        cancelled=cancel,
    )
    return render_invitation(
        item,
        method="CANCEL" if cancel else "REQUEST",
        organizer=organizer,
        attendees=[message.recipient],
    )


async def deliver_due(
    factory: sessionmaker[Session],
    transport: Transport,
    options: DeliveryOptions,
    *,
    owner: str,
    now: datetime,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] | None = None,
) -> DeliveryReport:
    """Send every message due at ``now``, batch by batch, until none is left (or ``stop``).

    ``stop`` is checked before each claim: a shutdown finishes the sends in flight (and the
    batch already claimed), then returns. The next batch is claimed while the current one's
    last sends are on the wire (fewer than ``concurrency`` messages left), never earlier.
    ``clock`` (the daemon's) is read again before each later batch: a lease must run from its
    claim, not from the start of a run that may outlast it (another replica would reap the
    batch while it is being sent, and send it again); and a message whose lease is half gone
    before a connection is free for it is given back unsent, for the same reason.
    """
    total = DeliveryReport()
    gate = asyncio.Semaphore(options.concurrency)
    # One long-lived thread does every write of this run (claims and outcome groups): no
    # thread hand-off to a pool per group, and no two of our own transactions waiting for
    # SQLite's write lock in its busy handler (which sleeps in milliseconds).
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickler-deliver")
    finisher = _Finisher(factory, writer)
    loop = asyncio.get_running_loop()
    failure: BaseException | None = None

    async def one(message: outbox.ClaimedMessage, at: datetime) -> DeliveryReport:
        nonlocal failure
        # The slot is held until the outcome is committed: at most ``concurrency``
        # messages are ever accepted by the server and not yet recorded as sent.
        async with gate:
            if failure is not None:
                # An outcome could not be committed (the database is down): sending the
                # rest of the batch would send messages the reaper will send again.
                return DeliveryReport()
            current = clock() if clock is not None else at
            if current > message.lease_until - options.lease / 2:
                # Most of its lease went by waiting for a connection: another replica
                # may reap it while it is on the wire and send it again. Give it back
                # unsent; the next claim (maybe this worker's) comes with a fresh lease.
                mid = message.id
                await finisher.finish(lambda s: outbox.release(s, mid, owner, current))
                return DeliveryReport()
            try:
                return await _deliver_one(
                    factory, finisher, transport, options, message, owner=owner, now=at
                )
            except BaseException as exc:
                failure = failure or exc
                raise

    def collect(tasks: list[asyncio.Task[DeliveryReport]]) -> None:
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                raise failure or task.exception() or asyncio.CancelledError()
            total.add(task.result())

    running: list[asyncio.Task[DeliveryReport]] = []
    try:
        claimed = await loop.run_in_executor(writer, _claim, factory, options, owner, now)
        while claimed:
            batch = [asyncio.create_task(one(m, now)) for m in claimed]
            running.extend(batch)
            # The next claim overlaps the tail of this batch: it is made once every message
            # left here can hold a connection (fewer than ``concurrency`` left), so the
            # connections do not idle through the claim, and the new claims wait no longer
            # than the sends already on the wire.
            await _until_fewer_than(batch, options.concurrency)
            if failure is not None or (stop is not None and stop.is_set()):
                break
            collect([t for t in running if t.done()])
            running = [t for t in running if not t.done()]
            if clock is not None:
                now = clock()
            claimed = await loop.run_in_executor(writer, _claim, factory, options, owner, now)
        if running:
            await asyncio.wait(running)
            collect(running)  # the first failure, once every send has stopped
    except BaseException:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        raise
    finally:
        writer.shutdown(wait=False)
    return total


async def _until_fewer_than(tasks: list[asyncio.Task[DeliveryReport]], n: int) -> None:
    """Return once fewer than ``n`` of ``tasks`` are still running."""
    left = sum(not t.done() for t in tasks)
    if left < n:
        return
    low = asyncio.Event()

    def done(_: asyncio.Task[DeliveryReport]) -> None:
        nonlocal left
        left -= 1
        if left < n:
            low.set()

    for task in tasks:
        if not task.done():
            task.add_done_callback(done)
    try:
        await low.wait()
    finally:
        for task in tasks:
            task.remove_done_callback(done)


def _claim(
    factory: sessionmaker[Session], options: DeliveryOptions, owner: str, now: datetime
) -> list[outbox.ClaimedMessage]:
    with factory() as session, session.begin():
        outbox.reap_leases(session, now)
    with factory() as session, session.begin():
        return outbox.claim_due(
            session, now=now, owner=owner, lease=options.lease, limit=options.batch
        )


Mark = Callable[[Session], bool]


class _Finisher:
    """Commit delivery outcomes as soon as they are known, several to a transaction.

    ``finish`` returns once its outcome is committed, so ``sent`` is still durable before the
    sender moves on; but the outcomes that arrive while a commit is running share the next
    one: one hop to the writer thread, one transaction and one fsync for a group instead of
    one each, and a single writer (the one thread of ``writer``, which also makes the claims)
    instead of several threads queueing for SQLite's write lock (its busy handler sleeps in
    milliseconds) while their SMTP connections wait.
    """

    def __init__(self, factory: sessionmaker[Session], writer: Executor) -> None:
        self._factory = factory
        self._executor = writer
        self._waiting: list[tuple[Mark, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def finish(self, mark: Mark) -> bool:
        """Run ``mark`` in a committed transaction; return what it returned."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((mark, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(future)  # a cancelled sender does not cancel the group

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _finish_all, self._factory, [m for m, _ in group]
                )
            except Exception as exc:  # every waiter learns of it, none waits forever
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in [*group, *self._waiting]:
                    future.cancel()
                self._waiting = []
                raise
            for (_, future), ok in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(ok)


def _finish_all(factory: sessionmaker[Session], marks: list[Mark]) -> list[bool]:
    with factory() as session, session.begin():
        return [mark(session) for mark in marks]


async def _deliver_one(
    factory: sessionmaker[Session],
    finisher: _Finisher,
    transport: Transport,
    options: DeliveryOptions,
    message: outbox.ClaimedMessage,
    *,
    owner: str,
    now: datetime,
) -> DeliveryReport:
    report = DeliveryReport()
    mid = message.id
    if message.expires_at is not None and now >= message.expires_at:
        reason = (
            f"expired {message.expires_at.isoformat()}: lost its purpose before it could be sent"
        )
        ok = await finisher.finish(lambda s: outbox.mark_skipped(s, mid, owner, reason, now))
        report.skipped += ok
        report.lost_lease += not ok
        return report
    try:
        context = dict(message.context)
        if message.job == "digest":
            digest = await asyncio.to_thread(_digest, factory, context, now)
            if digest is None:
                ok = await finisher.finish(
                    lambda s: outbox.mark_skipped(s, mid, owner, "nothing to report", now)
                )
                report.skipped += ok
                return report
            context = digest
        email = compose(message, context, options)
    except (TemplateError, ValueError, KeyError) as exc:
        error = f"cannot compose: {exc}"
        await finisher.finish(lambda s: outbox.mark_failed(s, mid, owner, None, error, now))
        report.failed += 1
        return report
    result = await transport.send(email, date=now)
    if result.status is DeliveryStatus.SENT:
        ok = await finisher.finish(lambda s: outbox.mark_sent(s, mid, owner, now))
        report.sent += ok
        report.lost_lease += not ok
        report.by_job[message.job] = report.by_job.get(message.job, 0) + 1
    elif result.status is DeliveryStatus.TEMPORARY and message.attempts < options.max_attempts:
        retry_at = now + backoff_delay(message.attempts, options)
        detail = result.detail
        await finisher.finish(
            lambda s: outbox.mark_retry(s, mid, owner, retry_at, result.code, detail, now)
        )
        report.retried += 1
    else:
        detail = (
            result.detail
            if result.status is DeliveryStatus.PERMANENT
            else (f"gave up after {message.attempts} attempts: {result.detail}")
        )
        await finisher.finish(lambda s: outbox.mark_failed(s, mid, owner, result.code, detail, now))
        report.failed += 1
    return report


def _digest(
    factory: sessionmaker[Session], context: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    with factory() as session:
        return digest_context(session, context, now)
