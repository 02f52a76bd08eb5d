"""``/dashboard/record``: an operator records an answer by hand, with the reason why.

A CMRT that came by post, an acknowledgment signed on paper, an election handed in at the
desk: the form records it through ``jobs.record.record``, the same rules as ``tickler
record``, the API and the email's action pages, judged by the server's clock (an election at
the cutoff is refused with the cutoff named). The reason goes into the fact's payload, so the
event log (and the evidence export) say who recorded it (``user:alice``) and why. A refusal of
``record()`` (a closed offer, an unknown person, a fact for the wrong kind of program) is the
form again with the error and the values typed, nothing recorded. Parsing the form is pure
(``parse``), tested without HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.facts import FactKind
from config.programs import Program
from jobs.record import RecordError, record
from jobs.storage.db import EventSource, begin_write
from scheduler.web.auth import Role, check_csrf, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import render

log = logging.getLogger("tickler")

#: What the form offers, and the kind of fact each is.
WHAT = {
    "response": FactKind.CMRT_RESPONSE,
    "acknowledgment": FactKind.FCPA_ACK,
    "election": FactKind.ELECTION,
    "withdrawal": FactKind.WITHDRAWAL,
}
LABELS = {
    "response": "CMRT response (conflict minerals)",
    "acknowledgment": "FCPA policy acknowledgment",
    "election": "Election (option exchange)",
    "withdrawal": "Withdrawal of an election (option exchange)",
}
REASON_MAX = 500
ISSUES_MAX = 4000
FIELDS = ("program", "person", "what", "complete", "issues", "reason")
_LINE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_TEXT = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f]*$")  # line breaks and tabs allowed


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A valid form: what to hand to ``record()``."""

    kind: FactKind
    program: str
    person: str
    payload: dict[str, Any]


def parse(form: Mapping[str, str], programs: Mapping[str, Program]) -> Entry | list[str]:
    """Return the entry the form asks for, or every problem with it (each naming its field)."""
    problems: list[str] = []
    program = form.get("program", "")
    person = form.get("person", "").strip()
    what = form.get("what", "")
    reason = form.get("reason", "").strip()
    issues = form.get("issues", "").strip()
    complete = form.get("complete") or "complete"  # a form without the radio buttons
    if program not in programs:
        problems.append("Program: choose one of the programs")
    if what not in WHAT:
        problems.append("What: choose what came back")
    if not person or len(person) > 160 or not _LINE.match(person):
        problems.append("Person: KIND:ID on one line, e.g. supplier:S002 or employee:E1001")
    if not reason:
        problems.append("Reason: say why this is recorded by hand (e.g. CMRT arrived by post)")
    elif len(reason) > REASON_MAX or not _LINE.match(reason):
        problems.append(f"Reason: one line of at most {REASON_MAX} characters")
    if len(issues) > ISSUES_MAX or not _TEXT.match(issues):
        problems.append(f"What is missing: at most {ISSUES_MAX} characters of text")
    if complete not in ("complete", "incomplete"):
        problems.append("Complete: complete or incomplete")
    if problems:
        return problems
    payload: dict[str, Any] = {"reason": reason}
    if WHAT[what] == FactKind.CMRT_RESPONSE:
        payload["complete"] = complete == "complete"
        if issues:
            payload["issues"] = issues
    return Entry(kind=WHAT[what], program=program, person=person, payload=payload)


def _values(form: Mapping[str, Any]) -> dict[str, str]:
    """Return the form's text fields (at most their first few thousand characters)."""
    return {name: str(form.get(name) or "")[: ISSUES_MAX + 1] for name in FIELDS}


async def page(request: Request) -> Response:
    await require(request, Role.OPERATOR)
    query = request.query_params
    return _form(request, {name: query.get(name, "")[:200] for name in FIELDS})


def _form(
    request: Request,
    values: Mapping[str, str],
    *,
    status: int = 200,
    errors: list[str] | None = None,
    done: str = "",
) -> Response:
    programs = dashboard_of(request).by_name
    return render(
        request,
        "record.html",
        status=status,
        active="record",
        title="Record by hand",
        programs=programs,
        labels=LABELS,
        values=values,
        errors=errors or [],
        done=done,
    )


async def submit(request: Request) -> Response:
    user = await require(request, Role.OPERATOR)
    async with request.form(max_fields=len(FIELDS) + 1, max_files=0, max_part_size=8192) as form:
        check_csrf(request, form)
        values = _values(form)
    dashboard = dashboard_of(request)
    entry = parse(values, dashboard.programs)
    if isinstance(entry, list):
        return _form(request, values, status=422, errors=entry)
    now = dashboard.clock()
    actor = f"user:{user.username}"

    def save() -> int:
        with begin_write(dashboard.service.factory) as session:
            return record(
                session,
                kind=entry.kind,
                program=entry.program,
                person=entry.person,
                at=now,
                actor=actor,
                source=EventSource.DASHBOARD,
                payload=entry.payload,
                programs=dashboard.programs,
                now=now,
            )

    try:
        event_id = await asyncio.to_thread(save)
    except RecordError as exc:
        message = exc.message[:1].upper() + exc.message[1:]
        return _form(request, values, status=exc.status, errors=[f"Not recorded: {message}"])
    log.info(
        "recorded",
        extra={
            "action": "recorded",
            "kind": entry.kind.value,
            "event_id": event_id,
            "actor": actor,
            "by_hand": True,
        },
    )
    program = dashboard.programs[entry.program]
    done = (
        f"Recorded {LABELS[values['what']].split(' (')[0].lower()} of {entry.person} in "
        f"{program.name} (event {event_id}), by {user.username}."
    )
    return _form(request, {name: "" for name in FIELDS}, done=done)


def routes() -> list[Route]:
    return [Route("/record", page, methods=["GET"]), Route("/record", submit, methods=["POST"])]
