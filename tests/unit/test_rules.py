"""Date rules as tables of real cases: Form SD, business days, the offer's dates, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from calendars.businessdays import (
    CalendarName,
    add_years,
    calendar,
    first_business_day_after,
    form_sd_due,
)
from calendars.clock import before, local_instant, localize
from calendars.option_exchange import (
    MIN_OFFER_BUSINESS_DAYS,
    offer_business_days,
    offer_dates,
    offer_period_problem,
    reminder_instants,
)
from config.loader import default_program_dir, load_program_file
from config.programs import OptionExchange, WrittenOffset, parse_offset, split_offset

LA = ZoneInfo("America/Los_Angeles")
SEC = calendar(CalendarName.SEC)
NASDAQ = calendar(CalendarName.NASDAQ)


@pytest.mark.parametrize(
    ("year", "due"),
    [
        (2013, date(2014, 6, 2)),  # 31 May a Saturday: the first Form SD
        (2014, date(2015, 6, 1)),  # Sunday
        (2015, date(2016, 5, 31)),
        (2016, date(2017, 5, 31)),  # the seed cycle
        (2017, date(2018, 5, 31)),
        (2018, date(2019, 5, 31)),
        (2019, date(2020, 6, 1)),  # Sunday
        (2020, date(2021, 6, 1)),  # Memorial Day on 31 May
        (2021, date(2022, 5, 31)),
        (2022, date(2023, 5, 31)),
        (2023, date(2024, 5, 31)),
        (2024, date(2025, 6, 2)),  # Saturday
        (2025, date(2026, 6, 1)),  # Sunday
        (2026, date(2027, 6, 1)),  # Memorial Day on 31 May
        (2027, date(2028, 5, 31)),
        (2028, date(2029, 5, 31)),
        (2029, date(2030, 5, 31)),
        (2030, date(2031, 6, 2)),  # Saturday
    ],
)
def test_form_sd_due(year: int, due: date) -> None:
    assert form_sd_due(year, SEC) == due


@pytest.mark.parametrize(
    ("day", "business"),
    [
        (date(2018, 12, 5), False),  # closed for the national day of mourning
        (date(2020, 12, 24), False),  # executive order closure
        (date(2025, 1, 9), False),  # closed for the national day of mourning
        (date(2021, 6, 18), False),  # Juneteenth observed (19 June a Saturday)
        (date(2021, 12, 31), False),  # New Year's Day 2022 observed on the Friday
        (date(2003, 1, 20), False),  # Martin Luther King Jr. Day
        (date(2003, 1, 21), True),
        (date(2017, 5, 31), True),
    ],
)
def test_sec_business_days(day: date, business: bool) -> None:
    assert SEC.is_business_day(day) is business


def test_extra_closure_moves_a_deadline() -> None:
    # A closure not in the holiday calendar, configured by the program, is honoured.
    closed = calendar(CalendarName.SEC, [date(2017, 5, 31)])
    assert form_sd_due(2016, closed) == date(2017, 6, 1)


@pytest.mark.parametrize(
    ("start", "months", "days", "expected"),
    [
        (date(2003, 1, 20), 6, 1, date(2003, 7, 21)),  # the seed: a Monday
        (date(2003, 1, 17), 6, 1, date(2003, 7, 18)),  # Friday
        (date(2003, 1, 3), 6, 1, date(2003, 7, 7)),  # 4 July is a holiday, 5-6 a weekend
        (date(2003, 8, 31), 6, 0, date(2004, 3, 1)),  # 29 Feb 2004 is a Sunday
        (date(2003, 8, 30), 6, 0, date(2004, 3, 1)),  # 29 Feb 2004, then the Monday
        (date(2004, 8, 31), 6, 0, date(2005, 2, 28)),  # common year: clamped to 28 Feb
        (date(2004, 2, 29), 12, 0, date(2005, 2, 28)),  # 29 Feb + a year
        (date(2007, 8, 29), 6, 1, date(2008, 3, 3)),  # 29 Feb 2008 + 1 day = Sat 1 Mar
        (date(2003, 10, 17), 6, 1, date(2004, 4, 19)),  # 18 Apr 2004 a Sunday
        (date(2002, 10, 18), 6, 0, date(2003, 4, 21)),  # Good Friday 2003-04-18 closed
    ],
)
def test_first_business_day_after(start: date, months: int, days: int, expected: date) -> None:
    assert first_business_day_after(start, months=months, days=days, business=NASDAQ) == expected


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2003, 7, 21), date(2003, 7, 18)),  # the seed pricing day
        (date(2003, 4, 21), date(2003, 4, 17)),  # Good Friday is no trading day
        (date(2003, 1, 21), date(2003, 1, 17)),  # MLK day closed
        (date(2004, 3, 1), date(2004, 2, 27)),
    ],
)
def test_last_trading_day_before(day: date, expected: date) -> None:
    assert NASDAQ.before(day) == expected


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        (date(2003, 7, 21), 10, date(2013, 7, 21)),
        (date(2004, 2, 29), 1, date(2005, 2, 28)),
        (date(2004, 2, 29), 4, date(2008, 2, 29)),
    ],
)
def test_add_years(day: date, years: int, expected: date) -> None:
    assert add_years(day, years) == expected


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        (datetime(2003, 1, 20, 21, 0), datetime(2003, 1, 21, 5, 0, tzinfo=UTC)),  # PST
        (datetime(2003, 7, 20, 21, 0), datetime(2003, 7, 21, 4, 0, tzinfo=UTC)),  # PDT
        (datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 8, 10, 30, tzinfo=UTC)),  # gap: 03:30 PDT
        (datetime(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),  # fold: PDT
        (datetime(2026, 3, 7, 9, 0), datetime(2026, 3, 7, 17, 0, tzinfo=UTC)),
        (datetime(2026, 3, 9, 9, 0), datetime(2026, 3, 9, 16, 0, tzinfo=UTC)),
    ],
)
def test_local_to_utc(local: datetime, utc: datetime) -> None:
    # Compare in UTC: PEP 495 makes an aware time in a DST fold unequal to every other zone's.
    assert localize(local, LA).astimezone(UTC) == utc
    assert local_instant(local.date(), local.time(), LA).astimezone(UTC) == utc


@pytest.mark.parametrize(
    ("instant", "offset", "expected"),
    [
        # Days count on the wall clock, across the spring-forward night of 2026-03-08.
        (datetime(2026, 3, 10, 21, 0), "7d", datetime(2026, 3, 3, 21, 0)),
        (datetime(2026, 3, 8, 21, 0), "1d", datetime(2026, 3, 7, 21, 0)),
        (datetime(2026, 11, 2, 9, 0), "1d", datetime(2026, 11, 1, 9, 0)),
        # Hours count real time: 3 hours before 03:30 PDT on 2026-03-08 is 23:30 PST.
        (datetime(2026, 3, 8, 3, 30), "3h", datetime(2026, 3, 7, 23, 30)),
        (datetime(2003, 1, 20, 21, 0), "3h", datetime(2003, 1, 20, 18, 0)),
        (datetime(2003, 1, 20, 21, 0), "P7D", datetime(2003, 1, 13, 21, 0)),
        (datetime(2003, 1, 20, 21, 0), "PT30M", datetime(2003, 1, 20, 20, 30)),
        # Hours of 24 or more are still real time (RFC 5545: PT24H is not P1D): across the
        # spring-forward night 24 hours before 21:00 PDT is 20:00 PST, where "1d" is 21:00.
        (datetime(2026, 3, 8, 21, 0), "24h", datetime(2026, 3, 7, 20, 0)),
        (datetime(2026, 3, 8, 21, 0), "PT24H", datetime(2026, 3, 7, 20, 0)),
        (datetime(2026, 3, 8, 21, 0), "1440m", datetime(2026, 3, 7, 20, 0)),
        (datetime(2026, 3, 8, 21, 0), "36h", datetime(2026, 3, 7, 8, 0)),
        (datetime(2026, 3, 8, 21, 0), "P1D", datetime(2026, 3, 7, 21, 0)),
        (datetime(2026, 3, 8, 21, 0), "1w", datetime(2026, 3, 1, 21, 0)),
        (datetime(2026, 3, 8, 21, 0), "P1DT2H", datetime(2026, 3, 7, 19, 0)),
        # Across the fall-back night the same 24 hours are 22:00 PDT the evening before.
        (datetime(2026, 11, 1, 21, 0), "24h", datetime(2026, 10, 31, 22, 0)),
        (datetime(2026, 11, 1, 21, 0), "PT24H", datetime(2026, 10, 31, 22, 0)),
        (datetime(2026, 11, 1, 21, 0), "1d", datetime(2026, 10, 31, 21, 0)),
        (datetime(2026, 11, 1, 21, 0), "48h", datetime(2026, 10, 30, 22, 0)),
        # Away from a DST change the two agree.
        (datetime(2026, 6, 10, 21, 0), "24h", datetime(2026, 6, 9, 21, 0)),
    ],
)
def test_offset_before(instant: datetime, offset: str, expected: datetime) -> None:
    got = before(localize(instant, LA), split_offset(offset), LA)
    assert got == localize(expected, LA)
    assert got.tzinfo == LA


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", WrittenOffset(days=7)),
        ("2w", WrittenOffset(days=14)),
        ("P1W", WrittenOffset(days=7)),
        ("24h", WrittenOffset(real=timedelta(hours=24))),
        ("1440m", WrittenOffset(real=timedelta(hours=24))),
        ("PT24H", WrittenOffset(real=timedelta(hours=24))),
        ("P1DT2H30M", WrittenOffset(days=1, real=timedelta(hours=2, minutes=30))),
    ],
)
def test_offsets_keep_their_unit(text: str, expected: WrittenOffset) -> None:
    assert split_offset(text) == expected
    assert parse_offset(text) == expected.total


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "7 days", "P", "PT", "1y"])
def test_bad_offsets(text: str) -> None:
    with pytest.raises(ValueError, match="not an offset"):
        parse_offset(text)


def seed_offer() -> OptionExchange:
    program = load_program_file(default_program_dir() / "option-exchange-2003.toml")
    assert isinstance(program, OptionExchange)
    return program


def test_seed_offer_dates() -> None:
    d = offer_dates(seed_offer())
    assert d.open == date(2002, 12, 19)
    assert d.cutoff.astimezone(UTC) == datetime(2003, 1, 21, 5, 0, tzinfo=UTC)
    assert d.cutoff.tzname() == "PST"
    assert d.cancellation == date(2003, 1, 20)
    assert d.promise_to_grant == date(2003, 1, 21)
    assert d.grant == date(2003, 7, 21)
    assert d.exercise_price == date(2003, 7, 18)
    assert d.option_expiration == date(2013, 7, 21)


def test_seed_cutoff_reminders() -> None:
    got = [(text, at.astimezone(UTC)) for text, at in reminder_instants(seed_offer())]
    # Days before: at the program's send time (09:00 PST) on their day; hours: real time.
    assert got == [
        ("7d", datetime(2003, 1, 13, 17, 0, tzinfo=UTC)),
        ("1d", datetime(2003, 1, 19, 17, 0, tzinfo=UTC)),
        ("3h", datetime(2003, 1, 21, 2, 0, tzinfo=UTC)),
    ]


@pytest.mark.parametrize(
    ("reminders", "send_time", "cutoff", "expected"),
    [
        # A DST change in between (9 March 2025, spring forward): still 09:00 on the wall.
        (["7d"], "09:00:00", "2025-03-14T21:00:00", ["2025-03-07T09:00:00-08:00"]),
        (["1w"], "09:00:00", "2025-03-14T21:00:00", ["2025-03-07T09:00:00-08:00"]),
        # A send time on the skipped hour of the spring-forward day moves by the gap.
        (["1d"], "02:30:00", "2025-03-10T21:00:00", ["2025-03-09T03:30:00-07:00"]),
        # Real time, counted from the cutoff.
        (
            ["3h", "PT1H30M"],
            "09:00:00",
            "2025-03-14T21:00:00",
            ["2025-03-14T18:00:00-07:00", "2025-03-14T19:30:00-07:00"],
        ),
        # A send time later in the day than the cutoff: still the day before.
        (["1d"], "23:00:00", "2025-03-14T21:00:00", ["2025-03-13T23:00:00-07:00"]),
        # Month end and leap day: 1 day before 1 March 2024 is 29 February.
        (["1d"], "09:00:00", "2024-03-01T21:00:00", ["2024-02-29T09:00:00-08:00"]),
    ],
)
def test_cutoff_reminders_at_the_send_time(
    reminders: list[str], send_time: str, cutoff: str, expected: list[str]
) -> None:
    data = seed_offer().model_dump()
    data.update(cutoff_reminders=reminders, send_time=send_time, cutoff=cutoff)
    offer = OptionExchange.model_validate(data)
    got = [at for _, at in reminder_instants(offer)]
    assert got == [datetime.fromisoformat(e) for e in expected]


def test_extension_moves_every_dependent_date() -> None:
    offer = seed_offer()
    extension = {"cutoff": datetime(2003, 2, 3, 21, 0), "announced": date(2003, 1, 17)}
    extended = OptionExchange.model_validate({**offer.model_dump(), "extensions": [extension]})
    d = offer_dates(extended)
    assert d.cutoff.astimezone(UTC) == datetime(2003, 2, 4, 5, 0, tzinfo=UTC)
    assert d.cancellation == date(2003, 2, 3)
    assert d.grant == date(2003, 8, 4)  # 2003-08-04 is a Monday
    assert d.exercise_price == date(2003, 8, 1)


def test_july_cutoff_is_pdt() -> None:
    offer = OptionExchange.model_validate(
        {
            **seed_offer().model_dump(),
            "open": date(2003, 6, 20),
            "cutoff": datetime(2003, 7, 21, 21),
        }
    )
    assert offer_dates(offer).cutoff.astimezone(UTC) == datetime(2003, 7, 22, 4, 0, tzinfo=UTC)


def test_send_time_default() -> None:
    assert seed_offer().send_time == time(9, 0)
    assert timedelta(days=7) == parse_offset("7d")


@pytest.mark.parametrize(
    ("open_day", "cutoff", "days"),
    [
        # The seed: 19 December 2002 to 20 January 2003 (Martin Luther King Day), 21:00
        # Pacific. Christmas and New Year's Day are holidays; 24 December 2002 was an
        # executive-order closure, not a federal holiday, so it counts: exactly 20.
        (date(2002, 12, 19), datetime(2003, 1, 20, 21, 0), 20),
        (date(2002, 12, 20), datetime(2003, 1, 20, 21, 0), 19),
        # 21:00 Pacific is midnight Eastern: the day ends open. 20:59 is before the day ends.
        (date(2003, 1, 16), datetime(2003, 1, 17, 21, 0), 2),
        (date(2003, 1, 16), datetime(2003, 1, 17, 20, 59), 2),
        (date(2003, 1, 16), datetime(2003, 1, 16, 10, 0), 1),
    ],
)
def test_offer_business_days(open_day: date, cutoff: datetime, days: int) -> None:
    offer = OptionExchange.model_validate(
        {**seed_offer().model_dump(), "open": open_day, "cutoff": cutoff, "presentations": []}
    )
    assert offer_business_days(offer) == days
    problem = offer_period_problem(offer)
    assert (problem is None) is (days >= MIN_OFFER_BUSINESS_DAYS)
    if problem:
        assert f"open {days} business day" in problem and "at least 20 business days" in problem
