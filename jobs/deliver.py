"""The delivery job: claim due outbox rows, render them, send, and record each outcome.

Order of operations, and why: the claim (a lease) is committed before sending, so two workers
never send the same row; ``sent`` is committed soon after the server's 250 (outcomes share
commits while sending goes on, and at most ``unrecorded`` wait), so a crash can only repeat a
message the server had already accepted, and few of them (the same Message-ID goes out again).
A temporary failure (4xx, connection error, timeout) is retried with exponential backoff and
jitter; a permanent one (5xx, refused recipient, broken template) is recorded as failed.
A row whose purpose has passed (``expires_at``) is recorded as skipped, never sent late.

Escalations go out combined (``calendars.escalations`` says why): the due rows of one
recipient, program and day are claimed together, sent as one email, and their outcomes recorded
in one commit, the email's bytes kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from calendars.escalations import (
    COMBINED_JOBS,
    MAX_COMBINED,
    combined_context,
    group_key,
    group_message_id,
)
from calendars.events import Audience, Event, EventKind, event_from_dict
from calendars.ical import FeedItem, render_invitation
from calendars.notices import Notice
from jobs.digest import digest_context
from jobs.mail.mime import OutgoingMessage, mime_bytes
from jobs.mail.transport import DeliveryStatus, MaildirTransport, Transport
from jobs.rate import Limiter
from jobs.render import LinkMaker, TemplateError, render, thread_headers
from jobs.storage import Session, SessionFactory, evidence, outbox


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOptions:
    sender: str
    template_dir: Path | None = None
    # The locale of messages whose context has none (``TICKLER_LOCALE``); None: English.
    locale: str | None = None
    links: LinkMaker | None = None  # signs the action links; None: messages carry none
    # The zone each program's messages write times in (``when`` in templates), by program.
    zones: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "America/Los_Angeles"  # the zone of a program not in ``zones``
    # Each program's named contact ("Name <address>"): its emails' Reply-To and ``contact``.
    contacts: Mapping[str, str] = field(default_factory=dict)
    combine_max: int = MAX_COMBINED  # people one combined escalation lists at most
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    backoff: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    batch: int = 200
    concurrency: int = 4  # connections, and messages on the wire at once
    unrecorded: int = 16  # accepted messages that may wait for their commit meanwhile


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """What became of one claimed message, once recorded: what the shell logs and counts.

    ``at`` is when it happened (for ``sent``, when the server accepted it; lateness is
    ``at - due_at``); ``code`` the server's reply code (None without one: the Maildir, a
    connection error); ``recorded`` False when the row had been claimed again before the
    outcome was written (the lease ran out), so the database does not show it.
    """

    outcome: Literal["sent", "retried", "failed", "skipped"]
    identity: str
    message_id: str
    program: str
    job: str
    recipient: str
    due_at: datetime
    at: datetime
    attempt: int
    code: int | None = None
    detail: str = ""
    recorded: bool = True


# Called once per outcome as soon as it is committed (the shell's metrics and log lines); the
# jobs report through it rather than import the shell (imports point one way).
Observer = Callable[[Delivered], None]


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
    message: Notice,
    context: dict[str, Any],
    options: DeliveryOptions,
    *,
    message_id: str | None = None,
) -> OutgoingMessage:
    """Render a claimed message into an email (with a calendar invitation for meetings).

    ``message_id`` replaces the row's own (a combined escalation's, derived from its group).
    """
    contact = options.contacts.get(message.program)
    context = {
        "timezone": options.zones.get(message.program, options.timezone),
        **({"contact": contact} if contact else {}),
        **context,
    }
    if options.links is not None:
        context = {**context, **options.links.context(message)}
    rendered = render(
        message.template, context, options.template_dir, default_locale=options.locale
    )
    calendar: bytes | None = None
    if message.job in ("presentation_invitation", "presentation_cancellation"):
        calendar = _invitation(message, context, options.sender)
    return OutgoingMessage(
        message_id=message_id or message.message_id,
        sender=options.sender,
        to=(message.recipient,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        calendar=calendar,
        headers=(
            ("X-Tickler-Identity", message.identity),
            *thread_headers(message),
        ),
        reply_to=contact,
    )


def _invitation(message: Notice, context: dict[str, Any], organizer: str) -> bytes:
    """Render the calendar part of a meeting's invitation or cancellation.

    The planner puts the calendar's own event in the context, so the invitation is the feed's
    event: same UID, SEQUENCE, text and times; a cancellation is the meeting as it was before
    its removal. DTSTAMP is the event's last change, as in the feeds.
    """
    cancel = message.job == "presentation_cancellation"
    if "event" in context:
        event = event_from_dict(context["event"])
    else:
        event = _planned_without_event(message, context)
    modified = context.get("last_modified")
    item = FeedItem(
        event=event,
        sequence=int(context["sequence"]),
        last_modified=datetime.fromisoformat(modified) if modified else message.due,
        cancelled=cancel,
    )
    return render_invitation(
        item,
        method="CANCEL" if cancel else "REQUEST",
        organizer=organizer,
        attendees=[message.recipient],
    )


def _planned_without_event(message: Notice, context: dict[str, Any]) -> Event:
    """Rebuild the event of a row planned before invitations carried it (still pending after
    an upgrade): the uid and SEQUENCE match the feed's; the text and a cancellation's times
    are only what the old context held."""
    start = datetime.fromisoformat(str(context.get("start") or context["cutoff_utc"]))
    end = datetime.fromisoformat(str(context.get("end") or context["cutoff_utc"]))
    location, dial_in = str(context.get("location", "")), str(context.get("dial_in", ""))
    where = "; ".join(x for x in (location, f"dial-in {dial_in}" if dial_in else "") if x)
    return Event(
        program=message.program,
        key=str(context["event_key"]),
        kind=EventKind.PRESENTATION,
        title="Offer presentation",
        start=start,
        end=end,
        timezone=str(getattr(start.tzinfo, "key", "UTC")),
        audiences=frozenset({Audience.EMPLOYEES}),
        location=where,
        description=f"Presentation of the offer. {where}. Elections close {context['cutoff']}.",
    )


async def deliver_due(
    factory: SessionFactory,
    transport: Transport,
    options: DeliveryOptions,
    *,
    owner: str,
    now: datetime,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] | None = None,
    observe: Observer | None = None,
    limiter: Limiter | None = None,
) -> DeliveryReport:
    """Send every message due at ``now``, batch by batch, until none is left (or ``stop``).

    ``options.concurrency`` workers take claimed messages from a short queue, each sending one
    at a time, as a bare SMTP loop would; one feeder claims batch after batch into the queue.
    The queue holds ``concurrency`` messages: the next batch is claimed once the last messages
    of this one are queued or on the wire, so the connections do not idle through a claim, and
    a new claim waits no longer than the messages ahead of it.

    Outcomes are committed by a ``_Recorder``, several to a transaction, while the workers go
    on sending; at most ``options.unrecorded`` accepted messages wait for their ``sent``
    commit (a worker waits for room before its next send). A crash can therefore only repeat
    messages the server had already accepted: the ``concurrency`` on the wire plus at most
    ``unrecorded`` waiting. If an outcome cannot be committed (the database is down), the
    workers stop sending and the error is raised once the sends in flight are done.

    ``stop`` is checked before each claim and each send: a shutdown finishes and records the
    sends on the wire, gives the rest of the batch back (pending), then returns. ``clock``
    (the daemon's) is read again before each later claim: a lease must run from its claim,
    not from the start of a run that may outlast it (another replica would reap the batch
    while it is being sent, and send it again); and a message whose lease is half gone
    before a worker is free for it is given back unsent, for the same reason.

    ``observe`` is called with each outcome (``Delivered``) once it is committed.

    ``limiter`` (the daemon's, shared by its runs) holds the sends to a rate: a worker waits
    for its message's slot before sending it, in the order the messages left the queue (due
    order). A claim is then no larger than the slowest rate sends in a quarter of a lease, so
    a message does not wait out half its lease for its slot (and get given back).
    """
    # One long-lived thread does every write of this run (claims and outcome groups): no
    # thread hand-off to a pool per group, and no two of our own transactions waiting for
    # SQLite's write lock in its busy handler (which sleeps in milliseconds).
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickler-deliver")
    recorder = _Recorder(factory, writer, options.unrecorded, observe)
    queue: asyncio.Queue[tuple[list[outbox.ClaimedMessage], datetime] | None]
    queue = asyncio.Queue(maxsize=options.concurrency)
    loop = asyncio.get_running_loop()
    if limiter is not None and not limiter.limited:
        limiter = None
    batch = options.batch
    if limiter is not None:
        slowest = min(r for r in (limiter.rate, limiter.domain_rate) if r is not None)
        batch = max(1, min(batch, int(slowest * options.lease.total_seconds() / 4)))

    async def feed() -> None:
        at = now
        while recorder.failure is None and not (stop is not None and stop.is_set()):
            try:
                claimed = await loop.run_in_executor(
                    writer, _claim, factory, options, owner, at, batch
                )
            except Exception as exc:  # the database is down: finish what is on the wire
                recorder.failure = exc
                break
            if not claimed:
                break
            for bundle in _bundles(claimed, options.combine_max):
                await queue.put((bundle, at))
            if clock is not None:
                at = clock()
        for _ in range(options.concurrency):
            await queue.put(None)

    async def work() -> None:
        while (item := await queue.get()) is not None:
            bundle, at = item
            message = bundle[0]  # a bundle's rows share one claim, so one lease
            await recorder.room()
            if recorder.failure is not None:
                continue  # left claimed: its lease runs out and the reaper gives it back
            if limiter is not None:
                # Before the lease check below: a message that waited out half its lease
                # for its slot is given back rather than sent while another may reap it.
                await _wait_turn(limiter, message.notice.recipient, stop)
            current = clock() if clock is not None else at
            stopping = stop is not None and stop.is_set()
            if stopping or current > message.lease_until - options.lease / 2:
                # Stopping: only the sends on the wire are finished. Or most of its lease went
                # by waiting for a worker, and another replica may reap it while it is on the
                # wire and send it again. Give it back unsent, pending at once.
                for row in bundle:
                    release = partial(outbox.release, id=row.id, lease=row.lease, now=current)
                    recorder.record(_Outcome("released", release))
                continue
            # Recorded without an await in between: a bundle's outcomes share one commit.
            for outcome in await _deliver(factory, transport, options, bundle, at, clock):
                recorder.record(outcome)

    tasks = [
        asyncio.create_task(feed()),
        *(asyncio.create_task(work()) for _ in range(options.concurrency)),
    ]
    try:
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            await _cancel_all(tasks)
            raise
        finally:
            await recorder.drain()  # what the server accepted is recorded, whatever happened
    finally:
        writer.shutdown(wait=False)
    if recorder.failure is not None:
        raise recorder.failure
    return recorder.report


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and return once every one has ended.

    One cancel is not always enough on Python 3.11: its ``asyncio.wait_for`` (aiosmtplib
    waits for each SMTP reply with it) drops a cancellation that arrives in the same loop
    iteration as the reply, and the worker goes on to its next ``queue.get()``, which nothing
    will ever fill. So cancel again, until all are done (a send that finished that way is
    recorded as usual: the server has the message).
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*tasks, return_exceptions=True)


def _claim(
    factory: SessionFactory, options: DeliveryOptions, owner: str, now: datetime, limit: int
) -> list[outbox.ClaimedMessage]:
    with factory.begin() as session:
        return outbox.claim_due(
            session,
            now=now,
            owner=owner,
            lease=options.lease,
            limit=limit,
            combine=COMBINED_JOBS,
            combine_max=options.combine_max,
        )


def _bundles(claimed: list[outbox.ClaimedMessage], most: int) -> list[list[outbox.ClaimedMessage]]:
    """Return the claimed rows as what goes out: one row alone, or a combined group's rows
    together, ``most`` at a time (in due order, each bundle where its first row was)."""
    out: list[list[outbox.ClaimedMessage]] = []
    groups: dict[tuple[str, ...], list[outbox.ClaimedMessage]] = {}
    for message in claimed:
        key = group_key(message.notice)
        if key is None:
            out.append([message])
        elif key in groups and len(groups[key]) < most:
            groups[key].append(message)
        else:
            groups[key] = [message]
            out.append(groups[key])
    return out


async def _wait_turn(limiter: Limiter, recipient: str, stop: asyncio.Event | None) -> None:
    """Wait for the slot of a message to ``recipient``, or until ``stop`` is set (a slow
    rate must not hold a shutdown up; the slot given up is simply not used)."""
    if stop is None:
        await limiter.wait(recipient)
        return
    if stop.is_set():
        return
    waiting = asyncio.ensure_future(limiter.wait(recipient))
    stopping = asyncio.ensure_future(stop.wait())
    _, pending = await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


Mark = Callable[[Session], bool]
# Seconds an outcome may wait for others to share its commit. A commit's fixed CPU (about
# 1.3 ms on SQLite here, WAL and synchronous FULL) is most of recording a message in a small
# group: 500 us a message in groups of 4, 260 in groups of 16. At 5 ms a loaded machine's
# groups averaged 4.6; a wait this long fills them while the senders go on (room for
# ``unrecorded`` is unchanged: so is what a crash can repeat); a sent mark waits 25 ms at most.
GROUP_DELAY = 0.025
Kind = Literal["sent", "retried", "failed", "skipped", "released"]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What became of one claimed message, to be committed: ``mark`` writes it (``sent``
    outcomes have none: the recorder marks them all with one statement)."""

    kind: Kind
    mark: Mark | None = None
    id: int = 0
    job: str = ""
    lease: outbox.Lease | None = None
    at: datetime | None = None
    # For the observer: the row, the server's answer, and when it came.
    message: outbox.ClaimedMessage | None = None
    code: int | None = None
    detail: str = ""
    when: datetime | None = None
    # A sent message's bytes as the transport handed them over, kept as evidence (compressed
    # by the writer thread, off the send path). A transport that does not say (a test fake)
    # has them rebuilt from the email: the MIME is deterministic, the same bytes.
    email: OutgoingMessage | None = None
    linesep: str = "\r\n"
    data: bytes | None = None
    # A row sent inside a combined email whose bytes another row of the same claim keeps:
    # that email's Message-ID (its evidence points there instead of repeating the bytes).
    same_as: str = ""
    retry_at: datetime | None = None  # a retried outcome's next attempt


class _Recorder:
    """Commit delivery outcomes as they come, several to a transaction, off the send path.

    ``record`` queues an outcome and returns at once; one writer task commits whatever has
    queued up since its last commit, in one transaction on the ``writer`` thread (one
    statement for all the ``sent`` marks), so a commit's latency (an fsync on SQLite, a round
    trip on PostgreSQL) holds no connection up. ``room`` makes a sender wait while ``limit``
    outcomes are still uncommitted: that bounds what a crash can repeat. The first commit that
    fails sets ``failure``; the outcomes it carried stay unrecorded (their leases run out and
    the reaper gives them back) and so does everything recorded after it.
    """

    def __init__(
        self,
        factory: SessionFactory,
        writer: Executor,
        limit: int,
        observe: Observer | None = None,
    ) -> None:
        self._factory = factory
        self._observe = observe
        self._executor = writer
        self._limit = limit
        self._queued: list[_Outcome] = []
        self._uncommitted = 0
        self._room = asyncio.Event()
        self._room.set()
        self._group = max(1, limit // 2)
        self._enough = asyncio.Event()
        self._draining = False
        self._writer: asyncio.Task[None] | None = None
        self.report = DeliveryReport()
        self.failure: BaseException | None = None

    def record(self, outcome: _Outcome) -> None:
        self._queued.append(outcome)
        self._uncommitted += 1
        if len(self._queued) >= self._group:
            self._enough.set()
        if self._uncommitted >= self._limit:
            self._room.clear()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def room(self) -> None:
        """Return once fewer than ``limit`` outcomes wait for their commit."""
        while self._uncommitted >= self._limit and self.failure is None:
            await self._room.wait()

    async def drain(self) -> None:
        """Return once every recorded outcome is committed (or has failed to be)."""
        self._draining = True
        self._enough.set()
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._queued:
            if len(self._queued) < self._group and not self._draining:
                # A commit costs the same for one outcome as for a dozen: let a group gather.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(GROUP_DELAY):
                        await self._enough.wait()
            self._enough.clear()
            group, self._queued = self._queued, []
            if self.failure is None:
                try:
                    done = await asyncio.get_running_loop().run_in_executor(
                        self._executor, _commit, self._factory, group
                    )
                except Exception as exc:
                    self.failure = exc
                else:
                    self._count(group, done)
            self._uncommitted -= len(group)
            if self._uncommitted < self._limit or self.failure is not None:
                self._room.set()

    def _count(self, group: list[_Outcome], done: list[bool]) -> None:
        report = self.report
        for outcome, ok in zip(group, done, strict=True):
            if outcome.kind == "sent":
                report.sent += ok
                report.lost_lease += not ok
                if ok:
                    report.by_job[outcome.job] = report.by_job.get(outcome.job, 0) + 1
            elif outcome.kind == "skipped":
                report.skipped += ok
                report.lost_lease += not ok
            elif outcome.kind == "retried":
                report.retried += 1
            elif outcome.kind == "failed":
                report.failed += 1
            if self._observe is not None and outcome.message is not None:
                self._observe(_delivered(outcome, outcome.message, ok))


def _delivered(outcome: _Outcome, message: outbox.ClaimedMessage, recorded: bool) -> Delivered:
    assert outcome.kind != "released"  # given back unsent: not an outcome
    notice = message.notice
    return Delivered(
        outcome=outcome.kind,
        identity=notice.identity,
        message_id=notice.message_id,
        program=notice.program,
        job=notice.job,
        recipient=notice.recipient,
        due_at=notice.due,
        at=outcome.when or outcome.at or notice.due,
        attempt=message.attempts,
        code=outcome.code,
        detail=outcome.detail,
        recorded=recorded,
    )


def _commit(factory: SessionFactory, group: list[_Outcome]) -> list[bool]:
    """Write ``group`` in one transaction; return, for each outcome, whether it was ours."""
    with factory.begin() as session:
        sent: dict[tuple[outbox.Lease, datetime], list[int]] = {}
        for outcome in group:
            if outcome.lease is not None and outcome.at is not None:
                sent.setdefault((outcome.lease, outcome.at), []).append(outcome.id)
        marked: set[int] = set()
        for (lease, at), ids in sent.items():
            marked |= outbox.mark_sent_many(session, ids, lease, at)
        evidence.record(
            session, [_evidence(o) for o in group if o.id in marked and (o.email or o.same_as)]
        )
        return [
            outcome.mark(session) if outcome.mark is not None else outcome.id in marked
            for outcome in group
        ]


def _evidence(outcome: _Outcome) -> evidence.Sent:
    assert outcome.at is not None
    if outcome.same_as:
        return evidence.Sent(
            outbox_id=outcome.id,
            message_id=outcome.same_as,
            sent_at=outcome.when or outcome.at,
            code=outcome.code,
            reply=outcome.detail,
            data=b"",
        )
    assert outcome.email is not None
    return evidence.Sent(
        outbox_id=outcome.id,
        message_id=outcome.email.message_id,
        sent_at=outcome.when or outcome.at,
        code=outcome.code,
        reply=outcome.detail,
        data=(
            outcome.data
            if outcome.data is not None
            else mime_bytes(outcome.email, date=outcome.at, linesep=outcome.linesep)
        ),
    )


async def _deliver(
    factory: SessionFactory,
    transport: Transport,
    options: DeliveryOptions,
    bundle: list[outbox.ClaimedMessage],
    now: datetime,
    clock: Callable[[], datetime] | None,
) -> list[_Outcome]:
    """Send one claimed row, or a combined group's rows as one email; return the outcomes."""
    if len(bundle) == 1 and bundle[0].notice.job not in COMBINED_JOBS:
        return [await _deliver_one(factory, transport, options, bundle[0], now=now, clock=clock)]
    outcomes: list[_Outcome] = []
    live: list[outbox.ClaimedMessage] = []
    for message in bundle:
        if now >= message.notice.expires:  # left out, and recorded skipped as a lone row is
            outcomes.append(await _deliver_one(factory, transport, options, message, now=now))
        else:
            live.append(message)
    if not live:
        return outcomes
    first = live[0]
    key = group_key(first.notice)
    assert key is not None
    zone = ZoneInfo(options.zones.get(first.notice.program, options.timezone))
    # Sent as the first row, its outcome applied to every row of the group.
    combined = outbox.ClaimedMessage(
        id=first.id,
        notice=first.notice,
        attempts=max(m.attempts for m in live),
        lease_owner=first.lease_owner,
        lease_until=first.lease_until,
    )
    context = combined_context([m.notice for m in live], zone)
    sent = await _deliver_one(
        factory,
        transport,
        options,
        combined,
        now=now,
        clock=clock,
        context=context,
        message_id=group_message_id(key, first.notice.identity, first.notice.domain),
    )
    outcomes.append(replace(sent, message=first))
    for mate in live[1:]:
        if sent.kind == "sent":
            assert sent.email is not None
            outcomes.append(
                replace(
                    sent,
                    id=mate.id,
                    message=mate,
                    email=None,
                    data=None,
                    same_as=sent.email.message_id,
                )
            )
        else:  # retried, failed: each row the same way, so the group stays together
            outcomes.append(replace(sent, mark=_same_mark(sent, mate, now), message=mate))
    return outcomes


def _same_mark(outcome: _Outcome, row: outbox.ClaimedMessage, now: datetime) -> Mark:
    """Return ``outcome``'s mark (retried or failed) applied to ``row`` instead."""
    mid, lease = row.id, row.lease
    detail, code, retry_at = outcome.detail, outcome.code, outcome.retry_at
    if outcome.kind == "retried":
        assert retry_at is not None
        return lambda s: outbox.mark_retry(s, mid, lease, retry_at, code, detail, now)
    return lambda s: outbox.mark_failed(s, mid, lease, code, detail, now)


async def _deliver_one(
    factory: SessionFactory,
    transport: Transport,
    options: DeliveryOptions,
    message: outbox.ClaimedMessage,
    *,
    now: datetime,
    clock: Callable[[], datetime] | None = None,
    context: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> _Outcome:
    mid, lease, notice = message.id, message.lease, message.notice
    seen = partial(_Outcome, message=message, when=now)
    if now >= notice.expires:
        reason = f"expired {notice.expires.isoformat()}: lost its purpose before it could be sent"
        return seen(
            "skipped", lambda s: outbox.mark_skipped(s, mid, lease, reason, now), detail=reason
        )
    try:
        context = dict(notice.context) if context is None else context
        if notice.job == "digest":
            digest = await asyncio.to_thread(_digest, factory, context, now)
            if digest is None:
                return seen(
                    "skipped",
                    lambda s: outbox.mark_skipped(s, mid, lease, "nothing to report", now),
                    detail="nothing to report",
                )
            context = digest
        email = compose(notice, context, options, message_id=message_id)
    except (TemplateError, ValueError, KeyError) as exc:
        error = f"cannot compose: {exc}"
        return seen(
            "failed", lambda s: outbox.mark_failed(s, mid, lease, None, error, now), detail=error
        )
    result = await transport.send(email, date=now)
    # The server's answer came now: lateness runs from the due time to here, not to the claim.
    answered = partial(seen, code=result.code, when=clock() if clock is not None else now)
    if result.status is DeliveryStatus.SENT:
        # The Maildir writes the local line ending; a server gets SMTP's CRLF.
        linesep = "\n" if isinstance(transport, MaildirTransport) else "\r\n"
        return answered(
            "sent",
            id=mid,
            job=notice.job,
            lease=lease,
            at=now,
            detail=result.detail,
            email=email,
            linesep=linesep,
            data=result.data,
        )
    if result.status is DeliveryStatus.TEMPORARY and message.attempts < options.max_attempts:
        retry_at = now + backoff_delay(message.attempts, options)
        detail = result.detail
        return answered(
            "retried",
            lambda s: outbox.mark_retry(s, mid, lease, retry_at, result.code, detail, now),
            detail=detail,
            retry_at=retry_at,
        )
    detail = (
        result.detail
        if result.status is DeliveryStatus.PERMANENT
        else (f"gave up after {message.attempts} attempts: {result.detail}")
    )
    return answered(
        "failed",
        lambda s: outbox.mark_failed(s, mid, lease, result.code, detail, now),
        detail=detail,
    )


def _digest(
    factory: SessionFactory, context: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    with factory() as session:
        return digest_context(session, context, now)
