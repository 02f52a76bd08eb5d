"""A delivery run that fails ends, even when a worker does not take its first cancellation.

Python 3.11's ``asyncio.wait_for`` (aiosmtplib awaits every SMTP reply with it) drops a
cancellation that arrives in the same loop iteration as the reply: the send returns normally
and the worker goes on. Before ``_cancel_all`` that worker waited for its next message in a
queue nobody filled any more, and ``deliver_due`` never returned (a CI run hung there).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import pytest
from sqlalchemy import select

from jobs.deliver import DeliveryOptions, deliver_due
from jobs.mail.mime import OutgoingMessage
from jobs.mail.transport import DeliveryResult, DeliveryStatus
from jobs.storage import Engine
from jobs.storage.db import OutboxMessage, OutboxState, begin_write, session_factory
from jobs.storage.outbox import enqueue
from tests.integration.test_rate_limits import NOW, notices


class Crash(Exception):
    """The run fails: raised by the first message's send."""


class CancelMissed:
    """The first message's send fails once the second's is on the wire; the second's send
    takes no notice of the cancellation that follows (the server's reply came with it) and
    reports the message accepted, as Python 3.11's ``wait_for`` does. Every other message is
    accepted at once."""

    def __init__(self, first: str, second: str) -> None:
        self.first, self.second = first, second
        self.on_the_wire = asyncio.Event()
        self.sent: list[str] = []

    async def send(self, msg: OutgoingMessage, *, date: datetime) -> DeliveryResult:
        if msg.to == (self.first,):
            await self.on_the_wire.wait()
            raise Crash(msg.message_id)
        if msg.to == (self.second,):
            self.on_the_wire.set()
            # The reply and the cancellation came together: the reply wins.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
        self.sent.append(msg.to[0])
        return DeliveryResult(status=DeliveryStatus.SENT, code=250, detail="ok")

    async def close(self) -> None:
        pass


async def test_a_failed_run_ends_when_a_worker_misses_its_cancellation(engine: Engine) -> None:
    factory = session_factory(engine)
    planned = notices(["example.com"], 6)
    with begin_write(factory) as session:
        enqueue(session, planned, NOW)
    transport = CancelMissed(planned[0].recipient, planned[1].recipient)
    with pytest.raises(Crash):
        async with asyncio.timeout(20):  # a hang fails here as TimeoutError, not Crash
            await deliver_due(
                factory,
                transport,
                DeliveryOptions(sender="compliance@example.com", concurrency=2, batch=6),
                owner="cancel-test",
                now=NOW,
            )
    with factory() as session:
        rows = {row.recipient: row.state for row in session.scalars(select(OutboxMessage))}
    # The message the server accepted despite the cancellation is recorded as sent; the one
    # whose send failed stays claimed (its lease runs out, the reaper gives it back); none
    # went out twice.
    assert planned[1].recipient in transport.sent
    assert rows[planned[1].recipient] == OutboxState.SENT
    assert rows[planned[0].recipient] == OutboxState.CLAIMED
    assert len(transport.sent) == len(set(transport.sent))
    assert all(rows[r] == OutboxState.SENT for r in transport.sent)
