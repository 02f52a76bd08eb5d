"""``/metrics``: the replica's series, its HTTP counters and the database's figures.

Each app has a ``CollectorRegistry`` of its own (never prometheus_client's global one) that
holds three things: the service's registry (process, build, delivery and planning series; see
``scheduler.daemon.metrics``), the HTTP counters below, and ``DatabaseCollector``, which reads
the outbox and the obligations at each scrape. The first two are this replica's and carry an
``owner`` label: sum them over replicas. The database's figures are the same whichever replica
answers and carry none: take one replica's, or ``max`` over replicas, never ``sum``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from jobs.storage import SessionFactory, queries
from scheduler.daemon.metrics import Metrics

log = logging.getLogger("tickler")


class HttpMetrics:
    """Counters of the HTTP handlers, labelled with the replica."""

    def __init__(self, registry: CollectorRegistry, owner: str) -> None:
        self.owner = owner
        self.feed_requests = Counter(
            "tickler_feed_requests",
            "Feed requests by feed kind and status (304: not modified).",
            ["owner", "kind", "code"],
            registry=registry,
        )
        self.feed_renders = Counter(
            "tickler_feed_renders",
            "Feeds rendered (cache misses), by feed kind.",
            ["owner", "kind"],
            registry=registry,
        )
        self.api_requests = Counter(
            "tickler_api_requests",
            "JSON API calls by endpoint and status.",
            ["owner", "endpoint", "code"],
            registry=registry,
        )

    def feed_request(self, kind: str, code: int) -> None:
        self.feed_requests.labels(self.owner, kind, str(code)).inc()

    def feed_render(self, kind: str) -> None:
        self.feed_renders.labels(self.owner, kind).inc()

    def api_request(self, endpoint: str, code: int) -> None:
        self.api_requests.labels(self.owner, endpoint, str(code)).inc()


class DatabaseCollector(Collector):
    """The outbox and obligation figures, read from the database at each scrape.

    ``collect`` runs in the scrape's worker thread. When the database cannot be read,
    ``tickler_database_up`` is 0 and the figures are left out (a gap, not a false zero).
    """

    def __init__(
        self, factory: SessionFactory, clock: Callable[[], datetime], programs: Sequence[str]
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._programs = tuple(programs)

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        try:
            with self._factory() as session:
                figures = queries.outbox_figures(session, now)
                owed = queries.open_obligations(session, now)
        except Exception as exc:  # the scrape must still answer: say the database is down
            log.warning(
                "metrics: cannot read the database",
                extra={"action": "metrics_database_unreachable", "error": repr(exc)},
            )
            yield _gauge("tickler_database_up", "1 when the database answered this scrape.", 0)
            return
        yield _gauge("tickler_database_up", "1 when the database answered this scrape.", 1)
        messages = GaugeMetricFamily(
            "tickler_outbox_messages", "Messages in the outbox, by state.", labels=["state"]
        )
        for state, n in sorted(figures.by_state.items()):
            messages.add_metric([state], n)
        yield messages
        yield _gauge(
            "tickler_outbox_due_backlog",
            "Pending messages whose due time has passed.",
            figures.due_backlog,
        )
        yield _gauge(
            "tickler_outbox_oldest_due_seconds",
            "How long the oldest due pending message has waited.",
            figures.oldest_due_seconds,
        )
        states = GaugeMetricFamily(
            "tickler_obligations",
            "Obligations (responses, elections, acknowledgments) by program and state.",
            labels=["program", "state"],
        )
        for (program, state), n in sorted(figures.obligations.items()):
            states.add_metric([program, state], n)
        yield states
        pending = GaugeMetricFamily(
            "tickler_obligations_pending",
            "Obligations still owed (not answered, incomplete, overdue, escalated), by program.",
            labels=["program"],
        )
        overdue = GaugeMetricFamily(
            "tickler_obligations_overdue",
            "Obligations still owed whose due time has passed, by program.",
            labels=["program"],
        )
        for program in sorted({*self._programs, *owed}):
            open_, late = owed.get(program, (0, 0))
            pending.add_metric([program], open_)
            overdue.add_metric([program], late)
        yield pending
        yield overdue


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def app_registry(
    service_metrics: Metrics,
    factory: SessionFactory,
    clock: Callable[[], datetime],
    programs: Sequence[str],
) -> tuple[CollectorRegistry, HttpMetrics]:
    """Return the registry ``/metrics`` serves and the HTTP counters registered on it."""
    # No auto-describe: it would read the database (and the /proc files) at registration.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(service_metrics.registry)
    registry.register(DatabaseCollector(factory, clock, programs))
    return registry, HttpMetrics(registry, service_metrics.owner)
