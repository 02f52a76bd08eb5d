"""Wire settings, programs, the database and a mail transport into the operations the daemon,
the simulator and the CLI share. Blocking database work runs in worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from calendars.notices import Team
from config.programs import Program
from config.settings import Settings
from jobs.deliver import Delivered, DeliveryOptions, DeliveryReport, deliver_due
from jobs.mail.transport import MaildirTransport, SmtpTransport, Transport
from jobs.planning import (
    CHUNK,
    FIRST_PART,
    NOTHING,
    PART_PAUSE,
    PlanReport,
    Scope,
    changed_between,
    changed_by,
    part_size,
    plan_chunk,
    plan_part,
    plan_people,
)
from jobs.rate import Limiter
from jobs.render import LinkMaker
from jobs.storage import Engine, facts, outbox
from jobs.storage.db import (
    begin_write,
    lock_planning,
    make_engine,
    session_factory,
    sqlite_path,
    upgrade,
)
from jobs.storage.skips import Skipped
from scheduler.daemon.logs import log_delivered
from scheduler.daemon.metrics import Metrics

log = logging.getLogger("tickler")
# Event-log rows read per query by the change feed.
CHANGES = 5000


def transport_from_settings(settings: Settings) -> Transport:
    """Return the SMTP transport when a host is configured, else the Maildir."""
    if not settings.smtp_host:
        return MaildirTransport(settings.maildir)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=password,
        security=settings.smtp_security,
        timeout=settings.smtp_timeout,
        connections=settings.smtp_connections,
    )


class SingleReplicaError(Exception):
    """A second daemon on the same SQLite file."""


class Service:
    """Plan, deliver and report over one database; every method takes ``now``."""

    def __init__(
        self,
        settings: Settings,
        programs: Sequence[Program],
        *,
        transport: Transport | None = None,
        engine: Engine | None = None,
        owner: str | None = None,
        options: DeliveryOptions | None = None,
    ) -> None:
        self.settings = settings
        self.programs = list(programs)
        self.engine = engine or make_engine(settings.database_url)
        self.factory = session_factory(self.engine)
        self.transport = transport or transport_from_settings(settings)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.options = options or DeliveryOptions(
            sender=settings.mail_from,
            template_dir=settings.template_dir,
            locale=settings.locale,
            links=(
                LinkMaker(
                    secret=settings.action_secret.get_secret_value().encode(),
                    base_url=settings.public_url,
                )
                if settings.action_secret is not None
                else None
            ),
            zones={p.id: p.timezone for p in self.programs},
            timezone=settings.timezone,
            contacts=settings.program_contacts,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
            backoff=timedelta(seconds=settings.retry_backoff_seconds),
            concurrency=settings.smtp_connections,
            unrecorded=settings.unrecorded_sends,
        )
        # One for the daemon's life: a new delivery run must not start with a fresh burst.
        self.limiter = Limiter(rate=settings.smtp_rate, domain_rate=settings.smtp_domain_rate)
        self.team = Team(
            compliance=settings.compliance_email,
            compliance_officer=settings.compliance_officer_email,
            domain=settings.message_domain,
        )
        self.metrics = Metrics(self.owner)
        # What the last plan of each program left out, by (program, person): /readyz shows it.
        self.skipped: dict[tuple[str, str], Skipped] = {}
        self._lock_file: IO[str] | None = None
        # Set by the daemon's loop: told of each fact this process records (the API), so the
        # loop looks at the event log at once instead of at its next poll.
        self.on_recorded: Callable[[], None] | None = None

    def recorded(self) -> None:
        """Say that this process has just committed a fact (see ``on_recorded``)."""
        if self.on_recorded is not None:
            self.on_recorded()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        upgrade(self.settings.database_url)

    def claim_single_replica(self) -> None:
        """On SQLite, hold an exclusive lock for the daemon's life: one replica only."""
        if not self.is_sqlite:
            return
        database = sqlite_path(self.settings.database_url) or ":memory:"
        lock_path = Path(f"{database}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SingleReplicaError(
                f"another tickler daemon is running on {database}: SQLite allows one replica; "
                "use PostgreSQL (TICKLER_DATABASE_URL=postgresql://…) to run several"
            ) from None
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def plan(
        self,
        now: datetime,
        only: set[str] | None = None,
        *,
        lock: asyncio.Lock | None = None,
        stop: asyncio.Event | None = None,
        progress: Callable[[], None] | None = None,
    ) -> PlanReport:
        """Plan every program, or just those in ``only`` (the digest always), streamed: the
        program part, then the people chunk by chunk, each chunk its own short transaction
        (holding ``lock``, when given, only meanwhile), so that recording a fact never waits
        for more than one chunk; with ``lock``, each chunk is sized to take about
        ``PART_SECONDS`` (``part_size``) and followed by ``PART_PAUSE``. ``progress`` is
        called after each (what it planned may be due). Returns early, with what was done,
        once ``stop`` is set."""
        programs = [p for p in self.programs if only is None or p.id in only]
        started = time.perf_counter()
        stopped = stop or asyncio.Event()
        report = NOTHING
        try:
            async with lock or contextlib.nullcontext():
                if not stopped.is_set():
                    report = await asyncio.to_thread(self._program_part(programs, now))
            after: int | None = 0
            size = CHUNK if lock is None else FIRST_PART
            while after is not None and not stopped.is_set():
                async with lock or contextlib.nullcontext():
                    if stopped.is_set():  # stopped while waiting for the lock
                        break
                    part = self._chunk_after(programs, now, after, size)
                    began = time.perf_counter()
                    chunk, after = await asyncio.to_thread(part)
                    if lock is not None:
                        size = part_size(size, time.perf_counter() - began)
                report += chunk
                if progress is not None and chunk.inserted:
                    progress()
                if lock is not None and after is not None:
                    await asyncio.sleep(PART_PAUSE)  # other writers' turn, outside the lock
        except Exception:
            self.metrics.planning_failures.labels(self.owner).inc()
            raise
        finally:
            self.metrics.plan_seconds.labels(self.owner).observe(time.perf_counter() - started)
        self._planned({p.id for p in programs}, report, people=None)
        return report

    async def plan_scope(self, now: datetime, scope: Scope, *, unowned: bool) -> PlanReport:
        """Plan what ``scope`` names: its whole programs, and its people under the others;
        with ``unowned``, also what belongs to no person (milestones, the digest)."""
        whole = [p for p in self.programs if p.id in scope.programs]
        others = [p for p in self.programs if p.id not in scope.programs]
        report = NOTHING
        if whole:
            report += await self.plan(now, only={p.id for p in whole})
        started = time.perf_counter()
        try:
            if unowned and others:
                part = await asyncio.to_thread(self._program_part(others, now))
                self._planned({p.id for p in others}, part, people=part.covers)
                report += part
            ids = sorted(scope.people)
            for start in range(0, len(ids) if others else 0, CHUNK):
                chunk = ids[start : start + CHUNK]
                part = await asyncio.to_thread(self._people_part(others, now, chunk))
                self._planned({p.id for p in others}, part, people=part.covers)
                report += part
        except Exception:
            self.metrics.planning_failures.labels(self.owner).inc()
            raise
        finally:
            self.metrics.plan_seconds.labels(self.owner).observe(time.perf_counter() - started)
        return report

    def _program_part(self, programs: list[Program], now: datetime) -> Callable[[], PlanReport]:
        def work() -> PlanReport:
            with begin_write(self.factory) as session:
                lock_planning(session)
                return plan_part(
                    session, programs=programs, team=self.team, zone=self.settings.timezone, now=now
                )

        return work

    def _chunk_after(
        self, programs: list[Program], now: datetime, after: int, size: int
    ) -> Callable[[], tuple[PlanReport, int | None]]:
        def work() -> tuple[PlanReport, int | None]:
            with begin_write(self.factory) as session:
                lock_planning(session)
                return plan_chunk(
                    session,
                    programs=programs,
                    team=self.team,
                    zone=self.settings.timezone,
                    now=now,
                    after=after,
                    size=size,
                )

        return work

    def _people_part(
        self, programs: list[Program], now: datetime, ids: list[int]
    ) -> Callable[[], PlanReport]:
        def work() -> PlanReport:
            with begin_write(self.factory) as session:
                lock_planning(session)
                return plan_people(
                    session,
                    programs=programs,
                    team=self.team,
                    zone=self.settings.timezone,
                    now=now,
                    ids=ids,
                )

        return work

    def _planned(
        self, programs: set[str], report: PlanReport, *, people: frozenset[str] | None
    ) -> None:
        """Count, log and remember what a plan (or a part) of ``programs`` did."""
        self.metrics.cancelled(report.cancelled_by.items())
        self._left_out(programs, report.skipped, people)
        if report.inserted or report.cancelled or report.updated or report.retired:
            log.info(
                "planned",
                extra={
                    "action": "planned",
                    "inserted": report.inserted,
                    "updated": report.updated,
                    "cancelled": report.cancelled,
                    "retired": report.retired,
                    "planned": report.planned,
                    "owner": self.owner,
                },
            )

    async def changes(
        self, after: int, since: datetime, until: datetime, *, seen: AbstractSet[int]
    ) -> tuple[list[int], Scope]:
        """Return the ids of the event-log rows above id ``after`` not in ``seen``, and what
        they, and the clock moving from ``since`` to ``until``, call to plan again."""

        def work() -> tuple[list[int], Scope]:
            with self.factory() as session:
                rows: list[facts.Change] = []
                last = after
                while True:
                    batch = facts.changes_after(session, last, CHANGES)
                    rows += batch
                    if len(batch) < CHANGES:
                        break
                    last = batch[-1].id
                rows = [r for r in rows if r.id not in seen]
                scope = changed_by(session, rows, self.programs)
                if until > since:
                    scope |= changed_between(session, since, until, self.programs)
                return [r.id for r in rows], scope

        return await asyncio.to_thread(work)

    def _left_out(
        self, planned: set[str], skipped: Sequence[Skipped], people: frozenset[str] | None
    ) -> None:
        """Count what the plan of ``planned`` (of its ``people``, when a part) left out; log
        each skip when it starts and ends (not on every sweep: a bad row stays bad until
        someone fixes it)."""

        def decided(key: tuple[str, str]) -> bool:
            return key[0] in planned and (people is None or key[1] in people)

        fresh = {(s.program, s.person): s for s in skipped if decided((s.program, s.person))}
        before = {key: s for key, s in self.skipped.items() if decided(key)}
        for key, skip in fresh.items():
            self.metrics.skipped(skip.program, "person" if skip.person else "program")
            if key not in before or before[key].error != skip.error:
                log.error(
                    "planning failed",
                    extra={
                        "action": "planning_failed",
                        "program": skip.program,
                        "person": skip.person or None,
                        "error": skip.error,
                        "owner": self.owner,
                    },
                )
        for program, person in before.keys() - fresh.keys():
            log.info(
                "planning recovered",
                extra={
                    "action": "planning_recovered",
                    "program": program,
                    "person": person or None,
                    "owner": self.owner,
                },
            )
        kept = {key: s for key, s in self.skipped.items() if not decided(key)}
        self.skipped = kept | fresh

    async def deliver(
        self,
        now: datetime,
        stop: asyncio.Event | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> DeliveryReport:
        report = await deliver_due(
            self.factory,
            self.transport,
            self.options,
            owner=self.owner,
            now=now,
            stop=stop,
            clock=clock,
            observe=self._delivered,
            limiter=self.limiter,
        )
        if report.sent or report.failed or report.retried or report.skipped:
            log.info(
                "delivered",
                extra={
                    "action": "delivered",
                    "sent": report.sent,
                    "retried": report.retried,
                    "failed": report.failed,
                    "skipped": report.skipped,
                    "owner": self.owner,
                },
            )
        if report.lost_lease:
            # Sent (or skipped), but another claim had the row by the time the outcome was
            # written: its lease ran out first. That claim may send the message again.
            log.warning(
                "lease lost before the outcome was recorded",
                extra={"action": "lease_lost", "messages": report.lost_lease, "owner": self.owner},
            )
        return report

    def _delivered(self, outcome: Delivered) -> None:
        """Count and log one delivery outcome: the line an operator greps for a Message-ID."""
        self.metrics.delivered(outcome)
        full = self.settings.log_recipients == "address"
        log_delivered(outcome, owner=self.owner, full_address=full)

    async def next_due(self) -> datetime | None:
        def work() -> datetime | None:
            with self.factory() as session:
                return outbox.next_due_at(session)

        return await asyncio.to_thread(work)

    async def next_fact_after(self, now: datetime) -> datetime | None:
        def work() -> datetime | None:
            with self.factory() as session:
                return facts.next_after(session, now)

        return await asyncio.to_thread(work)

    async def touched_programs(self, after: datetime, until: datetime) -> set[str | None]:
        """Return the programs of the facts dated in (after, until]; None stands for a fact
        about a person (a termination, a hire) that may concern every program."""

        def work() -> set[str | None]:
            with self.factory() as session:
                return facts.programs_between(session, after, until)

        return await asyncio.to_thread(work)

    async def last_event_id(self) -> int:
        def work() -> int:
            with self.factory() as session:
                return facts.last_id(session)

        return await asyncio.to_thread(work)

    async def close(self) -> None:
        await self.transport.close()
        self.engine.dispose()
        self.release()
