"""Conflict minerals (Rule 13p-1, Form SD): the dated events of one reporting year."""

from __future__ import annotations

from datetime import date, timedelta

from calendars import events as events_
from calendars.businessdays import BusinessCalendar, CalendarName, calendar, form_sd_due
from calendars.events import Audience, Event, EventKind
from config.programs import ConflictMinerals, Milestone, Wave

_COMPLIANCE = frozenset({Audience.COMPLIANCE})
_SUPPLIERS = frozenset({Audience.SUPPLIERS, Audience.COMPLIANCE})


def sec_calendar(program: ConflictMinerals) -> BusinessCalendar:
    return calendar(CalendarName.SEC, program.extra_closures)


def due_date(program: ConflictMinerals) -> date:
    """Return the program's Form SD due date."""
    return form_sd_due(program.reporting_year, sec_calendar(program))


def follow_up_dates(program: ConflictMinerals, wave: Wave) -> list[date]:
    """Return the dates of the follow-ups to non-responders of ``wave``.

    Follow-up n is ``n * interval_days`` calendar days after the response due date; the dates
    are not rolled to business days (a reminder may go out on any day the daemon runs).
    """
    step = program.follow_up.interval_days
    return [
        wave.response_due + timedelta(days=step * n) for n in range(1, program.follow_up.max + 1)
    ]


def escalation_date(program: ConflictMinerals, wave: Wave) -> date | None:
    """Return the day non-responders of ``wave`` are escalated to their internal owner."""
    after = program.follow_up.escalate_after_days
    if after is None:
        return None
    follow_ups = follow_up_dates(program, wave)
    last = follow_ups[-1] if follow_ups else wave.response_due
    return last + timedelta(days=after)


def milestone_date(program: ConflictMinerals, milestone: Milestone, due: date) -> date:
    """Return a milestone's date from the Form SD due date.

    Business-day offsets count SEC business days. A calendar-day offset that lands on a
    weekend or holiday moves to the business day before: an internal deadline never slips
    later than the rule says.
    """
    sec = sec_calendar(program)
    if milestone.offset_business_days is not None:
        return sec.add_business_days(due, milestone.offset_business_days)
    day = due + timedelta(days=milestone.offset_days or 0)
    return day if sec.is_business_day(day) else sec.before(day)


def expand(program: ConflictMinerals) -> list[Event]:
    """Return every dated event of the reporting year."""
    due = due_date(program)
    year = program.reporting_year

    def day_event(
        key: str,
        kind: EventKind,
        title: str,
        day: date,
        audiences: frozenset[Audience],
        description: str,
        **details: object,
    ) -> Event:
        return events_.day_event(
            program=program.id,
            key=key,
            kind=kind,
            title=title,
            day=day,
            timezone=program.timezone,
            audiences=audiences,
            description=description,
            details=details,
        )

    events = [
        day_event(
            "form-sd-due",
            EventKind.FORM_SD_DUE,
            f"Form SD due (RY{year})",
            due,
            _COMPLIANCE,
            f"File Form SD and the Conflict Minerals Report for {year} on EDGAR by {due} "
            "(filings after 17:30 Eastern count as filed the next business day).",
            reporting_year=year,
            nominal=str(date(year + 1, 5, 31)),
        )
    ]
    for wave in program.waves:
        tiers = ", ".join(wave.tiers)
        events.append(
            day_event(
                f"{wave.key}/send",
                EventKind.CMRT_WAVE,
                f"CMRT survey {wave.key} sent",
                wave.send,
                _SUPPLIERS,
                f"The CMRT survey request goes to {tiers} suppliers; responses are due "
                f"{wave.response_due}.",
                wave=wave.key,
                tiers=list(wave.tiers),
                response_due=str(wave.response_due),
            )
        )
        events.append(
            day_event(
                f"{wave.key}/response-due",
                EventKind.CMRT_RESPONSE_DUE,
                f"CMRT response due ({wave.key})",
                wave.response_due,
                _SUPPLIERS,
                f"Return a complete CMRT for reporting year {year} by {wave.response_due}.",
                wave=wave.key,
            )
        )
        for n, day in enumerate(follow_up_dates(program, wave), start=1):
            events.append(
                day_event(
                    f"{wave.key}/follow-up/{n}",
                    EventKind.CMRT_FOLLOW_UP,
                    f"CMRT follow-up {n} to non-responders ({wave.key})",
                    day,
                    _COMPLIANCE,
                    f"Follow-up {n} of {program.follow_up.max} goes to suppliers of {wave.key} who "
                    "have not responded.",
                    wave=wave.key,
                    number=n,
                )
            )
        escalation = escalation_date(program, wave)
        if escalation is not None:
            events.append(
                day_event(
                    f"{wave.key}/escalation",
                    EventKind.CMRT_ESCALATION,
                    f"CMRT escalation of non-responders ({wave.key})",
                    escalation,
                    _COMPLIANCE,
                    f"Suppliers of {wave.key} still silent are escalated to their internal owners.",
                    wave=wave.key,
                )
            )
    for milestone in program.milestones:
        day = milestone_date(program, milestone, due)
        events.append(
            day_event(
                f"milestone/{milestone.key}",
                EventKind.MILESTONE,
                milestone.title,
                day,
                _COMPLIANCE,
                f"{milestone.title}: due {day} (Form SD due {due}).",
                form_sd_due=str(due),
            )
        )
    return events
