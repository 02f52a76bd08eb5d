"""The daemon and the simulator: the same plan-and-deliver ticks on a real or a virtual clock.

APScheduler (3.x, in-memory job store) only wakes the daemon: at the next due instant, on a
periodic sweep (the safety net, and the reaper of dead replicas' leases) and when a new fact
lands in the event log. What is sent is decided by the database (claims and leases), so any
number of replicas may run these ticks on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.deliver import DeliveryReport
from scheduler.service import Service

log = logging.getLogger("tickler")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Run ticks until ``stop`` is set; a tick plans (when asked) then delivers what is due."""

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
        log.info(
            "action=started owner=%s programs=%d", self.service.owner, len(self.service.programs)
        )
        try:
            await self.tick(replan=True)
            await self.stop.wait()
        finally:
            self.running = False
            scheduler.shutdown(wait=False)
            async with self._lock:  # the tick in flight finishes its sends
                pass
            await self.service.close()
            log.info("action=stopped owner=%s", self.service.owner)

    async def watch_events(self) -> None:
        """Replan as soon as a new fact is recorded (by the CLI, the API, another replica)."""
        last = await self.service.last_event_id()
        if last != self._last_event:
            self._last_event = last
            await self.tick(replan=True)

    async def tick(self, *, replan: bool = False) -> DeliveryReport | None:
        if self.stop.is_set():
            return None
        async with self._lock:
            now = self.clock()
            if replan:
                await self.service.plan(now)
            report = await self.service.deliver(now, stop=self.stop)
            self.ticks += 1
            wake = await self.service.next_due()
            if wake is not None and self._scheduler is not None and not self.stop.is_set():
                # Never in the past: APScheduler would run it at once, which is what we want.
                run_at = max(wake, self.clock() + timedelta(milliseconds=10))
                self._scheduler.add_job(
                    self.tick, "date", run_date=run_at, id="wake", replace_existing=True
                )
            return report


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
    try:
        while now <= end:
            await service.plan(now)
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
