"""Vesting schedules: the seed offer's schedule, the OCF allocation types, month ends, leap days."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from calendars.vesting import (
    AllocationType,
    DayOfMonth,
    DayRule,
    FixedDay,
    VestingStep,
    add_months,
    allocate,
    parse_day_of_month,
    vesting_schedule,
)


def _step(period_months: int, occurrences: int, portion: Fraction) -> VestingStep:
    return VestingStep(period_months=period_months, occurrences=occurrences, portion=portion)


def _monthly(occurrences: int) -> tuple[VestingStep, ...]:
    return (_step(1, occurrences, Fraction(1, occurrences)),)


# 50% on the 6-month anniversary, then 1/48 a month for 24 months (slide 14, OCF terms).
SEED_STEPS = (
    VestingStep(period_months=6, occurrences=1, portion=Fraction(1, 2)),
    VestingStep(period_months=1, occurrences=24, portion=Fraction(1, 48)),
)
FOUR_QUARTERS = (_step(1, 4, Fraction(1, 4)),)
SEED_GRANT_DATE = date(2003, 7, 21)
# 2004-02-21 ... 2006-01-21: the 24 monthly tranches after the 6-month cliff (slide 14).
SEED_MONTHLY_DATES = tuple(
    date(2004 + (month - 1) // 12, (month - 1) % 12 + 1, 21) for month in range(2, 26)
)

WHOLE_SHARE_TYPES = tuple(a for a in AllocationType if a is not AllocationType.FRACTIONAL)
START_DAY = DayOfMonth.VESTING_START_DAY_OR_LAST_DAY_OF_MONTH


# --- the seed offer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "cliff", "monthly"),
    [
        pytest.param(
            1000,
            500,
            # round_half_up(500 + 500k/24) - round_half_up(500 + 500(k-1)/24): "20.8 per month"
            (21, 21, 21, 20, 21, 21, 21, 21, 21, 20, 21, 21) * 2,
            id="1000-shares-slide-14",
        ),
        pytest.param(750, 375, (16, 15, 16, 16, 15, 16, 15, 16) * 3, id="750-shares-slide-15"),
    ],
)
def test_seed_schedule(shares: int, cliff: int, monthly: tuple[int, ...]) -> None:
    tranches = vesting_schedule(shares=shares, start=SEED_GRANT_DATE, steps=SEED_STEPS)

    assert len(tranches) == 25
    assert [t.index for t in tranches] == list(range(1, 26))
    assert tranches[0].date == date(2004, 1, 21)
    assert tranches[0].shares == cliff
    assert tuple(t.date for t in tranches[1:]) == SEED_MONTHLY_DATES
    assert tranches[-1].date == date(2006, 1, 21)
    assert tuple(t.shares for t in tranches[1:]) == monthly
    assert sum(monthly) == shares - cliff
    assert tranches[-1].cumulative == shares
    assert all(isinstance(t.shares, int) for t in tranches)


def test_seed_schedule_cumulative_is_the_nearest_whole_share() -> None:
    tranches = vesting_schedule(shares=1000, start=SEED_GRANT_DATE, steps=SEED_STEPS)

    for month, tranche in enumerate(tranches[1:], start=1):
        exact = 500 + Fraction(500 * month, 24)
        assert abs(tranche.cumulative - exact) <= Fraction(1, 2)


# --- allocation types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        (AllocationType.CUMULATIVE_ROUNDING, (5, 4, 5, 4)),
        (AllocationType.CUMULATIVE_ROUND_DOWN, (4, 5, 4, 5)),
        (AllocationType.FRONT_LOADED, (5, 5, 4, 4)),
        (AllocationType.BACK_LOADED, (4, 4, 5, 5)),
        (AllocationType.FRONT_LOADED_TO_SINGLE_TRANCHE, (6, 4, 4, 4)),
        (AllocationType.BACK_LOADED_TO_SINGLE_TRANCHE, (4, 4, 4, 6)),
        (AllocationType.FRACTIONAL, (Fraction(9, 2),) * 4),
    ],
    ids=str,
)
def test_allocation_types_on_18_shares_over_4_tranches(
    allocation: AllocationType, expected: tuple[int | Fraction, ...]
) -> None:
    tranches = vesting_schedule(
        shares=18, start=date(2024, 1, 15), steps=FOUR_QUARTERS, allocation=allocation
    )

    assert tuple(t.shares for t in tranches) == expected
    assert tranches[-1].cumulative == 18
    assert [t.date for t in tranches] == [date(2024, m, 15) for m in (2, 3, 4, 5)]


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        # 7 shares over 1/2, 1/4, 1/4: exact 3.5, 1.75, 1.75; floors 3, 1, 1, remainder 2.
        (AllocationType.CUMULATIVE_ROUNDING, (4, 1, 2)),  # marks 4, 5, 7
        (AllocationType.CUMULATIVE_ROUND_DOWN, (3, 2, 2)),  # marks 3, 5, 7
        (AllocationType.FRONT_LOADED, (4, 2, 1)),
        (AllocationType.BACK_LOADED, (3, 2, 2)),
        (AllocationType.FRONT_LOADED_TO_SINGLE_TRANCHE, (5, 1, 1)),
        (AllocationType.BACK_LOADED_TO_SINGLE_TRANCHE, (3, 1, 3)),
        (AllocationType.FRACTIONAL, (Fraction(7, 2), Fraction(7, 4), Fraction(7, 4))),
    ],
    ids=str,
)
def test_allocation_types_with_unequal_portions(
    allocation: AllocationType, expected: tuple[int | Fraction, ...]
) -> None:
    portions = (Fraction(1, 2), Fraction(1, 4), Fraction(1, 4))

    assert allocate(7, portions, allocation) == expected


SUM_CASES = [
    pytest.param(shares, steps, id=f"{shares}-{name}")
    for shares in (0, 1, 7, 18, 750, 1000, 12345)
    for name, steps in (
        ("seed", SEED_STEPS),
        ("quarters", FOUR_QUARTERS),
        ("thirds", _monthly(3)),
        ("48-monthly", _monthly(48)),
        (
            "1y-cliff-then-monthly",
            (
                _step(12, 1, Fraction(1, 4)),
                _step(1, 36, Fraction(1, 48)),
            ),
        ),
        (
            "uneven",
            (
                _step(3, 1, Fraction(1, 7)),
                _step(3, 2, Fraction(2, 7)),
                _step(6, 1, Fraction(2, 7)),
            ),
        ),
    )
]


@pytest.mark.parametrize(("shares", "steps"), SUM_CASES)
@pytest.mark.parametrize("allocation", WHOLE_SHARE_TYPES, ids=str)
def test_whole_share_allocations_add_up_to_the_grant(
    shares: int, steps: tuple[VestingStep, ...], allocation: AllocationType
) -> None:
    tranches = vesting_schedule(
        shares=shares, start=date(2003, 7, 21), steps=steps, allocation=allocation
    )

    amounts = [t.shares for t in tranches]
    assert all(isinstance(a, int) and a >= 0 for a in amounts)
    assert sum(amounts) == shares
    assert tranches[-1].cumulative == shares
    assert [t.cumulative for t in tranches] == [sum(amounts[: i + 1]) for i in range(len(amounts))]
    assert len(tranches) == sum(step.occurrences for step in steps)


@pytest.mark.parametrize(("shares", "steps"), SUM_CASES)
def test_cumulative_rounding_tracks_the_exact_total(
    shares: int, steps: tuple[VestingStep, ...]
) -> None:
    tranches = vesting_schedule(shares=shares, start=date(2003, 7, 21), steps=steps)
    exact = vesting_schedule(
        shares=shares, start=date(2003, 7, 21), steps=steps, allocation=AllocationType.FRACTIONAL
    )

    for whole, fractional in zip(tranches, exact, strict=True):
        assert abs(Fraction(whole.cumulative) - fractional.cumulative) <= Fraction(1, 2)
        assert whole.date == fractional.date


@pytest.mark.parametrize(("shares", "steps"), SUM_CASES)
def test_fractional_is_exact(shares: int, steps: tuple[VestingStep, ...]) -> None:
    tranches = vesting_schedule(
        shares=shares, start=date(2003, 7, 21), steps=steps, allocation=AllocationType.FRACTIONAL
    )

    assert all(isinstance(t.shares, Fraction) for t in tranches)
    assert sum(t.shares for t in tranches) == shares
    assert tranches[-1].cumulative == shares


# --- dates: month ends, 29 February, fixed days -----------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "day_rule", "expected"),
    [
        (date(2003, 7, 21), 6, START_DAY, date(2004, 1, 21)),
        (date(2003, 7, 21), 30, START_DAY, date(2006, 1, 21)),
        (date(2003, 7, 21), 0, START_DAY, date(2003, 7, 21)),
        (date(2003, 7, 21), -7, START_DAY, date(2002, 12, 21)),
        # grants dated after 31 August: 6 months later is February
        (date(2003, 8, 31), 6, START_DAY, date(2004, 2, 29)),
        (date(2004, 8, 31), 6, START_DAY, date(2005, 2, 28)),
        (date(2005, 8, 31), 6, START_DAY, date(2006, 2, 28)),
        (date(2003, 8, 30), 6, START_DAY, date(2004, 2, 29)),
        (date(2003, 10, 31), 1, START_DAY, date(2003, 11, 30)),
        (date(2003, 11, 30), 3, START_DAY, date(2004, 2, 29)),
        # computed from the start, not chained: the 31st comes back after a short month
        (date(2003, 1, 31), 1, START_DAY, date(2003, 2, 28)),
        (date(2004, 1, 31), 1, START_DAY, date(2004, 2, 29)),
        (date(2004, 1, 31), 2, START_DAY, date(2004, 3, 31)),
        (date(2004, 1, 31), 3, START_DAY, date(2004, 4, 30)),
        # 29 February
        (date(2004, 2, 29), 12, START_DAY, date(2005, 2, 28)),
        (date(2004, 2, 29), 13, START_DAY, date(2005, 3, 29)),
        (date(2004, 2, 29), 48, START_DAY, date(2008, 2, 29)),
        (date(2004, 2, 29), -12, START_DAY, date(2003, 2, 28)),
        # fixed days and the _OR_LAST_DAY_OF_MONTH rules
        (date(2003, 7, 21), 1, FixedDay(day=15), date(2003, 8, 15)),
        (date(2003, 7, 2), 1, FixedDay(day=28), date(2003, 8, 28)),
        (date(2003, 7, 21), 0, FixedDay(day=1), date(2003, 7, 1)),
        (date(2003, 1, 15), 3, DayOfMonth.DAY_31_OR_LAST_DAY_OF_MONTH, date(2003, 4, 30)),
        (date(2003, 1, 15), 4, DayOfMonth.DAY_31_OR_LAST_DAY_OF_MONTH, date(2003, 5, 31)),
        (date(2003, 1, 15), 13, DayOfMonth.DAY_31_OR_LAST_DAY_OF_MONTH, date(2004, 2, 29)),
        (date(2003, 1, 15), 1, DayOfMonth.DAY_29_OR_LAST_DAY_OF_MONTH, date(2003, 2, 28)),
        (date(2004, 1, 15), 1, DayOfMonth.DAY_29_OR_LAST_DAY_OF_MONTH, date(2004, 2, 29)),
        (date(2004, 1, 15), 2, DayOfMonth.DAY_29_OR_LAST_DAY_OF_MONTH, date(2004, 3, 29)),
        (date(2004, 1, 15), 1, DayOfMonth.DAY_30_OR_LAST_DAY_OF_MONTH, date(2004, 2, 29)),
        (date(2004, 1, 15), 2, DayOfMonth.DAY_30_OR_LAST_DAY_OF_MONTH, date(2004, 3, 30)),
    ],
    ids=str,
)
def test_add_months(start: date, months: int, day_rule: DayRule, expected: date) -> None:
    assert add_months(start, months, day_rule) == expected


def test_add_months_defaults_to_the_start_day() -> None:
    assert add_months(date(2003, 8, 31), 6) == date(2004, 2, 29)


@pytest.mark.parametrize(
    ("start", "steps", "day_rule", "expected"),
    [
        pytest.param(
            date(2003, 10, 31),
            _monthly(6),
            START_DAY,
            [
                date(2003, 11, 30),
                date(2003, 12, 31),
                date(2004, 1, 31),
                date(2004, 2, 29),
                date(2004, 3, 31),
                date(2004, 4, 30),
            ],
            id="31-october-monthly",
        ),
        pytest.param(
            date(2003, 8, 31),
            (SEED_STEPS[0], _step(1, 3, Fraction(1, 6))),
            START_DAY,
            [date(2004, 2, 29), date(2004, 3, 31), date(2004, 4, 30), date(2004, 5, 31)],
            id="31-august-cliff-in-leap-february",
        ),
        pytest.param(
            date(2004, 8, 31),
            (SEED_STEPS[0], _step(1, 2, Fraction(1, 4))),
            START_DAY,
            [date(2005, 2, 28), date(2005, 3, 31), date(2005, 4, 30)],
            id="31-august-cliff-in-common-february",
        ),
        pytest.param(
            date(2004, 2, 29),
            (_step(12, 4, Fraction(1, 4)),),
            START_DAY,
            [date(2005, 2, 28), date(2006, 2, 28), date(2007, 2, 28), date(2008, 2, 29)],
            id="29-february-yearly",
        ),
        pytest.param(
            SEED_GRANT_DATE,
            (SEED_STEPS[0], _step(1, 2, Fraction(1, 4))),
            parse_day_of_month("15"),
            [date(2004, 1, 15), date(2004, 2, 15), date(2004, 3, 15)],
            id="fixed-15",
        ),
        pytest.param(
            date(2003, 7, 15),
            (_step(1, 4, Fraction(1, 4)),),
            parse_day_of_month("31_OR_LAST_DAY_OF_MONTH"),
            [date(2003, 8, 31), date(2003, 9, 30), date(2003, 10, 31), date(2003, 11, 30)],
            id="31-or-last",
        ),
    ],
)
def test_schedule_dates(
    start: date, steps: tuple[VestingStep, ...], day_rule: DayRule, expected: list[date]
) -> None:
    tranches = vesting_schedule(shares=1200, start=start, steps=steps, day_rule=day_rule)

    assert [t.date for t in tranches] == expected


# --- parsing and bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01", FixedDay(day=1)),
        ("15", FixedDay(day=15)),
        ("28", FixedDay(day=28)),
        ("29_OR_LAST_DAY_OF_MONTH", DayOfMonth.DAY_29_OR_LAST_DAY_OF_MONTH),
        ("30_OR_LAST_DAY_OF_MONTH", DayOfMonth.DAY_30_OR_LAST_DAY_OF_MONTH),
        ("31_OR_LAST_DAY_OF_MONTH", DayOfMonth.DAY_31_OR_LAST_DAY_OF_MONTH),
        (
            "VESTING_START_DAY_OR_LAST_DAY_OF_MONTH",
            DayOfMonth.VESTING_START_DAY_OR_LAST_DAY_OF_MONTH,
        ),
    ],
)
def test_parse_day_of_month(text: str, expected: DayRule) -> None:
    parsed = parse_day_of_month(text)

    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text", ["00", "29", "31", "1", "5", "001", "", " 15", "last", "31_or_last_day_of_month"]
)
def test_parse_day_of_month_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid vesting day of month .*'01' to '28'"):
        parse_day_of_month(text)


@pytest.mark.parametrize(
    ("steps", "total"),
    [
        pytest.param(
            (SEED_STEPS[0], _step(1, 23, Fraction(1, 48))),
            "47/48",
            id="one-month-short",
        ),
        pytest.param(
            (*SEED_STEPS, _step(1, 1, Fraction(1, 4))),
            "5/4",
            id="too-much",
        ),
        pytest.param(_monthly(4)[:1] * 2, "2", id="twice"),
    ],
)
def test_portions_must_add_up_to_one(steps: tuple[VestingStep, ...], total: str) -> None:
    with pytest.raises(ValueError, match=rf"portions add up to {total}, not 1"):
        vesting_schedule(shares=1000, start=SEED_GRANT_DATE, steps=steps)


@pytest.mark.parametrize(
    ("shares", "steps", "message"),
    [
        (-1, SEED_STEPS, "shares must be 0 or more, not -1"),
        (1000, (), "at least one step"),
    ],
)
def test_schedule_rejects(shares: int, steps: tuple[VestingStep, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vesting_schedule(shares=shares, start=SEED_GRANT_DATE, steps=steps)


@pytest.mark.parametrize(
    ("period_months", "occurrences", "portion", "message"),
    [
        (-1, 1, Fraction(1), "period_months must be 0 or more"),
        (1, 0, Fraction(1), "occurrences must be 1 or more"),
        (1, 1, Fraction(0), "portion must be more than 0"),
        (1, 1, Fraction(3, 2), "at most 1, not 3/2"),
    ],
)
def test_step_rejects(
    period_months: int, occurrences: int, portion: Fraction, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        VestingStep(period_months=period_months, occurrences=occurrences, portion=portion)


def test_step_rejects_a_float_portion() -> None:
    with pytest.raises(TypeError, match="portion must be a Fraction, not float"):
        VestingStep(period_months=1, occurrences=2, portion=0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("day", [0, 29, 31, -1])
def test_fixed_day_rejects(day: int) -> None:
    with pytest.raises(ValueError, match=f"1 to 28, not {day}"):
        FixedDay(day=day)


def test_zero_shares_vest_nothing_on_every_date() -> None:
    tranches = vesting_schedule(shares=0, start=SEED_GRANT_DATE, steps=SEED_STEPS)

    assert len(tranches) == 25
    assert all(t.shares == 0 for t in tranches)
    assert tranches[-1].cumulative == 0
