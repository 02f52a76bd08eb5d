"""Send-rate limits: at most so many messages per second, overall and per recipient domain.

A relay limits a sender (Amazon SES: a rate per second; a receiving domain: a rate per
connecting host); going over gets 4xx replies, or the sender blocked. The daemon keeps under
them by spacing its sends, never by dropping or reordering: a message waits for its slot,
then goes.

The pure part is ``Slot``, a GCRA (generic cell rate algorithm, the "virtual scheduling"
form of a token bucket): its state is one instant, the theoretical arrival time of the next
message; ``reserve`` takes ``now`` and returns when this message may go and the state after
it. Reserving hands out slots in the order of the calls, each at least ``1/rate`` after the
one before it (``burst`` messages may go back to back after an idle period), so messages
reserved in due order go out in due order. Instants are seconds of a monotonic clock.

``Limiter`` is the stateful shell the delivery workers share: it keeps one ``Slot`` overall
and one per domain, reads an injected clock, and sleeps until the slot comes. It lives as
long as the daemon, so a new delivery run does not start with a fresh burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from email.utils import parseaddr


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    """One rate: ``rate`` messages per second, ``burst`` of them back to back at most.

    ``tat`` is the theoretical arrival time of the next message: the instant at which the
    bucket would be empty again had every message so far been sent exactly on its slot.
    """

    rate: float
    burst: int = 1
    tat: float = float("-inf")

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 1:
            raise ValueError(f"a rate must be > 0 and a burst >= 1 (got {self.rate}, {self.burst})")

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def earliest(self, now: float) -> float:
        """Return the first instant at or after ``now`` at which one more message may go."""
        return max(now, self.tat - (self.burst - 1) * self.interval)

    def reserve(self, now: float) -> tuple[float, Slot]:
        """Return when one more message may go (``now`` or later) and the state after it.

        The slot is reserved: a second call with the same ``now`` on the returned state gets
        the next slot, ``1/rate`` later once the burst is used up.
        """
        at = self.earliest(now)
        return at, replace(self, tat=max(self.tat, at) + self.interval)

    def idle(self, now: float) -> bool:
        """Say whether this rate is back to a fresh state at ``now`` (it may be forgotten)."""
        return self.tat <= now


def domain_of(recipient: str) -> str:
    """Return the lower-cased domain of an address (``Name <a@B.example>`` gives b.example)."""
    address = parseaddr(recipient)[1] or recipient
    return address.rpartition("@")[2].strip().lower()


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
FORGET_AFTER = 1024  # domains tracked before the idle ones are forgotten


@dataclass(slots=True, kw_only=True)
class Limiter:
    """Hold the delivery workers to ``rate`` messages per second in all and ``domain_rate``
    per recipient domain (either None: no limit of that kind).

    ``wait`` first waits for the recipient's domain slot, then for an overall one: a message
    held back by its domain does not hold an overall slot meanwhile, so messages to other
    domains are not slowed by a slow one (beyond the workers it keeps busy). The reservations
    are made without an ``await`` in between, so the order of ``wait`` calls is the order of
    the slots: a worker that took its message from the queue first sends first.
    """

    rate: float | None = None
    domain_rate: float | None = None
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    _overall: Slot | None = field(default=None, init=False)
    _domains: dict[str, Slot] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.rate is not None:
            self._overall = Slot(rate=self.rate)

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.domain_rate is not None

    async def wait(self, recipient: str) -> float:
        """Wait until a message to ``recipient`` may go; return the seconds waited."""
        start = self.clock()
        if self.domain_rate is not None:
            at = self._reserve_domain(domain_of(recipient), start)
            if at > start:
                await self.sleep(at - start)
        if self._overall is not None:
            now = self.clock()
            at, self._overall = self._overall.reserve(now)
            if at > now:
                await self.sleep(at - now)
        return self.clock() - start

    def _reserve_domain(self, domain: str, now: float) -> float:
        assert self.domain_rate is not None
        if len(self._domains) >= FORGET_AFTER:
            # An idle domain's slot is the same as a new one: forgetting it changes nothing.
            self._domains = {d: s for d, s in self._domains.items() if not s.idle(now)}
        slot = self._domains.get(domain) or Slot(rate=self.domain_rate)
        at, self._domains[domain] = slot.reserve(now)
        return at
