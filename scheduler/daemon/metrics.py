"""The process's own Prometheus series, on a registry of its own.

Each ``Service`` has one ``Metrics``: a private ``CollectorRegistry`` (never the client's global
one, so that tests and several services in one process do not collide) with the process,
platform and garbage-collector collectors, ``tickler_build_info``, and the counters and
histograms the daemon moves as it plans and delivers. Every series here carries an ``owner``
label, the replica's name in the log lines (``host:pid:random``): replicas scraped through one
address stay apart, and summing them over ``owner`` gives the whole fleet. Figures read from
the database, the same in every replica, are added by ``scheduler.web.metrics``.
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from jobs.deliver import Delivered

# ``*_created`` series (one per counter and histogram child) double the page for a figure that
# ``process_start_time_seconds`` already gives. Process-wide, like the client's own setting.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds from a message's due time to the server's acceptance: a wave claimed at its due
# instant is sent within seconds; a catch-up after an outage within hours.
LATENESS_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
# Planning the demo takes about 0.1 s; a company of 100,000 people tens of seconds.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Labelled(Collector):
    """Add constant labels to every sample of another collector (the process collectors have
    none, and two replicas' ``process_cpu_seconds_total`` must not look like one counter)."""

    def __init__(self, inner: Collector, **labels: str) -> None:
        self._inner = inner
        self._labels = labels

    def collect(self) -> Iterable[Metric]:
        for metric in self._inner.collect():
            out = copy.copy(metric)
            out.samples = [s._replace(labels={**self._labels, **s.labels}) for s in metric.samples]
            yield out


def package_version() -> str:
    try:
        return version("tickler")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class Metrics:
    """The in-process instruments of one replica (``owner``)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.registry = registry = CollectorRegistry(auto_describe=True)
        scratch = CollectorRegistry()  # the GC collector insists on registering somewhere
        for collector in (
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
            GCCollector(registry=scratch),
        ):
            registry.register(Labelled(collector, owner=owner))
        build = Info("tickler_build", "The running Tickler.", ["owner"], registry=registry)
        build.labels(owner).info(
            {"version": package_version(), "python": platform.python_version()}
        )
        mine = ["owner"]
        self.messages = Counter(
            "tickler_messages",
            "Messages by program, kind (job) and outcome: sent, retried, failed, skipped "
            "(their purpose passed), cancelled (no longer owed, by planning).",
            [*mine, "program", "kind", "outcome"],
            registry=registry,
        )
        self.lateness = Histogram(
            "tickler_send_lateness_seconds",
            "From a message's due time to its acceptance by the server, per message sent.",
            [*mine, "program"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.lost_leases = Counter(
            "tickler_lease_lost",
            "Outcomes written after another claim took the row (its lease had run out).",
            mine,
            registry=registry,
        )
        self.plan_seconds = Histogram(
            "tickler_plan_duration_seconds",
            "Time to plan (replan programs and reconcile the outbox).",
            mine,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "tickler_tick_duration_seconds",
            "Time of a daemon tick (a wake or a sweep): planning when asked, then delivering "
            "everything due.",
            mine,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.planning_failures = Counter(
            "tickler_planning_failures",
            "Plans that failed (the database, a program's rules); the next tick plans again.",
            mine,
            registry=registry,
        )
        self.planning_skips = Counter(
            "tickler_planning_skips",
            "Programs (what=program), or people under a program (what=person), that a plan left "
            "out because their rules raised; counted on every plan until the row is fixed "
            "(tickler status and /readyz name them).",
            [*mine, "program", "what"],
            registry=registry,
        )
        self.ticks = Counter("tickler_scheduler_ticks", "Daemon ticks.", mine, registry=registry)
        self.running = Gauge(
            "tickler_scheduler_running", "1 while the scheduler runs.", mine, registry=registry
        )
        # Series without a program label exist from the start: a rate over a restart sees 0.
        for metric in (
            self.lost_leases,
            self.plan_seconds,
            self.tick_seconds,
            self.planning_failures,
            self.ticks,
        ):
            metric.labels(owner)
        self.running.labels(owner).set(0)

    def delivered(self, outcome: Delivered) -> None:
        """Count one delivery outcome (``jobs.deliver``'s observer)."""
        owner = self.owner
        self.messages.labels(owner, outcome.program, outcome.job, outcome.outcome).inc()
        if outcome.outcome == "sent":
            lateness = (outcome.at - outcome.due_at).total_seconds()
            self.lateness.labels(owner, outcome.program).observe(max(lateness, 0.0))
        if not outcome.recorded:
            self.lost_leases.labels(owner).inc()

    def skipped(self, program: str, what: str) -> None:
        """Count one program or person a plan left out (``what``: "program" or "person")."""
        self.planning_skips.labels(self.owner, program, what).inc()

    def cancelled(self, counts: Iterable[tuple[tuple[str, str], int]]) -> None:
        """Count messages planning cancelled, by (program, kind)."""
        for (program, kind), n in counts:
            self.messages.labels(self.owner, program, kind, "cancelled").inc(n)
