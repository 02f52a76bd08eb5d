"""FCPA policy acknowledgments: onboarding and yearly renewal due dates."""

from __future__ import annotations

from datetime import date, timedelta

from calendars.businessdays import add_years
from calendars.events import Audience, Event, EventKind, day_event
from config.programs import Fcpa

_EVERYONE = frozenset({Audience.REPRESENTATIVES, Audience.COMPLIANCE})


def renewal_dates(program: Fcpa, *, start: date, until: date) -> list[date]:
    """Return the renewal due dates of a person whose relationship started on ``start``.

    Anniversary mode: each anniversary of ``start`` (29 February falls on 28 February in common
    years) that falls at least about a year after onboarding was due (a year less the
    onboarding window, the same gap a person who starts after the policy takes effect gets),
    so someone who started long before the policy took effect does not renew weeks after
    first signing. Fixed mode: the company-wide ``month_day`` of each year, starting with the first
    one at least a year after onboarding is due, so nobody renews weeks after first signing.
    Only dates on or before ``until`` are returned.
    """
    first_due = onboarding_due(program, start)
    out: list[date] = []
    if program.renewal.mode == "anniversary":
        earliest = add_years(first_due, 1) - timedelta(days=max(program.onboarding_due_days, 1))
        n = 1
        while (day := add_years(start, n)) <= until:
            if day >= earliest:
                out.append(day)
            n += 1
        return out
    month, dom = (int(x) for x in (program.renewal.month_day or "01-01").split("-"))
    year = first_due.year
    earliest = add_years(first_due, 1) - timedelta(days=365 // 2)
    while (day := date(year, month, dom)) <= until:
        if day >= earliest and day > first_due:
            out.append(day)
        year += 1
    return out


def onboarding_due(program: Fcpa, start: date) -> date:
    """Return when a new Representative's first acknowledgment is due."""
    return max(start, program.effective) + timedelta(days=program.onboarding_due_days)


def company_due_dates(program: Fcpa, *, until: date) -> list[date]:
    """Return the company-wide renewal due dates (fixed mode) from the effective date on."""
    if program.renewal.mode != "fixed":
        return []
    month, dom = (int(x) for x in (program.renewal.month_day or "01-01").split("-"))
    return [
        d
        for y in range(program.effective.year, until.year + 1)
        if program.effective < (d := date(y, month, dom)) <= until
    ]


def expand(program: Fcpa, *, until: date) -> list[Event]:
    """Return the policy's effective date and the company-wide due dates up to ``until``."""
    events = [
        day_event(
            program=program.id,
            key=f"policy/{program.policy_version}",
            kind=EventKind.FCPA_POLICY_EFFECTIVE,
            title=f"FCPA policy {program.policy_version} effective",
            day=program.effective,
            timezone=program.timezone,
            audiences=_EVERYONE,
            description=(
                f"Policy version {program.policy_version} takes effect. Every Representative and "
                f"Third Party acknowledges it within {program.onboarding_due_days} days of "
                "starting, then every year."
            ),
            details={"policy_version": program.policy_version},
        )
    ]
    for day in company_due_dates(program, until=until):
        events.append(
            day_event(
                program=program.id,
                key=f"ack-due/{day.year}",
                kind=EventKind.FCPA_ACK_DUE,
                title=f"FCPA acknowledgment due ({day.year})",
                day=day,
                timezone=program.timezone,
                audiences=_EVERYONE,
                description=(
                    f"Sign the yearly acknowledgment of the FCPA policy ({program.policy_version}) "
                    f"by {day}."
                ),
                details={"policy_version": program.policy_version, "year": day.year},
            )
        )
    return events
