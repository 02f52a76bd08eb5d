"""Stock option exchange offer (a tender offer): its dates and the events they make.

Every date hangs on the expiration (the election cutoff, after any extension): the
cancellation date is the expiration date, the grant date is the first business day at least
6 months and 1 day after it, the exercise price is the close of the last trading day before the
grant date. Extending the offer moves them all, and every event keeps its uid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from calendars.businessdays import CalendarName, add_years, calendar, first_business_day_after
from calendars.clock import before, local_instant, localize
from calendars.events import Audience, Event, EventKind, day_event
from calendars.vesting import (
    AllocationType,
    Tranche,
    VestingStep,
    parse_day_of_month,
    vesting_schedule,
)
from config.programs import OptionExchange, split_offset

_EMPLOYEES = frozenset({Audience.EMPLOYEES, Audience.COMPLIANCE})
_COMPLIANCE = frozenset({Audience.COMPLIANCE})
_EASTERN = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferDates:
    """The offer's derived dates; instants are aware, in the program's zone."""

    open: date
    cutoff: datetime
    cancellation: date
    promise_to_grant: date
    grant: date
    exercise_price: date
    option_expiration: date


def offer_dates(program: OptionExchange) -> OfferDates:
    """Derive every date of the offer from its configuration."""
    cutoff = localize(program.expiration, program.zone)
    cancellation = cutoff.date()
    grant_cal = calendar(CalendarName(program.grant.calendar), program.extra_closures)
    price_cal = calendar(CalendarName(program.exercise_price.calendar), program.extra_closures)
    grant = first_business_day_after(
        cancellation, months=program.grant.months, days=program.grant.days, business=grant_cal
    )
    return OfferDates(
        open=program.open,
        cutoff=cutoff,
        cancellation=cancellation,
        promise_to_grant=grant_cal.add_business_days(
            cancellation, program.promise_business_days_after
        ),
        grant=grant,
        exercise_price=price_cal.before(grant),
        option_expiration=add_years(grant, program.option_term_years),
    )


#: A tender offer stays open at least this many business days (Exchange Act Rule 14e-1(a),
#: Rule 13e-4(f)(1)(i) for an issuer's own offer).
MIN_OFFER_BUSINESS_DAYS = 20


def offer_business_days(program: OptionExchange) -> int:
    """Return how many business days the offer is open, its first and last day counted.

    The SEC counts the day the offer commences as its first business day and a day as a
    business day from 12:01 a.m. to midnight Eastern time, weekdays that are not federal
    holidays (Rule 14d-1(g)(3): a statutory holiday, so the executive-order closure of
    2002-12-24 counts as open); the last day counts when the offer runs to the end of it, so
    the count runs from the open date through the cutoff's date in US Eastern time (21:00
    Pacific is midnight Eastern: the seed's 2003-01-20 cutoff counts 20 January, a holiday
    anyway). The program's extra closures count as closed days; an extension moves the cutoff.
    """
    federal = calendar(CalendarName.FEDERAL, program.extra_closures)
    eastern = offer_dates(program).cutoff.astimezone(_EASTERN)
    # A cutoff at midnight Eastern ends the day before: that whole day was open.
    last = eastern.date() - timedelta(days=1) if eastern.time() == time(0) else eastern.date()
    count, day = 0, program.open
    while day <= last:
        count += federal.is_business_day(day)
        day += timedelta(days=1)
    return count


def offer_period_problem(program: OptionExchange) -> str | None:
    """Return why the offer is open too short a time for a tender offer, or None."""
    days = offer_business_days(program)
    if days >= MIN_OFFER_BUSINESS_DAYS:
        return None
    return (
        f"the offer is open {days} business day{'s' * (days != 1)} ({program.open} to "
        f"{offer_dates(program).cutoff:%Y-%m-%d %H:%M %Z}); a tender offer must stay open at "
        f"least {MIN_OFFER_BUSINESS_DAYS} business days (Rules 13e-4(f)(1)(i) and 14e-1(a))"
    )


def reminder_instants(program: OptionExchange) -> list[tuple[str, datetime]]:
    """Return (offset text, instant) of each cutoff reminder, earliest first.

    A reminder counted in whole days or weeks goes out on its day at the program's
    ``send_time``, like every scheduled email: "7d" before a cutoff at 21:00 PST on Monday 20
    January 2003 is 09:00 PST on Monday 13 January, not 21:00 (a reminder at 9 PM is read the
    next morning). The day is counted on the wall clock, so DST in between changes nothing,
    and a send time that DST skips moves forward by the gap. Offsets are positive, so the day is
    before the cutoff's and its send time comes first, whatever the two times of day. Hours and
    minutes ("3h", "P1DT3H") count real time back from the cutoff itself.
    """
    cutoff = offer_dates(program).cutoff
    pairs = []
    for text in program.cutoff_reminders:
        offset = split_offset(text)
        at = before(cutoff, offset, program.zone)
        if not offset.real:
            at = local_instant(at.date(), program.send_time, program.zone)
        pairs.append((text, at))
    return sorted(pairs, key=lambda pair: pair[1])


def vesting(program: OptionExchange, *, shares: int, grant: date) -> tuple[Tranche, ...]:
    """Return the vesting tranches of a new grant of ``shares`` made on ``grant``."""
    return vesting_schedule(
        shares=shares,
        start=grant,
        steps=[
            VestingStep(
                period_months=s.period_months,
                occurrences=s.occurrences,
                portion=Fraction(s.portion),
            )
            for s in program.vesting.steps
        ],
        allocation=AllocationType(program.vesting.allocation),
        day_rule=parse_day_of_month(program.vesting.day_of_month),
    )


def vesting_events(
    program: OptionExchange, *, shares: int, grant: date, person: str | None = None
) -> list[Event]:
    """Return one all-day event per vesting tranche, share counts in ``details``."""
    tranches = vesting(program, shares=shares, grant=grant)
    prefix = f"vesting/{person}" if person else "vesting"
    return [
        day_event(
            program=program.id,
            key=f"{prefix}/{t.index}",
            kind=EventKind.VESTING,
            title=f"Vesting {t.index}/{len(tranches)}: {t.shares} shares",
            day=t.date,
            timezone=program.timezone,
            audiences=_EMPLOYEES,
            person=person,
            description=(
                f"{t.shares} shares of the new option vest on {t.date} "
                f"({t.cumulative} of {shares} vested)."
            ),
            details={
                "tranche": t.index,
                "shares": _number(t.shares),
                "cumulative": _number(t.cumulative),
                "total": shares,
            },
        )
        for t in tranches
    ]


def expand(program: OptionExchange) -> list[Event]:
    """Return every dated event of the offer (and the example grant's vesting, if configured)."""
    d = offer_dates(program)
    pid, tz = program.id, program.timezone
    cutoff_text = f"{d.cutoff:%A %-d %B %Y at %-I:%M %p} {d.cutoff.tzname()}"
    events = [
        day_event(
            program=pid,
            key="offer-open",
            kind=EventKind.OFFER_OPEN,
            title="Offer opens",
            day=d.open,
            timezone=tz,
            audiences=_EMPLOYEES,
            description=f"The offer is open. Elect or withdraw before {cutoff_text}.",
        )
    ]
    for p in program.presentations:
        start, end = localize(p.start, program.zone), localize(p.end, program.zone)
        where = "; ".join(x for x in (p.location, f"dial-in {p.dial_in}" if p.dial_in else "") if x)
        events.append(
            Event(
                program=pid,
                key=f"presentation/{p.key}",
                kind=EventKind.PRESENTATION,
                title="Offer presentation",
                start=start,
                end=end,
                timezone=tz,
                audiences=_EMPLOYEES,
                location=where,
                description=f"Presentation of the offer. {where}. Elections close {cutoff_text}.",
                details={"location": p.location, "dial_in": p.dial_in},
            )
        )
    for text, at in reminder_instants(program):
        events.append(
            Event(
                program=pid,
                key=f"cutoff-reminder/{text}",
                kind=EventKind.CUTOFF_REMINDER,
                title=f"Election cutoff reminder ({text} before)",
                start=at,
                end=at,
                timezone=tz,
                audiences=_COMPLIANCE,
                description=(
                    f"Eligible employees who have not elected are reminded: cutoff {cutoff_text}."
                ),
                details={"offset": text},
            )
        )
    events.append(
        Event(
            program=pid,
            key="election-cutoff",
            kind=EventKind.ELECTION_CUTOFF,
            title="Election cutoff (elections and withdrawals close)",
            start=d.cutoff,
            end=d.cutoff,
            timezone=tz,
            audiences=_EMPLOYEES,
            description=(
                f"Elections and withdrawals must be received before {cutoff_text}. "
                "After the cutoff nothing can change."
            ),
            details={
                "extensions": len(program.extensions),
                "cancellation_date": str(d.cancellation),
            },
        )
    )
    for key, kind, title, day, text in (
        (
            "promise-to-grant",
            EventKind.PROMISE_TO_GRANT,
            "Promise to grant sent",
            d.promise_to_grant,
            "Each participant receives a promise to grant new options.",
        ),
        (
            "exercise-price-date",
            EventKind.EXERCISE_PRICE_DATE,
            "Exercise price set (closing price)",
            d.exercise_price,
            "The new options' exercise price is this day's closing price.",
        ),
        (
            "grant-date",
            EventKind.GRANT_DATE,
            "New options granted",
            d.grant,
            "New options are granted to participants still employed on this day.",
        ),
        (
            "option-expiration",
            EventKind.OPTION_EXPIRATION,
            "New options expire",
            d.option_expiration,
            f"The new options expire {program.option_term_years} years after the grant date.",
        ),
    ):
        events.append(
            day_event(
                program=pid,
                key=key,
                kind=kind,
                title=title,
                day=day,
                timezone=tz,
                audiences=_EMPLOYEES,
                description=text,
                details={"grant_date": str(d.grant), "cancellation_date": str(d.cancellation)},
            )
        )
    if program.example_shares:
        events.extend(vesting_events(program, shares=program.example_shares, grant=d.grant))
    return events


def _number(value: int | Fraction) -> int | str:
    return value if isinstance(value, int) else str(value)
