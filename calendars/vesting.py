"""Vesting schedules: when the tranches of a grant vest and how many whole shares each one gets.

The vocabulary is the Open Cap Format's (OCF): a schedule is a list of steps (relative N months,
M occurrences, a portion of the grant each), an ``AllocationType`` says how whole shares are
spread over tranches whose exact share is fractional, and a day-of-month rule says on which day
of the month a tranche vests. The seed offer's new options vest 1/2 six months after the grant
date, then 1/48 each month for 24 months::

    vesting_schedule(
        shares=1000,
        start=date(2003, 7, 21),
        steps=[VestingStep(period_months=6, occurrences=1, portion=Fraction(1, 2)),
               VestingStep(period_months=1, occurrences=24, portion=Fraction(1, 48))],
    )

Pure: dates in, dates out; no clock, no I/O. Vesting is a date, not an instant, so time zones
and DST play no part here: the caller turns a vesting date into an event in the program's zone.
"""

from __future__ import annotations

import calendar
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import TypeAlias

__all__ = [
    "AllocationType",
    "DayOfMonth",
    "DayRule",
    "FixedDay",
    "Tranche",
    "VestingStep",
    "add_months",
    "allocate",
    "parse_day_of_month",
    "vesting_schedule",
]


class AllocationType(StrEnum):
    """Spread whole shares over tranches (the OCF names; 18 shares over 4 equal tranches).

    Every type works for unequal portions (the seed is 1/2 then 24 x 1/48). ``exact_i`` is
    ``shares * portion_i`` and ``cum_i`` the running sum of portions through tranche i:

    - ``CUMULATIVE_ROUNDING`` (5-4-5-4): tranche i gets
      ``round_half_up(shares * cum_i) - round_half_up(shares * cum_{i-1})``, so the vested total
      after each tranche is the nearest whole share to the exact vested total.
    - ``CUMULATIVE_ROUND_DOWN`` (4-5-4-5): the same with ``floor``: never ahead of the exact total.
    - ``FRONT_LOADED`` (5-5-4-4): ``floor(exact_i)`` each, then the remainder one share each to the
      first tranches.
    - ``BACK_LOADED`` (4-4-5-5): the same, the remainder one each to the last tranches.
    - ``FRONT_LOADED_TO_SINGLE_TRANCHE`` (6-4-4-4): ``floor(exact_i)`` each, the whole remainder to
      the first tranche.
    - ``BACK_LOADED_TO_SINGLE_TRANCHE`` (4-4-4-6): the same, the remainder to the last tranche.
    - ``FRACTIONAL`` (4.5 each): ``exact_i`` as a ``Fraction``, no rounding.

    The whole-share types always add up to ``shares`` exactly: the cumulative ones because the
    last cumulative portion is exactly 1, the loaded ones because the remainder (the sum of the
    dropped fractions, fewer than the number of tranches) is handed back.
    """

    CUMULATIVE_ROUNDING = "CUMULATIVE_ROUNDING"
    CUMULATIVE_ROUND_DOWN = "CUMULATIVE_ROUND_DOWN"
    FRONT_LOADED = "FRONT_LOADED"
    BACK_LOADED = "BACK_LOADED"
    FRONT_LOADED_TO_SINGLE_TRANCHE = "FRONT_LOADED_TO_SINGLE_TRANCHE"
    BACK_LOADED_TO_SINGLE_TRANCHE = "BACK_LOADED_TO_SINGLE_TRANCHE"
    FRACTIONAL = "FRACTIONAL"


class DayOfMonth(StrEnum):
    """The OCF day-of-month rules that are not a fixed day (those are ``FixedDay``).

    Values are the OCF strings; member names start with ``DAY_`` where the OCF string starts
    with a digit, which a Python name cannot.
    """

    DAY_29_OR_LAST_DAY_OF_MONTH = "29_OR_LAST_DAY_OF_MONTH"
    DAY_30_OR_LAST_DAY_OF_MONTH = "30_OR_LAST_DAY_OF_MONTH"
    DAY_31_OR_LAST_DAY_OF_MONTH = "31_OR_LAST_DAY_OF_MONTH"
    VESTING_START_DAY_OR_LAST_DAY_OF_MONTH = "VESTING_START_DAY_OR_LAST_DAY_OF_MONTH"


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedDay:
    """Vest on this day of every month, 1 to 28 (OCF ``"01"`` to ``"28"``).

    Only up to 28 because every month has those days; later days need an ``_OR_LAST_DAY`` rule.
    """

    day: int

    def __post_init__(self) -> None:
        if not 1 <= self.day <= 28:
            raise ValueError(f"a fixed vesting day must be 1 to 28, not {self.day}")

    def __str__(self) -> str:
        return f"{self.day:02d}"


DayRule: TypeAlias = DayOfMonth | FixedDay

_CAPPED_DAY = {
    DayOfMonth.DAY_29_OR_LAST_DAY_OF_MONTH: 29,
    DayOfMonth.DAY_30_OR_LAST_DAY_OF_MONTH: 30,
    DayOfMonth.DAY_31_OR_LAST_DAY_OF_MONTH: 31,
}
_FIXED_DAY = re.compile(r"[0-9]{2}")


def parse_day_of_month(text: str) -> DayRule:
    """Parse an OCF day of month: ``"01"`` to ``"28"`` or one of the ``DayOfMonth`` names."""
    if _FIXED_DAY.fullmatch(text) and 1 <= int(text) <= 28:
        return FixedDay(day=int(text))
    try:
        return DayOfMonth(text)
    except ValueError:
        names = ", ".join(repr(member.value) for member in DayOfMonth)
        raise ValueError(
            f"invalid vesting day of month {text!r}: expected '01' to '28' or one of {names}"
        ) from None


def add_months(
    start: date,
    months: int,
    day_rule: DayRule = DayOfMonth.VESTING_START_DAY_OR_LAST_DAY_OF_MONTH,
) -> date:
    """Return the date ``months`` calendar months after ``start``, on the day ``day_rule`` picks.

    Month ends: a day the target month lacks becomes its last day. With the default rule
    (the start's day), 2003-08-31 + 6 months is 2004-02-29 and 2005-08-31 + 6 months is
    2006-02-28; ``31_OR_LAST_DAY_OF_MONTH`` gives 30 April, 31 May; ``FixedDay`` is that day
    whatever ``start``'s day (so ``months=0`` may give a date before ``start``).

    29 February: a 29 February start gives 28 February in common years and 29 February in leap
    years (2004-02-29 + 12 months = 2005-02-28, + 48 months = 2008-02-29).

    The result is always computed from ``start``, never by chaining: 31 January + 1 month is
    28/29 February, yet + 2 months is 31 March, not the 28th or 29th carried over. Dates only:
    DST does not apply. ``months`` may be negative.
    """
    year, month0 = divmod(start.year * 12 + start.month - 1 + months, 12)
    month = month0 + 1
    last = calendar.monthrange(year, month)[1]
    if isinstance(day_rule, FixedDay):
        day = day_rule.day
    elif day_rule is DayOfMonth.VESTING_START_DAY_OR_LAST_DAY_OF_MONTH:
        day = min(start.day, last)
    else:
        day = min(_CAPPED_DAY[day_rule], last)
    return date(year, month, day)


@dataclass(frozen=True, slots=True, kw_only=True)
class VestingStep:
    """``occurrences`` tranches of ``portion`` of the grant each, ``period_months`` apart.

    The first tranche of a step comes ``period_months`` after the previous tranche (after the
    vesting start for the first step). ``portion`` is a ``Fraction`` because 1/48 has no exact
    float or decimal form and the portions must add up to exactly 1.
    """

    period_months: int
    occurrences: int
    portion: Fraction

    def __post_init__(self) -> None:
        if self.period_months < 0:
            raise ValueError(f"period_months must be 0 or more, not {self.period_months}")
        if self.occurrences < 1:
            raise ValueError(f"occurrences must be 1 or more, not {self.occurrences}")
        if not isinstance(self.portion, Fraction):
            raise TypeError(f"portion must be a Fraction, not {type(self.portion).__name__}")
        if not 0 < self.portion <= 1:
            raise ValueError(f"portion must be more than 0 and at most 1, not {self.portion}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tranche:
    """One vesting event: ``shares`` vest on ``date``, ``cumulative`` vested after it.

    ``index`` counts from 1. Shares are ``int`` for whole-share allocations and ``Fraction`` for
    ``AllocationType.FRACTIONAL``.
    """

    index: int
    date: date
    shares: int | Fraction
    cumulative: int | Fraction


def _round_half_up(value: Fraction) -> int:
    # Python's round() rounds half to even; shares are never negative, so floor(x + 1/2) is
    # the schoolbook rounding that cumulative rounding is defined with.
    return math.floor(value + Fraction(1, 2))


def allocate(
    shares: int, portions: Sequence[Fraction], allocation: AllocationType
) -> tuple[int, ...] | tuple[Fraction, ...]:
    """Split ``shares`` over tranches of the given ``portions`` (which must add up to 1).

    See ``AllocationType`` for each rule; whole-share rules return ``int`` amounts that add up
    to ``shares``, ``FRACTIONAL`` returns exact ``Fraction`` amounts. Raises ``ValueError`` for
    negative shares, no portions, or portions that do not add up to exactly 1.
    """
    if shares < 0:
        raise ValueError(f"shares must be 0 or more, not {shares}")
    if not portions:
        raise ValueError("there must be at least one tranche to allocate shares to")
    total = sum(portions, Fraction(0))
    if total != 1:
        raise ValueError(f"vesting portions add up to {total}, not 1")
    if allocation is AllocationType.FRACTIONAL:
        return tuple(shares * portion for portion in portions)
    if allocation in (AllocationType.CUMULATIVE_ROUNDING, AllocationType.CUMULATIVE_ROUND_DOWN):
        exact = [shares * cum for cum in itertools.accumulate(portions)]
        if allocation is AllocationType.CUMULATIVE_ROUNDING:
            marks = [_round_half_up(mark) for mark in exact]
        else:
            marks = [math.floor(mark) for mark in exact]
        return tuple(after - before for before, after in itertools.pairwise([0, *marks]))
    amounts = [math.floor(shares * portion) for portion in portions]
    remainder = shares - sum(amounts)
    if allocation is AllocationType.FRONT_LOADED:
        for i in range(remainder):
            amounts[i] += 1
    elif allocation is AllocationType.BACK_LOADED:
        for i in range(remainder):
            amounts[-1 - i] += 1
    elif allocation is AllocationType.FRONT_LOADED_TO_SINGLE_TRANCHE:
        amounts[0] += remainder
    else:
        amounts[-1] += remainder
    return tuple(amounts)


def vesting_schedule(
    *,
    shares: int,
    start: date,
    steps: Sequence[VestingStep],
    allocation: AllocationType = AllocationType.CUMULATIVE_ROUNDING,
    day_rule: DayRule = DayOfMonth.VESTING_START_DAY_OR_LAST_DAY_OF_MONTH,
) -> tuple[Tranche, ...]:
    """Expand a grant of ``shares`` vesting from ``start`` into its dated tranches.

    Each tranche's date is ``add_months(start, total months so far, day_rule)``: computed from
    the start, so a 31 October start vests on 30 November, 31 December, 28/29 February and
    31 March (see ``add_months`` for month ends and 29 February).

    Raises ``ValueError`` for negative shares, no steps, or portions that do not add up to
    exactly 1 (a schedule that vests 47/48 of a grant is a typo, not a choice).
    """
    if not steps:
        raise ValueError("a vesting schedule needs at least one step")
    offsets: list[int] = []
    portions: list[Fraction] = []
    months = 0
    for step in steps:
        for _ in range(step.occurrences):
            months += step.period_months
            offsets.append(months)
            portions.append(step.portion)

    amounts: Sequence[int | Fraction] = allocate(shares, portions, allocation)
    cumulatives = itertools.accumulate(amounts)
    return tuple(
        Tranche(
            index=index,
            date=add_months(start, offset, day_rule),
            shares=amount,
            cumulative=cumulative,
        )
        for index, (offset, amount, cumulative) in enumerate(
            zip(offsets, amounts, cumulatives, strict=True), start=1
        )
    )
