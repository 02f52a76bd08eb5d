"""The option exchange offer: slide 9's table, who may take part, which grants go in, rounding."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest

from calendars.exchange import (
    EligibilityRule,
    ExchangeLine,
    ExchangeRule,
    Holder,
    OptionGrant,
    Rounding,
    exchange_lines,
    grant_eligible,
    holder_eligible,
    new_shares,
)

# The seed offer (slides 6 and 7): U.S.-based employees hired before 2002-12-19, not directors
# or executive officers; grants at $3.01 or more, and every grant of 2002-06-19 to 2002-12-19.
SEED_RULE = EligibilityRule(
    min_price=Decimal("3.01"),
    hired_before=date(2002, 12, 19),
    countries=frozenset({"US"}),
    excluded_roles=frozenset({"director", "executive_officer"}),
    lookback_start=date(2002, 6, 19),
    lookback_end=date(2002, 12, 19),
)
SEED_EXCHANGE = ExchangeRule()  # 75%, rounded up (slide 9)


def _grant(grant_date: date, unexercised: int, price: str) -> OptionGrant:
    return OptionGrant(
        grant_id=f"G-{grant_date:%Y%m%d}",
        grant_date=grant_date,
        unexercised=unexercised,
        price=Decimal(price),
    )


SLIDE_9 = [
    # grant date, unexercised, price, eligible, exchanged, new shares
    (date(2000, 5, 20), 800, "6.00", True, 800, 600),
    (date(2001, 3, 5), 1000, "4.50", True, 1000, 750),
    (date(2002, 2, 28), 500, "2.18", False, 0, 0),  # "Ineligible", "N/A"
    (date(2002, 7, 1), 500, "0.40", True, 500, 375),  # in the look-back window
]


@pytest.mark.parametrize(
    ("grant_date", "unexercised", "price", "eligible", "exchanged", "new"), SLIDE_9, ids=str
)
def test_slide_9_line(
    grant_date: date, unexercised: int, price: str, eligible: bool, exchanged: int, new: int
) -> None:
    grant = _grant(grant_date, unexercised, price)

    (line,) = exchange_lines([grant], SEED_RULE, SEED_EXCHANGE)

    assert line == ExchangeLine(grant=grant, eligible=eligible, exchanged=exchanged, new_shares=new)


def test_slide_9_table_keeps_the_grants_in_order() -> None:
    grants = [_grant(d, n, p) for d, n, p, *_ in SLIDE_9]

    lines = exchange_lines(grants, SEED_RULE, SEED_EXCHANGE)

    assert [line.grant for line in lines] == grants
    assert [(line.exchanged, line.new_shares) for line in lines] == [
        (800, 600),
        (1000, 750),
        (0, 0),
        (500, 375),
    ]
    assert sum(line.new_shares for line in lines) == 1725


@pytest.mark.parametrize(
    ("grant_date", "price", "eligible"),
    [
        (date(2001, 1, 2), "3.01", True),  # "$3.01 or greater"
        (date(2001, 1, 2), "3.00", False),
        (date(2001, 1, 2), "3.0099", False),
        (date(2001, 1, 2), "25.00", True),
        # the look-back window, both ends included, whatever the price
        (date(2002, 6, 18), "0.40", False),
        (date(2002, 6, 19), "0.40", True),
        (date(2002, 9, 30), "0.01", True),
        (date(2002, 12, 19), "0.40", True),
        (date(2002, 12, 20), "0.40", False),
        (date(2002, 12, 20), "3.01", True),
    ],
    ids=str,
)
def test_grant_eligible(grant_date: date, price: str, eligible: bool) -> None:
    assert grant_eligible(_grant(grant_date, 100, price), SEED_RULE) is eligible


@pytest.mark.parametrize(
    ("exchanged", "rule", "expected"),
    [
        (800, SEED_EXCHANGE, 600),
        (1000, SEED_EXCHANGE, 750),
        (500, SEED_EXCHANGE, 375),
        (1, SEED_EXCHANGE, 1),  # 0.75 up
        (3, SEED_EXCHANGE, 3),  # 2.25 up
        (0, SEED_EXCHANGE, 0),
        (1_000_000_001, SEED_EXCHANGE, 750_000_001),  # 750000000.75 up
        (3, ExchangeRule(rounding=Rounding.DOWN), 2),
        (1, ExchangeRule(rounding=Rounding.DOWN), 0),
        (3, ExchangeRule(rounding=Rounding.HALF_UP), 2),  # 2.25
        (1, ExchangeRule(rounding=Rounding.HALF_UP), 1),  # 0.75
        (2, ExchangeRule(rounding=Rounding.HALF_UP), 2),  # 1.5
        (3, ExchangeRule(ratio=Decimal("0.5"), rounding=Rounding.HALF_UP), 2),  # 1.5
        (3, ExchangeRule(ratio=Decimal("0.5"), rounding=Rounding.DOWN), 1),
        (7, ExchangeRule(ratio=Decimal(1)), 7),
        (10, ExchangeRule(ratio=Decimal("0.333"), rounding=Rounding.UP), 4),  # 3.33
    ],
    ids=str,
)
def test_new_shares(exchanged: int, rule: ExchangeRule, expected: int) -> None:
    assert new_shares(exchanged, rule) == expected


SEED_EMPLOYEE = Holder(country="US", hire_date=date(2002, 1, 1), roles=frozenset({"employee"}))


@pytest.mark.parametrize(
    ("holder", "eligible", "reason"),
    [
        pytest.param(SEED_EMPLOYEE, True, "", id="us-employee"),
        pytest.param(
            Holder(country="US", hire_date=date(2002, 12, 18), roles=frozenset()),
            True,
            "",
            id="hired-the-day-before",
        ),
        pytest.param(
            Holder(country="US", hire_date=date(2002, 12, 19), roles=frozenset({"employee"})),
            False,
            "hired 2002-12-19, not before 2002-12-19",
            id="hired-on-the-day",
        ),
        pytest.param(
            Holder(country="GB", hire_date=date(2002, 1, 1), roles=frozenset({"employee"})),
            False,
            "based in GB, not in US",
            id="non-us",
        ),
        pytest.param(
            Holder(country="US", hire_date=date(1999, 1, 1), roles=frozenset({"director"})),
            False,
            "holds an excluded role: director",
            id="director",
        ),
        pytest.param(
            Holder(
                country="US",
                hire_date=date(1999, 1, 1),
                roles=frozenset({"employee", "executive_officer"}),
            ),
            False,
            "holds an excluded role: executive_officer",
            id="executive-officer",
        ),
        pytest.param(
            Holder(
                country="DE",
                hire_date=date(2003, 1, 6),
                roles=frozenset({"executive_officer", "director"}),
            ),
            False,
            "based in DE, not in US; hired 2003-01-06, not before 2002-12-19;"
            " holds an excluded role: director, executive_officer",
            id="every-reason",
        ),
    ],
)
def test_holder_eligible(holder: Holder, eligible: bool, reason: str) -> None:
    assert holder_eligible(holder, SEED_RULE) == (eligible, reason)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: new_shares(-1, SEED_EXCHANGE),
            "exchanged shares must be 0 or more, not -1",
            id="negative-exchange",
        ),
        pytest.param(
            lambda: ExchangeRule(ratio=Decimal(0)),
            "exchange ratio must be more than 0, not 0",
            id="zero-ratio",
        ),
        pytest.param(
            lambda: _grant(date(2001, 1, 2), -5, "4.00"),
            "grant G-20010102: unexercised must be 0 or more",
            id="negative-unexercised",
        ),
        pytest.param(
            lambda: _grant(date(2001, 1, 2), 5, "-4.00"),
            "grant G-20010102: price must be 0 or more",
            id="negative-price",
        ),
        pytest.param(
            lambda: EligibilityRule(
                min_price=Decimal("3.01"),
                hired_before=date(2002, 12, 19),
                countries=frozenset({"US"}),
                excluded_roles=frozenset(),
                lookback_start=date(2002, 12, 19),
                lookback_end=date(2002, 6, 19),
            ),
            "look-back window starts 2002-12-19 after it ends 2002-06-19",
            id="reversed-look-back",
        ),
    ],
)
def test_rejects(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
