"""The daemon and the simulator: the same plan-and-deliver ticks on a real or a virtual clock.

APScheduler (3.x, in-memory job store) only wakes the daemon: at the next due instant, on a
periodic sweep (the safety net, and the reaper of dead replicas' leases) and when a new fact
lands in the event log. What is sent is decided by the database (claims and leases), so any
number of replicas may run these ticks on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
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


def clock_from(start: datetime) -> Clock:
    """Return a clock that reads ``start`` now and then advances in real time (``--now``)."""
    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return clock


class Daemon:
    """Run ticks until ``stop`` is set; a tick plans (when asked) then delivers what is due.

    A plan that fails does not stop the delivery of its tick: what is due was planned before
    and must go out. The plan is owed again (the next tick retries it) and ``plan_error``
    says why until a plan succeeds; ``/readyz`` shows it.
    """

    def __init__(
        self, service: Service, *, clock: Clock = utc_now, sweep: float = 60.0, poll: float = 1.0
    ) -> None:
        self.service = service
        self.clock = clock
        self.sweep = sweep
        self.poll = poll
        self.stop = asyncio.Event()
        self.running = False
        self.ticks = 0
        self.failing = False
        self.plan_error: str | None = None  # why the last plan failed; None once one succeeds
        self._replan_owed = False
        self._lock = asyncio.Lock()
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
            await self.tick(replan=True)
            await self.stop.wait()
        finally:
            self.running = False
            metrics.running.labels(metrics.owner).set(0)
            # The tick in flight finishes its sends first: APScheduler's asyncio executor
            # cancels the jobs still running when it shuts down (mid-send, leaving claims).
            async with self._lock:
                scheduler.shutdown(wait=False)
            await self.service.close()
            log.info("stopped", extra={"action": "stopped", "owner": self.service.owner})

    async def watch_events(self) -> None:
        """Replan as soon as a new fact is recorded (by the CLI, the API, another replica)."""
        try:
            last = await self.service.last_event_id()
        except Exception as exc:  # the database is down: the next poll tries again
            self._trouble(exc)
            return
        if last != self._last_event:
            self._last_event = last
            await self.tick(replan=True)

    def _trouble(self, exc: Exception) -> None:
        # One line per outage, not one per second: the polls keep failing until it is back.
        if not self.failing:
            log.error(
                "tick failed",
                exc_info=exc,
                extra={"action": "tick_failed", "owner": self.service.owner},
            )
        self.failing = True

    async def tick(self, *, replan: bool = False) -> DeliveryReport | None:
        if self.stop.is_set():
            return None
        async with self._lock:
            if self.stop.is_set():  # stopped while waiting for the tick in flight
                return None
            replan = replan or self._replan_owed
            self._replan_owed = False
            try:
                report = await self._tick(replan)
            except Exception as exc:  # database or network down: the sweep retries
                self._replan_owed = self._replan_owed or replan
                self._trouble(exc)
                return None
            if self.failing:
                log.info("recovered", extra={"action": "recovered", "owner": self.service.owner})
                self.failing = False
            return report

    async def _tick(self, replan: bool) -> DeliveryReport:
        now = self.clock()
        metrics = self.service.metrics
        with metrics.tick_seconds.labels(metrics.owner).time():
            if replan:
                await self._plan(now)
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
        """Plan at ``now``; when that fails, log it (once, until a plan succeeds again), owe
        the plan to the next tick and return: the tick delivers what is due all the same."""
        try:
            await self.service.plan(now)
        except Exception as exc:
            self._replan_owed = True
            if self.plan_error is None:
                log.error(
                    "planning failed",
                    exc_info=exc,
                    extra={"action": "planning_failed", "owner": self.service.owner},
                )
            self.plan_error = f"{type(exc).__name__}: {exc}"[:300]
            return
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


async def simulate(service: Service, *, start: datetime, end: datetime) -> SimulationReport:
    """Run the daemon's ticks on a virtual clock jumping from due instant to due instant.

    A fact recorded with a time inside the window takes effect when the clock reaches it, so a
    scripted campaign (the demo scenario) plays out as it would in real time.
    """
    await asyncio.to_thread(service.migrate)
    report = SimulationReport(start=start, end=end)
    now = start
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
            candidates = [
                t for t in (await service.next_due(), await service.next_fact_after(now)) if t
            ]
            if not candidates:
                break
            now = max(min(candidates), now + timedelta(microseconds=1))
    finally:
        await service.close()
    return report
