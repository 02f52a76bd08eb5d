"""Business-day calendars and the date rules built on them.

Two calendars matter: the SEC's (weekdays that are not US federal legal holidays, nor days the
President or Congress closed the government) for filing deadlines, and the exchange's trading
calendar (Nasdaq) for grant and pricing dates. Both come from the ``holidays`` package; a
program can add extra closure days so that a closure not yet in the package is auditable in
configuration.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import holidays
from dateutil.relativedelta import relativedelta


class CalendarName(enum.StrEnum):
    """The business-day calendars a program can name."""

    SEC = "sec"
    #: Weekdays that are not federal legal holidays (5 U.S.C. 6103), executive-order closures
    #: counted open: the "business day" of the tender-offer rules (Rule 14d-1(g)(3)).
    FEDERAL = "federal"
    NASDAQ = "nasdaq"
    NYSE = "nyse"
    WEEKDAYS = "weekdays"


@cache
def _holidays(name: CalendarName, year: int) -> frozenset[date]:
    if name is CalendarName.SEC:
        # "government" adds the executive-order closures (2018-12-05, 2020-12-24, 2025-01-09).
        days = holidays.country_holidays("US", years=year, categories=("public", "government"))
    elif name is CalendarName.FEDERAL:
        days = holidays.country_holidays("US", years=year, categories=("public",))
    elif name is CalendarName.NASDAQ:
        days = holidays.financial_holidays("XNAS", years=year)
    elif name is CalendarName.NYSE:
        days = holidays.financial_holidays("XNYS", years=year)
    else:
        return frozenset()
    return frozenset(days)


@dataclass(frozen=True, slots=True, kw_only=True)
class BusinessCalendar:
    """A business-day calendar: weekdays minus the named holidays minus ``extra_closures``."""

    name: CalendarName
    extra_closures: frozenset[date] = field(default_factory=frozenset)

    def is_business_day(self, day: date) -> bool:
        if day.weekday() >= 5 or day in self.extra_closures:
            return False
        return day not in _holidays(self.name, day.year)

    def on_or_after(self, day: date) -> date:
        """Return ``day`` if it is a business day, else the next one."""
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def before(self, day: date) -> date:
        """Return the last business day strictly before ``day``."""
        day -= timedelta(days=1)
        while not self.is_business_day(day):
            day -= timedelta(days=1)
        return day

    def add_business_days(self, day: date, count: int) -> date:
        """Return the day ``count`` business days after ``day`` (before it, if negative)."""
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_business_day(day):
                remaining -= 1
        return day


def calendar(name: CalendarName | str, extra_closures: Iterable[date] = ()) -> BusinessCalendar:
    """Build the named calendar with a program's extra closure days."""
    return BusinessCalendar(name=CalendarName(name), extra_closures=frozenset(extra_closures))


def form_sd_due(reporting_year: int, sec: BusinessCalendar) -> date:
    """Return the Form SD due date for ``reporting_year``: 31 May of the next year, rolled.

    When 31 May is a Saturday, Sunday or federal holiday (Memorial Day falls on 31 May in
    2021 and 2027), the form is due the next business day (Exchange Act Rule 0-3).
    """
    return sec.on_or_after(date(reporting_year + 1, 5, 31))


def first_business_day_after(
    start: date, *, months: int, days: int, business: BusinessCalendar
) -> date:
    """Return the first business day at least ``months`` months and ``days`` days after ``start``.

    Months are added first, clamping to the month's last day (31 August + 6 months is
    29 February in a leap year, 28 February otherwise; 29 February + 12 months is 28 February),
    then days; the result rolls forward to a business day. So 2003-01-20 + 6 months and 1 day is
    2003-07-21, a Monday and a trading day.
    """
    return business.on_or_after(start + relativedelta(months=months) + timedelta(days=days))


def add_years(day: date, years: int) -> date:
    """Return ``day`` plus ``years`` years; 29 February becomes 28 February in a common year."""
    # Not relativedelta: the FCPA planner calls this for every yearly cycle of every person,
    # and only 29 February can be out of range.
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
