"""The send-rate core: GCRA slots as a table, and the limiter on a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import Settings
from jobs.rate import FORGET_AFTER, Limiter, Slot, domain_of


@pytest.mark.parametrize(
    ("rate", "burst", "calls", "expected"),
    [
        # calls: the instants of successive reservations; expected: when each may go.
        pytest.param(2.0, 1, [0, 0, 0], [0, 0.5, 1.0], id="back-to-back calls are spaced"),
        pytest.param(2.0, 1, [0, 3, 3], [0, 3, 3.5], id="an idle period is not saved up"),
        pytest.param(2.0, 3, [0, 0, 0, 0], [0, 0, 0, 0.5], id="a burst goes at once, then spaced"),
        pytest.param(2.0, 3, [0, 0, 0, 10, 10, 10, 10], [0, 0, 0, 10, 10, 10, 10.5], id="refilled"),
        pytest.param(1.0, 1, [0, 0.4, 0.9, 5], [0, 1, 2, 5], id="calls before the slot wait"),
        pytest.param(4.0, 1, [1, 1.25, 1.5], [1, 1.25, 1.5], id="calls on the slot do not wait"),
        pytest.param(0.5, 1, [0, 0], [0, 2], id="below one per second"),
    ],
)
def test_slots_are_handed_out_in_call_order_at_the_rate(
    rate: float, burst: int, calls: list[float], expected: list[float]
) -> None:
    slot = Slot(rate=rate, burst=burst)
    got = []
    for now in calls:
        at, slot = slot.reserve(now)
        got.append(at)
    assert got == pytest.approx(expected)
    assert got == sorted(got)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_rate_must_be_positive(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        Slot(rate=rate, burst=burst)


def test_a_slot_is_idle_once_its_reservations_are_past() -> None:
    _, slot = Slot(rate=1).reserve(10)
    assert not slot.idle(10.5)
    assert slot.idle(11)


@pytest.mark.parametrize(
    ("recipient", "domain"),
    [
        ("a@example.com", "example.com"),
        ("Pat Quinn <Pat.Quinn@Example.COM>", "example.com"),
        ('"Doe, J" <j@sub.example.org>', "sub.example.org"),
        ("no-domain", "no-domain"),
    ],
)
def test_domain_of(recipient: str, domain: str) -> None:
    assert domain_of(recipient) == domain


class FakeTime:
    """A monotonic clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def sends(limiter: Limiter, fake: FakeTime, recipients: list[str]) -> list[float]:
    """Return when each message goes, one after the other (one worker)."""

    async def run() -> list[float]:
        at = []
        for recipient in recipients:
            await limiter.wait(recipient)
            at.append(fake.now)
        return at

    return asyncio.run(run())


def test_the_overall_rate_spaces_every_message() -> None:
    fake = FakeTime()
    limiter = Limiter(rate=4, clock=fake, sleep=fake.sleep)
    at = sends(limiter, fake, [f"p{n}@d{n}.example" for n in range(5)])
    assert at == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_the_domain_rate_spaces_one_domain_and_leaves_the_others_alone() -> None:
    fake = FakeTime()
    limiter = Limiter(domain_rate=1, clock=fake, sleep=fake.sleep)
    at = sends(limiter, fake, ["a@one.example", "b@ONE.example", "c@two.example", "d@two.example"])
    # one.example: 0 and 1; two.example's first is free at once, its second a second later.
    assert at == pytest.approx([0, 1, 1, 2])


def test_both_limits_hold_together() -> None:
    fake = FakeTime()
    limiter = Limiter(rate=10, domain_rate=2, clock=fake, sleep=fake.sleep)
    at = sends(limiter, fake, ["a@x.example", "b@y.example", "c@x.example", "d@x.example"])
    assert at == pytest.approx([0, 0.1, 0.5, 1.0])


def test_no_limit_never_sleeps() -> None:
    fake = FakeTime()
    limiter = Limiter(clock=fake, sleep=fake.sleep)
    assert not limiter.limited
    assert sends(limiter, fake, ["a@x.example"] * 100) == [0] * 100


def test_idle_domains_are_forgotten_but_busy_ones_keep_their_slot() -> None:
    fake = FakeTime()
    limiter = Limiter(domain_rate=0.001, clock=fake, sleep=fake.sleep)
    sends(limiter, fake, ["a@idle.example"])  # its next slot is 1000 s away
    fake.now = 2000.0  # idle.example is idle again: forgotten once the table is full
    # Each new domain's first slot is at once: the clock stays at 2000 while they come.
    assert (
        sends(limiter, fake, [f"x@d{n}.example" for n in range(FORGET_AFTER)])
        == [2000.0] * FORGET_AFTER
    )
    fake.now = 2000.5
    [at] = sends(limiter, fake, ["b@d0.example"])  # d0 is still remembered: it waits
    assert at == pytest.approx(3000.0)
    assert "idle.example" not in limiter._domains
    assert len(limiter._domains) <= FORGET_AFTER


def test_the_settings_read_both_rates_and_refuse_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # away from any .env
    monkeypatch.setenv("TICKLER_SMTP_RATE", "2.5")
    monkeypatch.setenv("TICKLER_SMTP_DOMAIN_RATE", "0.5")
    settings = Settings()
    assert (settings.smtp_rate, settings.smtp_domain_rate) == (2.5, 0.5)
    monkeypatch.setenv("TICKLER_SMTP_RATE", "0")
    with pytest.raises(ValidationError, match="smtp_rate"):
        Settings()
    monkeypatch.delenv("TICKLER_SMTP_RATE")
    monkeypatch.delenv("TICKLER_SMTP_DOMAIN_RATE")
    assert Settings().smtp_rate is None
