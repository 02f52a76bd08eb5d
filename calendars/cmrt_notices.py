"""Conflict minerals: the CMRT survey, follow-ups, corrections, escalations, milestones."""

from __future__ import annotations

from datetime import datetime, timedelta

from calendars import conflict_minerals as cm
from calendars.notices import (
    DAY,
    Fact,
    Notice,
    NoticeMaker,
    ObligationState,
    PersonView,
    Plan,
    Snapshot,
    at_send_time,
    send_days,
)
from config.facts import FactKind
from config.programs import ConflictMinerals, Wave


def supplier_wave(program: ConflictMinerals, supplier: PersonView) -> Wave | None:
    """Return the first wave whose tiers include the supplier's tier: one survey per supplier."""
    for wave in program.waves:
        if supplier.tier in wave.tiers:
            return wave
    return None


def plan(program: ConflictMinerals, snapshot: Snapshot, now: datetime) -> Plan:
    """Return every notice of the reporting year and each supplier's response state at ``now``."""
    occurrence = str(program.reporting_year)
    due_sd = at_send_time(program, cm.due_date(program))
    responses = snapshot.facts_until(now, program.id, [FactKind.CMRT_RESPONSE])
    latest: dict[int, Fact] = {}
    for response in responses:
        if response.person_id is not None:
            latest[response.person_id] = response
    notices: list[Notice] = []
    obligations: list[ObligationState] = []

    notice = NoticeMaker(
        program.id,
        occurrence,
        {
            "program_name": program.name,
            "reporting_year": program.reporting_year,
            "form_sd_due": cm.due_date(program).isoformat(),
            **({"template_url": program.template_url} if program.template_url else {}),
        },
        notices,
        send_days(program),
        snapshot.team.domain,
    )

    for supplier in snapshot.people:
        if supplier.kind != "supplier" or (wave := supplier_wave(program, supplier)) is None:
            continue
        response_due = wave.response_due.isoformat()
        sent = at_send_time(program, wave.send)
        notice(
            supplier,
            "cmrt_request",
            f"request/{wave.key}",
            sent,
            due_sd,
            wave=wave.key,
            response_due=response_due,
        )
        fact = latest.get(supplier.id)
        state = "pending"
        if fact is None:
            follow_ups = [at_send_time(program, d) for d in cm.follow_up_dates(program, wave)]
            escalation_day = cm.escalation_date(program, wave)
            escalation = at_send_time(program, escalation_day) if escalation_day else None
            # (``max = 0``: no follow-up, and nothing to stop.)
            stops = [*follow_ups[1:], escalation or due_sd][: len(follow_ups)]
            for n, (at, stop) in enumerate(zip(follow_ups, stops, strict=True), start=1):
                # A follow-up superseded by the next one has lost its purpose.
                notice(
                    supplier,
                    "cmrt_follow_up",
                    f"follow-up/{wave.key}/{n}",
                    at,
                    stop,
                    number=n,
                    of=program.follow_up.max,
                    response_due=response_due,
                )
            if escalation is not None:
                owner = supplier.owner_email or snapshot.team.compliance
                notice(
                    supplier,
                    "cmrt_escalation",
                    f"escalation/{supplier.key}",
                    escalation,
                    due_sd,
                    supplier=supplier.name,
                    supplier_email=supplier.email,
                    supplier_id=supplier.external_id,
                    response_due=response_due,
                    follow_ups=len(follow_ups),
                    to=owner,
                )
                if now >= escalation:
                    state = "escalated"
        elif fact.payload.get("complete", True):
            state = "complete"
        else:
            state = "incomplete"
            # Ask for a corrected CMRT at once, then on the incomplete cadence, anchored on
            # this response: a second incomplete response starts its own sequence.
            steps = program.incomplete.max + 1
            times = [
                fact.at + timedelta(days=program.incomplete.interval_days * k) for k in range(steps)
            ]
            for k, at in enumerate(times):
                stop = times[k + 1] if k + 1 < steps else due_sd
                notice(
                    supplier,
                    "cmrt_correction",
                    f"correction/{fact.id}/{k}",
                    at,
                    max(stop, at + DAY),
                    at_once=k == 0,  # the answer to the response; the later ones are scheduled
                    number=k,
                    issues=str(fact.payload.get("issues", "")),
                    received=fact.at.date().isoformat(),
                )
        obligations.append(
            ObligationState(
                program=program.id,
                occurrence=occurrence,
                person_id=supplier.id,
                kind=FactKind.CMRT_RESPONSE,
                state=state,
                due=at_send_time(program, wave.response_due),
                details={"wave": wave.key, "responded_at": fact.at.isoformat() if fact else None},
            )
        )

    team = snapshot.team.compliance
    for milestone in program.milestones:
        day = cm.milestone_date(program, milestone, cm.due_date(program))
        notice(
            None,
            "cmrt_milestone",
            f"milestone/{milestone.key}",
            at_send_time(program, day),
            at_send_time(program, day) + DAY,
            title=milestone.title,
            date=day.isoformat(),
            to=team,
        )
    for label, offset in (("week-before", 7), ("due", 0)):
        day = cm.due_date(program) - timedelta(days=offset)
        notice(
            None,
            "form_sd_reminder",
            f"form-sd/{label}",
            at_send_time(program, day),
            due_sd + DAY,
            days_left=offset,
            to=team,
        )
    return Plan(notices=notices, obligations=obligations)
