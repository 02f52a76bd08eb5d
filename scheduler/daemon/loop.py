"""The daemon and the simulator: the same plan-and-deliver ticks on a real or a virtual clock.

APScheduler (3.x, in-memory job store) only wakes the daemon: at the next due instant, on a
periodic sweep (the reaper of dead replicas' leases) and when a new row lands in the event log.
What is sent is decided by the database (claims and leases), so any number of replicas may run
these ticks on PostgreSQL.

Planning is incremental: a tick plans again only what changed since the last one, read from
the event log (a fact replans its person, an import the people it wrote) and from the clock
(people with a message or an obligation due in between). A whole plan, streamed chunk by
chunk in the background, runs at start and every ``full_every`` seconds as the safety net
(a program file changed, a continuous program's horizon moved); ticks, and so reactions to
facts, run between its chunks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.deliver import DeliveryReport
from scheduler.daemon.service import Service

log = logging.getLogger("tickler")
Clock = Callable[[], datetime]
# The simulator replans every program at least this often.
FULL_REPLAN = timedelta(days=30)


def utc_now() -> datetime:
    return datetime.now(UTC)


def clock_from(start: datetime, *, origin: float | None = None) -> Clock:
    """Return a clock that read ``start`` at ``time.monotonic()`` ``origin`` (default: now)
    and advances in real time (``--now``)."""
    origin = time.monotonic() if origin is None else origin

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return clock


@dataclass(slots=True)
class EventCursor:
    """How far the daemon has read the event log, robust to ids committed out of order.

    On PostgreSQL ids come from a sequence and are taken at insert: a transaction may commit
    id 10 after another committed id 11. So the cursor keeps ``low`` (every id up to it was
    read), the ids above it already read, and each missing id with when it was first missed:
    a missing id is waited for ``wait`` seconds (a transaction in flight), then taken for a
    rollback. The periodic whole plan covers anything slower still.
    """

    low: int
    seen: set[int] = field(default_factory=set)
    missing: dict[int, float] = field(default_factory=dict)

    def advance(self, ids: list[int], at: float, wait: float = 60.0) -> None:
        self.seen.update(i for i in ids if i > self.low)
        if not self.seen:
            return
        top = max(self.seen)
        gap = [i for i in range(self.low + 1, top) if i not in self.seen]
        if len(gap) > 10_000:  # a huge hole is not one transaction in flight
            gap = []
        self.missing = {i: self.missing.get(i, at) for i in gap}
        waiting = [i for i, since in self.missing.items() if at - since < wait]
        self.low = min(waiting) - 1 if waiting else top
        self.seen = {i for i in self.seen if i > self.low}
        self.missing = {i: t for i, t in self.missing.items() if i > self.low}


class Daemon:
    """Run ticks until ``stop`` is set; a tick plans (when asked) then delivers what is due.

    A plan that fails does not stop the delivery of its tick: what is due was planned before
    and must go out. The plan is owed again (the next tick retries it) and ``plan_error``
    says why until a plan succeeds; ``/readyz`` shows it.
    """

    def __init__(
        self,
        service: Service,
        *,
        clock: Clock = utc_now,
        sweep: float = 60.0,
        poll: float = 1.0,
        full_every: float = 6 * 3600.0,
    ) -> None:
        self.service = service
        self.clock = clock
        self.sweep = sweep
        self.poll = poll
        self.full_every = full_every
        self._cursor: EventCursor | None = None
        self._planned_at: datetime | None = None  # the clock of the last incremental plan
        self._full: asyncio.Task[None] | None = None
        # time.monotonic() counts from the machine's boot, so "never" is -inf, not 0: with 0
        # a machine up for less than ``full_every`` would wait out the rest of it.
        self._full_started = -math.inf  # time.monotonic() of the last whole plan's start
        # The last whole plan failed: the next tick starts it again. Only a whole plan plans
        # the people nothing changed for, so one left unfinished is never made up otherwise.
        self._full_owed = False
        self._swept = -math.inf  # time.monotonic() of the last sweep's plan
        self._kicks: set[asyncio.Task[DeliveryReport | None]] = set()
        self.stop = asyncio.Event()
        self.running = False
        self.ticks = 0
        self.failing = False
        self.plan_error: str | None = None  # why the last plan failed; None once one succeeds
        self._replan_owed = False
        self._lock = asyncio.Lock()  # delivery
        self._plan_lock = asyncio.Lock()  # planning: a tick's, or one chunk of a whole plan
        self._last_event = -1
        self._scheduler: AsyncIOScheduler | None = None

    async def run(self) -> None:
        """Serve until ``stop`` is set; then finish the sends in flight and return."""
        self.service.claim_single_replica()
        await asyncio.to_thread(self.service.migrate)
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._scheduler = scheduler
        scheduler.add_job(
            self.tick, "interval", seconds=self.sweep, id="sweep", kwargs={"replan": True}
        )
        scheduler.add_job(self.watch_events, "interval", seconds=self.poll, id="events")
        self.service.on_recorded = self._poll_now
        scheduler.start()
        self.running = True
        metrics = self.service.metrics
        metrics.running.labels(metrics.owner).set(1)
        log.info(
            "started",
            extra={
                "action": "started",
                "owner": self.service.owner,
                "programs": len(self.service.programs),
            },
        )
        try:
            self._start_full()
            await self.stop.wait()
        finally:
            self.running = False
            metrics.running.labels(metrics.owner).set(0)
            # The tick in flight finishes its sends first: APScheduler's asyncio executor
            # cancels the jobs still running when it shuts down (mid-send, leaving claims).
            async with self._lock, self._plan_lock:
                scheduler.shutdown(wait=False)
            if self._full is not None:
                await asyncio.gather(self._full, return_exceptions=True)
            # Kicked deliveries see ``stop`` and return; wait for them before the engine goes.
            await asyncio.gather(*self._kicks, return_exceptions=True)
            await self.service.close()
            log.info("stopped", extra={"action": "stopped", "owner": self.service.owner})

    def _poll_now(self) -> None:
        """Look at the event log now: a fact was just recorded through this process (its
        person's reminders should stop within the second, not a poll later). A poll already
        running (``max_instances``) sees it, or the next one does."""
        if self._scheduler is not None and self.running and not self.stop.is_set():
            job = self._scheduler.get_job("events")
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC))

    async def watch_events(self) -> None:
        """Replan as soon as a new fact is recorded (by the CLI, the API, another replica)."""
        try:
            last = await self.service.last_event_id()
        except Exception as exc:  # the database is down: the next poll tries again
            self._trouble(exc)
            return
        if last != self._last_event:
            self._last_event = last
            # Deliver in a task of its own: this job runs one instance at a time, so a poll
            # that waited for the delivery (the new receipt, a wave) left the next fact
            # unplanned until it ended; measured, 2-5 s of a reaction's wait beside a plan.
            if await self._replan():
                self._kick()

    def _trouble(self, exc: Exception) -> None:
        # One line per outage, not one per second: the polls keep failing until it is back.
        if not self.failing:
            log.error(
                "tick failed",
                exc_info=exc,
                extra={"action": "tick_failed", "owner": self.service.owner},
            )
        self.failing = True

    def _start_full(self) -> None:
        """Start a whole plan in the background unless one is running."""
        if self._full is None or self._full.done():
            self._full_started = time.monotonic()
            self._full_owed = False
            self._full = asyncio.create_task(self._plan_all())

    async def _plan_all(self) -> None:
        """Plan everything, chunk by chunk (ticks run in between), then deliver what is due.

        The event log is read from where it stood when this plan began: what is recorded
        meanwhile is planned again by the ticks, after the chunk that read it (or not).
        """
        try:
            low = await self.service.last_event_id()
            now = self.clock()
            if self._cursor is None:
                self._cursor = EventCursor(low=low)
                self._planned_at = now
            await self.service.plan(now, lock=self._plan_lock, stop=self.stop, progress=self._kick)
        except Exception as exc:
            self._full_owed = True
            self._plan_failed(exc)
            return
        self._plan_recovered()
        await self.tick()

    def _kick(self) -> None:
        """Deliver now, unless a delivery is in flight (it claims what was just planned)."""
        if not self._lock.locked() and not self.stop.is_set():
            task = asyncio.create_task(self.tick())
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    async def tick(self, *, replan: bool = False) -> DeliveryReport | None:
        """Plan what changed (when asked, or owed), then deliver what is due.

        Planning and delivery hold locks of their own: a fact's reaction is planned at once
        even while a long wave is being sent (the database decides who sends what, so the
        two never need each other), and a tick that finds delivery in flight leaves the new
        rows to it, or to the next wake.
        """
        if self.stop.is_set():
            return None
        if (replan or self._replan_owed) and not await self._replan():
            return None
        if replan and self._lock.locked():
            return None  # the delivery in flight (or the next wake) sends what was planned
        async with self._lock:
            if self.stop.is_set():  # stopped while waiting for the tick in flight
                return None
            try:
                report = await self._tick()
            except Exception as exc:  # database or network down: the sweep retries
                self._trouble(exc)
                return None
            if self.failing:
                log.info("recovered", extra={"action": "recovered", "owner": self.service.owner})
                self.failing = False
            return report

    async def _replan(self) -> bool:
        """Plan what changed, under the planning lock; return False when stopped meanwhile."""
        self._replan_owed = False
        async with self._plan_lock:
            if self.stop.is_set():
                return False
            await self._plan(self.clock())
        return True

    async def _tick(self) -> DeliveryReport:
        now = self.clock()
        metrics = self.service.metrics
        with metrics.tick_seconds.labels(metrics.owner).time():
            report = await self.service.deliver(now, stop=self.stop, clock=self.clock)
        self.ticks += 1
        metrics.ticks.labels(metrics.owner).inc()
        wake = await self.service.next_due()
        if wake is not None and self._scheduler is not None and not self.stop.is_set():
            # APScheduler runs on the real clock, ``self.clock`` may not (``--now``, a
            # test's fake clock): wake after the same delay, not at the same reading.
            # Never in the past: APScheduler would run it at once, which is what we want.
            delay = max(wake - self.clock(), timedelta(milliseconds=10))
            self._scheduler.add_job(
                self.tick, "date", run_date=utc_now() + delay, id="wake", replace_existing=True
            )
        return report

    async def _plan(self, now: datetime) -> None:
        """Plan what changed since the last tick, at ``now``; when that fails, log it (once,
        until a plan succeeds again), owe the plan to the next tick and return: the tick
        delivers what is due all the same. A sweep also plans what belongs to no person and
        starts the periodic whole plan when it is due."""
        cursor, since = self._cursor, self._planned_at
        if cursor is None or since is None:
            # The first whole plan has not read the log yet, or failed before it could (the
            # database was down at start): then only it can plan, and it is owed.
            if self._full_owed:
                self._start_full()
            return
        try:
            ids, scope = await self.service.changes(cursor.low, since, now, seen=cursor.seen)
            sweep = time.monotonic() - self._swept >= self.sweep
            if scope or sweep:
                await self.service.plan_scope(now, scope, unowned=sweep)
            if sweep:
                self._swept = time.monotonic()
        except Exception as exc:
            self._replan_owed = True
            self._plan_failed(exc)
            return
        cursor.advance(ids, time.monotonic())
        self._planned_at = max(since, now)
        self._plan_recovered()
        if self._full_owed or time.monotonic() - self._full_started >= self.full_every:
            self._start_full()

    def _plan_failed(self, exc: Exception) -> None:
        """Log a failed plan once, until a plan succeeds again; ``/readyz`` shows it."""
        if self.plan_error is None:
            log.error(
                "planning failed",
                exc_info=exc,
                extra={"action": "planning_failed", "owner": self.service.owner},
            )
        self.plan_error = f"{type(exc).__name__}: {exc}"[:300]

    def _plan_recovered(self) -> None:
        if self.plan_error is not None:
            log.info(
                "planning recovered",
                extra={"action": "planning_recovered", "owner": self.service.owner},
            )
            self.plan_error = None


@dataclass(slots=True)
class SimulationReport:
    start: datetime
    end: datetime
    steps: int = 0
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


async def simulate(
    service: Service,
    *,
    start: datetime,
    end: datetime,
    progress: Callable[[datetime, SimulationReport], None] | None = None,
    every: float = 2.0,
) -> SimulationReport:
    """Run the daemon's ticks on a virtual clock jumping from due instant to due instant.

    A fact recorded with a time inside the window takes effect when the clock reaches it, so a
    scripted campaign (the demo scenario) plays out as it would in real time. ``progress`` is
    told the virtual clock and the report so far at most every ``every`` seconds of real time
    (a long run shows it is moving).
    """
    await asyncio.to_thread(service.migrate)
    report = SimulationReport(start=start, end=end)
    now = start
    told = time.monotonic()
    planned_at: datetime | None = None
    full_at = start
    try:
        while now <= end:
            # Replan every program once a simulated month (horizons, states) and whenever a
            # fact dated before the clock concerns no single program; otherwise only the
            # programs whose facts the clock has just reached (and the weekly digest, always
            # planned a week ahead so that the clock stops on every Monday): the same plan,
            # far fewer queries.
            touched = (
                set() if planned_at is None else await service.touched_programs(planned_at, now)
            )
            if planned_at is None or now - full_at >= FULL_REPLAN or None in touched:
                await service.plan(now)
                full_at = now
            else:
                await service.plan(now, only={p for p in touched if p is not None})
            planned_at = now
            report.delivery.add(await service.deliver(now))
            report.steps += 1
            if progress is not None and time.monotonic() - told >= every:
                progress(now, report)
                told = time.monotonic()
            candidates = [
                t for t in (await service.next_due(), await service.next_fact_after(now)) if t
            ]
            if not candidates:
                break
            now = max(min(candidates), now + timedelta(microseconds=1))
    finally:
        await service.close()
    return report
