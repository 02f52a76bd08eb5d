"""Wire settings, programs, the database and a mail transport into the operations the daemon,
the simulator and the CLI share. Blocking database work runs in worker threads."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from calendars.notices import Team
from config.programs import Program
from config.settings import Settings
from jobs.deliver import Delivered, DeliveryOptions, DeliveryReport, deliver_due
from jobs.mail.transport import MaildirTransport, SmtpTransport, Transport
from jobs.render import LinkMaker
from jobs.rate import Limiter
from jobs.render import LinkMaker
from jobs.planning import PlanReport, replan
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
        )
        self.metrics = Metrics(self.owner)
        # What the last plan of each program left out, by (program, person): /readyz shows it.
        self.skipped: dict[tuple[str, str], Skipped] = {}
        self._lock_file: IO[str] | None = None

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

    async def plan(self, now: datetime, only: set[str] | None = None) -> PlanReport:
        """Replan every program, or just those in ``only`` (the digest always)."""
        programs = [p for p in self.programs if only is None or p.id in only]

        def work() -> PlanReport:
            with begin_write(self.factory) as session:
                lock_planning(session)
                return replan(
                    session,
                    programs=programs,
                    team=self.team,
                    zone=self.settings.timezone,
                    now=now,
                )

        started = time.perf_counter()
        try:
            report = await asyncio.to_thread(work)
        except Exception:
            self.metrics.planning_failures.labels(self.owner).inc()
            raise
        finally:
            self.metrics.plan_seconds.labels(self.owner).observe(time.perf_counter() - started)
        self.metrics.cancelled(report.cancelled_by.items())
        self._left_out({p.id for p in programs}, report.skipped)
        if report.inserted or report.cancelled or report.updated:
            log.info(
                "planned",
                extra={
                    "action": "planned",
                    "inserted": report.inserted,
                    "updated": report.updated,
                    "cancelled": report.cancelled,
                    "planned": report.planned,
                    "owner": self.owner,
                },
            )
        return report

    def _left_out(self, planned: set[str], skipped: Sequence[Skipped]) -> None:
        """Count what the plan of ``planned`` left out; log each skip when it starts and ends
        (not on every sweep: a bad row stays bad until someone fixes it)."""
        fresh = {(s.program, s.person): s for s in skipped}
        before = {key: s for key, s in self.skipped.items() if key[0] in planned}
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
        kept = {key: s for key, s in self.skipped.items() if key[0] not in planned}
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
