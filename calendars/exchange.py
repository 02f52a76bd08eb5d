"""Stock option exchange offers: who may take part, which grants go in, how many new shares.

The rules come from the seed offer (slides 6, 7 and 9 of the deck): U.S.-based employees hired
before the offer opens, not directors or executive officers; grants priced at or above a floor
are exchanged whole or not at all, and so, whatever their price, are the grants of the look-back
window before the offer; each exchanged grant earns 75% of its shares, rounded up.

Pure: the figures are arguments (the program file holds the seed's), no clock, no I/O.
Everything is a date, so time zones and DST play no part; prices are ``Decimal``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

__all__ = [
    "EligibilityRule",
    "ExchangeLine",
    "ExchangeRule",
    "Holder",
    "OptionGrant",
    "Rounding",
    "exchange_lines",
    "grant_eligible",
    "holder_eligible",
    "new_shares",
]


class Rounding(StrEnum):
    """How a fractional number of new shares becomes a whole one."""

    UP = "up"
    DOWN = "down"
    HALF_UP = "half_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionGrant:
    """An existing option grant: ``unexercised`` shares left at exercise ``price``."""

    grant_id: str
    grant_date: date
    unexercised: int
    price: Decimal

    def __post_init__(self) -> None:
        if self.unexercised < 0:
            raise ValueError(f"grant {self.grant_id}: unexercised must be 0 or more")
        if self.price < 0:
            raise ValueError(f"grant {self.grant_id}: price must be 0 or more")


@dataclass(frozen=True, slots=True, kw_only=True)
class EligibilityRule:
    """Who and what an offer covers.

    ``countries`` are the holder countries that may take part (the seed: ``{"US"}``);
    ``hired_before`` is exclusive (the seed: hired before 2002-12-19, the day the offer opened);
    ``excluded_roles`` are roles that bar a holder (``director``, ``executive_officer``);
    ``min_price`` is the lowest exercise price a grant may have ($3.01: "$3.01 or greater");
    ``[lookback_start, lookback_end]`` is the inclusive look-back window (2002-06-19 to
    2002-12-19) whose grants must be exchanged whatever their price.
    """

    min_price: Decimal
    hired_before: date
    countries: frozenset[str]
    excluded_roles: frozenset[str]
    lookback_start: date
    lookback_end: date

    def __post_init__(self) -> None:
        if self.lookback_start > self.lookback_end:
            raise ValueError(
                f"look-back window starts {self.lookback_start} after it ends {self.lookback_end}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRule:
    """New shares per exchanged share; the defaults are the seed's 75%, rounded up."""

    ratio: Decimal = Decimal("0.75")
    rounding: Rounding = Rounding.UP

    def __post_init__(self) -> None:
        if self.ratio <= 0:
            raise ValueError(f"exchange ratio must be more than 0, not {self.ratio}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """The option holder as the offer sees them: where they are based, when hired, their roles."""

    country: str
    hire_date: date
    roles: frozenset[str]


def holder_eligible(holder: Holder, rule: EligibilityRule) -> tuple[bool, str]:
    """Say whether ``holder`` may take part, and if not, every reason why ("" when eligible).

    All reasons are listed, not just the first, so the notice a compliance officer reads (or
    sends) is complete.
    """
    reasons: list[str] = []
    if holder.country not in rule.countries:
        allowed = ", ".join(sorted(rule.countries))
        reasons.append(f"based in {holder.country}, not in {allowed}")
    if holder.hire_date >= rule.hired_before:
        reasons.append(f"hired {holder.hire_date}, not before {rule.hired_before}")
    barred = sorted(holder.roles & rule.excluded_roles)
    if barred:
        reasons.append(f"holds an excluded role: {', '.join(barred)}")
    return (not reasons, "; ".join(reasons))


def grant_eligible(grant: OptionGrant, rule: EligibilityRule) -> bool:
    """Say whether ``grant`` is part of the exchange.

    A grant at or above the price floor may be exchanged. A grant of the look-back window (both
    ends included) is part of it whatever its price: the accounting rules the deck cites
    (slide 13) treat options granted within six months of cancelled ones as their replacement,
    a variable expense to earnings. That is why the new grant waits six months and a day after
    the cancellation, and why a participant must also give up what was granted in the six months
    before the offer (slide 7); so those grants are part of the exchange, e.g. 500 shares at
    $0.40 granted 2002-07-01.
    """
    in_lookback = rule.lookback_start <= grant.grant_date <= rule.lookback_end
    return grant.price >= rule.min_price or in_lookback


def new_shares(exchanged: int, rule: ExchangeRule) -> int:
    """Return the whole number of new shares for ``exchanged`` shares (per grant, as slide 9).

    The product is taken as an exact ``Fraction``, so no decimal-context precision or float
    error can move it across a rounding boundary.
    """
    if exchanged < 0:
        raise ValueError(f"exchanged shares must be 0 or more, not {exchanged}")
    exact = exchanged * Fraction(rule.ratio)
    if rule.rounding is Rounding.UP:
        return math.ceil(exact)
    if rule.rounding is Rounding.DOWN:
        return math.floor(exact)
    return math.floor(exact + Fraction(1, 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeLine:
    """One line of a participant's exchange table (slide 9): a grant and what it becomes."""

    grant: OptionGrant
    eligible: bool
    exchanged: int
    new_shares: int


def exchange_lines(
    grants: Iterable[OptionGrant], rule: EligibilityRule, exchange_rule: ExchangeRule
) -> tuple[ExchangeLine, ...]:
    """Return the exchange table of a participant's ``grants``, in the order given.

    Grants go in whole or not at all (no partial tenders): an eligible grant exchanges all of
    its unexercised shares, an ineligible one none. New shares are rounded per grant, as the
    slide 9 table does, not over the participant's total. Whether the holder may take part at
    all is ``holder_eligible``'s question, asked before this one.
    """
    lines: list[ExchangeLine] = []
    for grant in grants:
        eligible = grant_eligible(grant, rule)
        exchanged = grant.unexercised if eligible else 0
        lines.append(
            ExchangeLine(
                grant=grant,
                eligible=eligible,
                exchanged=exchanged,
                new_shares=new_shares(exchanged, exchange_rule),
            )
        )
    return tuple(lines)
