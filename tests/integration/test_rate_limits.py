"""Send-rate limits against a real SMTP server (aiosmtpd): the rate held, order and
exactly-once kept.

Arrivals are timed at the server and counted in every one-second window starting at an
arrival; the tolerance is one or two messages per window (a wake-up a little late lets the
next slot come close behind it), never a timing finer than the rate's own interval.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from calendars.notices import Notice
from jobs.deliver import DeliveryOptions, deliver_due
from jobs.rate import Limiter, domain_of
from jobs.storage import Engine
from jobs.storage.db import begin_write, session_factory
from jobs.storage.outbox import enqueue
from tests.smtp_sink import Recorder, Server, message_id, sinks

NOW = datetime(2017, 1, 9, 17, 0, tzinfo=UTC)
CONNECTIONS = 4


class TimedRecorder(Recorder):
    """Also notes when each message arrived (monotonic seconds) and to which domain."""

    def __init__(self) -> None:
        super().__init__(keep_content=False)
        self.arrivals: list[tuple[float, str, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        assert envelope.original_content is not None
        mid = message_id(envelope.original_content) or "-"
        self.arrivals.append((time.monotonic(), domain_of(envelope.rcpt_tos[0]), mid))
        return reply


@pytest.fixture
def timed() -> Iterator[tuple[Server, TimedRecorder]]:
    recorder = TimedRecorder()
    with sinks() as started:
        yield started.start(recorder), recorder


def notices(domains: list[str], count: int) -> list[Notice]:
    """Return ``count`` CMRT requests, one a second overdue apart (the oldest first), to the
    ``domains`` in turn."""
    return [
        Notice(
            program="rate-test",
            occurrence="2016",
            person_id=None,
            recipient_key=f"supplier:S{n:04d}",
            recipient=f"s{n:04d}@{domains[n % len(domains)]}",
            job="cmrt_request",
            step="request/wave-1",
            template="cmrt_request",
            context={
                "program_name": "Conflict minerals RY2016 (Form SD)",
                "reporting_year": 2016,
                "form_sd_due": "2017-05-31",
                "name": f"Supplier S{n:04d}",
                "wave": "wave-1",
                "response_due": "2017-02-10",
            },
            due=NOW - timedelta(seconds=count - n),
            expires=NOW + timedelta(days=140),
        )
        for n in range(count)
    ]


async def deliver(engine: Engine, server: Server, planned: list[Notice], limiter: Limiter) -> int:
    factory = session_factory(engine)
    with begin_write(factory) as session:
        enqueue(session, planned, NOW)
    transport = server.transport(connections=CONNECTIONS)
    try:
        report = await deliver_due(
            factory,
            transport,
            DeliveryOptions(sender="compliance@example.com", concurrency=CONNECTIONS),
            owner="rate-test",
            now=NOW,
            limiter=limiter,
        )
    finally:
        await transport.close()
    return report.sent


def busiest_second(times: list[float]) -> int:
    """Return the most arrivals in any one-second window that starts at an arrival."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


def due_order(planned: list[Notice], arrivals: list[tuple[float, str, str]]) -> list[int]:
    """Return, for each arrival in turn, the position of its message in due order."""
    rank = {n.message_id: i for i, n in enumerate(sorted(planned, key=lambda n: n.due))}
    return [rank[mid] for _, _, mid in sorted(arrivals)]


async def test_the_overall_rate_is_held_in_due_order_each_message_once(
    engine: Engine, timed: tuple[Server, TimedRecorder]
) -> None:
    server, recorder = timed
    rate, count = 20, 60
    planned = notices(["a.example", "b.example", "c.example"], count)

    sent = await deliver(engine, server, planned, Limiter(rate=rate))

    assert sent == count
    assert recorder.message_ids == Counter(n.message_id for n in planned)
    times = [t for t, _, _ in recorder.arrivals]
    assert busiest_second(times) <= rate + 2
    # Spaced, not merely capped per window: the whole run takes its (count - 1) intervals.
    assert max(times) - min(times) >= 0.9 * (count - 1) / rate
    # In due order, up to the CONNECTIONS messages that may be on the wire together.
    order = due_order(planned, recorder.arrivals)
    assert all(abs(position - i) < CONNECTIONS for i, position in enumerate(order)), order
    print(f"\nbusiest second: {busiest_second(times)} of {rate}/s")


async def test_a_domain_rate_holds_each_domain_and_not_the_total(
    engine: Engine, timed: tuple[Server, TimedRecorder]
) -> None:
    server, recorder = timed
    domain_rate, count = 5, 24
    planned = notices(["one.example", "two.example"], count)

    sent = await deliver(engine, server, planned, Limiter(domain_rate=domain_rate))

    assert sent == count
    assert recorder.message_ids == Counter(n.message_id for n in planned)
    by_domain: dict[str, list[float]] = {}
    for at, domain, _ in recorder.arrivals:
        by_domain.setdefault(domain, []).append(at)
    assert sorted(by_domain) == ["one.example", "two.example"]
    for times in by_domain.values():
        assert busiest_second(times) <= domain_rate + 1
        assert max(times) - min(times) >= 0.9 * (len(times) - 1) / domain_rate
    # The two domains went side by side: the total went over one domain's rate.
    assert busiest_second([t for t, _, _ in recorder.arrivals]) > domain_rate + 1
