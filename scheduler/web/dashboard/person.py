"""``/dashboard/people/{kind:id}``: one person's timeline, and their feed URL.

The timeline interleaves every message to the person (with the text as sent, from the
evidence bytes that delivery kept, and the server's reply) and every fact and action of the
event log about them, newest first; at most TIMELINE of each. An operator can rotate the
person's feed URL (a new one, shown once, the old one dead at once) or revoke it, through the
same token functions as ``tickler feeds``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from calendars.notices import PersonView
from config.facts import fact_words
from jobs.digest import readable
from jobs.storage import actions, cancelled, evidence, messages, reads, tokens
from jobs.storage.cancelled import Cancelled
from jobs.storage.db import EventSource, begin_write
from jobs.storage.obligations import RETIRED
from scheduler.web.auth import PREFIX, Role, check_csrf, require
from scheduler.web.dashboard.context import Dashboard, dashboard_of
from scheduler.web.dashboard.pages import message, render

log = logging.getLogger("tickler")
TIMELINE = 200
#: Sent text longer than this is cut on the page (the whole message is in the export).
MAX_TEXT = 20_000
#: Where a fact or action came from (the event log's ``source``), as the timeline says it.
SOURCES: dict[str, str] = {
    EventSource.CLI: "from the command line",
    EventSource.API: "through the API",
    EventSource.DAEMON: "by the daemon",
    EventSource.IMPORT: "in an import",
    EventSource.LINK: "through the email's link",
    EventSource.DASHBOARD: "on the dashboard",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of the timeline: a message or an event-log row."""

    at: datetime
    when: str
    kind: str  # "message" or "event"
    title: str
    state: str
    detail: str  # the server's reply, the actor
    text: str  # the message as sent, or the fact's payload
    href: str = ""  # a message's own page (retry, cancel, resend, the address)


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    person: PersonView
    messages: list[messages.Message]
    texts: dict[int, tuple[int | None, str, bytes]]  # outbox id: (code, reply, bytes)
    events: list[dict[str, Any]]
    feed_since: datetime | None
    owes: list[dict[str, Any]] = field(default_factory=list)  # obligations, as the API gives them
    #: Why each cancelled message is (withdrawn by the planner, or cancelled by an operator).
    cancelled: dict[int, Cancelled] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Owed:
    program: str
    occurrence: str
    state: str
    due: str


def owed(loaded: Loaded, zones: dict[str, ZoneInfo], default: ZoneInfo) -> list[Owed]:
    """Say each live obligation of the person, its due date in its program's zone."""
    out = []
    for o in loaded.owes:
        if o["state"] == RETIRED:
            continue
        zone = zones.get(o["program"], default)
        due = datetime.fromisoformat(o["due_at"]) if o["due_at"] else None
        out.append(
            Owed(
                program=o["program"],
                occurrence=o["occurrence"],
                state=o["state"],
                due=f"{due.astimezone(zone):%Y-%m-%d %H:%M %Z}" if due else "",
            )
        )
    return out


def sent_text(data: bytes) -> str:
    """Return the plain-text part of a sent message (its bytes as kept), or the raw text."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    if isinstance(parsed, EmailMessage):
        part = parsed.get_body(("plain",))
        if part is not None and isinstance(part, EmailMessage):
            text = str(part.get_content())
            return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n[…]"
    return data[:MAX_TEXT].decode("utf-8", "replace")


def said_from(source: str) -> str:
    """Say where a fact came from; a source this page does not know is shown as stored."""
    return SOURCES.get(source, f"({source})")


def event_title(kind: str) -> str:
    """Return an event-log row's kind as the timeline says it: a fact in words ("CMRT
    response"), an operator's action by its name spaced ("Message retried")."""
    words = fact_words(kind)
    return readable(kind) if words is None else words[:1].upper() + words[1:]


def timeline(loaded: Loaded, zone: ZoneInfo) -> list[Entry]:
    """Merge the person's messages and events, newest first, times in ``zone``."""
    out = []
    for m in loaded.messages:
        at = m.sent_at or m.due_at
        code, reply, data = loaded.texts.get(m.id, (m.last_code, m.last_error or "", b""))
        said = f"{code or ''} {reply}".strip()
        state = m.state
        if (why := loaded.cancelled.get(m.id)) is not None:
            # A withdrawn forecast was never a message: it is not shown as one cancelled.
            state, said = ("withdrawn" if why.withdrawn else m.state), why.why
        out.append(
            Entry(
                at=at,
                when=f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}",
                kind="message",
                title=f"{readable(m.job)} to {m.recipient}",
                state=state,
                detail=" · ".join(part for part in (m.program, said) if part),
                text=sent_text(data) if data else "",
                href=f"{PREFIX}/messages/{m.id}",
            )
        )
    for e in loaded.events:
        at = datetime.fromisoformat(e["at"])
        out.append(
            Entry(
                at=at,
                when=f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}",
                kind="event",
                title=event_title(str(e["kind"])),
                state=str(e["program"] or ""),
                detail=f"by {e['actor']} {said_from(str(e['source']))}"
                + (" backfilled" if e["backfill"] else ""),
                text=json.dumps(e["payload"], indent=1, sort_keys=True, ensure_ascii=False)
                if e["payload"]
                else "",
            )
        )
    return sorted(out, key=lambda entry: entry.at, reverse=True)


def _load(context: Dashboard, key: str, zone: ZoneInfo) -> Loaded | None:
    with context.service.factory() as session:
        person_id = reads.person_id(session, key)
        person = actions.person_by_id(session, person_id) if person_id is not None else None
        if person is None:
            return None
        # The newest of each: a person of many years has more than a page holds.
        listed = messages.latest(session, person.id, limit=TIMELINE)
        texts: dict[int, tuple[int | None, str, bytes]] = {}
        for m in listed:
            if m.state == "sent":
                kept = evidence.load(session, m.id)
                if kept is not None:
                    texts[m.id] = (kept.code, kept.reply, kept.data)
        active = tokens.active(session, f"person:{key}")
        return Loaded(
            person=person,
            messages=listed,
            texts=texts,
            events=reads.events(session, person_id=person.id, limit=TIMELINE, newest=True),
            feed_since=active[-1].created_at if active else None,
            owes=reads.obligations(
                session, reads.ObligationFilters(person_id=person.id), limit=TIMELINE
            ),
            cancelled=cancelled.reasons(session, listed, zone),
        )


async def person_page(request: Request) -> Response:
    await require(request, Role.VIEWER)
    return await _show(request, issued=None, notice="")


async def _show(request: Request, *, issued: str | None, notice: str) -> Response:
    context = dashboard_of(request)
    key = request.path_params["key"]
    zone = ZoneInfo(context.service.settings.timezone)
    loaded = await asyncio.to_thread(_load, context, key, zone)
    if loaded is None:
        return message(request, 404, "No such person", "Nobody has that id.")
    return render(
        request,
        "person.html",
        active="programs",
        title=loaded.person.name,
        person=loaded.person,
        key=key,
        entries=timeline(loaded, zone),
        owes=owed(loaded, {p.id: p.zone for p in context.programs.values()}, zone),
        feed_since=(
            f"{loaded.feed_since.astimezone(zone):%Y-%m-%d %H:%M %Z}" if loaded.feed_since else ""
        ),
        issued=issued,
        notice=notice,
        zone=context.service.settings.timezone,
        more=len(loaded.messages) >= TIMELINE or len(loaded.events) >= TIMELINE,
        limit=TIMELINE,
    )


async def feed_action(request: Request) -> Response:
    """Rotate or revoke the person's feed URL (operator)."""
    user = await require(request, Role.OPERATOR)
    try:
        async with request.form(max_files=0, max_fields=4, max_part_size=1024) as form:
            check_csrf(request, form)
            action = form.get("action")
    except MultiPartException as exc:
        return message(request, 400, "The form could not be read", str(exc))
    if action not in ("rotate", "revoke"):
        return message(request, 400, "Unknown action", "Choose rotate or revoke.")
    context = dashboard_of(request)
    key, now = request.path_params["key"], context.clock()

    def act() -> str | int | None:
        with begin_write(context.service.factory) as session:
            if reads.person_id(session, key) is None:
                return None
            feed = f"person:{key}"
            return (
                tokens.issue(session, feed, now)
                if action == "rotate"
                else tokens.revoke(session, feed, now)
            )

    done = await asyncio.to_thread(act)
    if done is None:
        return message(request, 404, "No such person", "Nobody has that id.")
    log.info(
        "feed url changed",
        extra={"action": f"feed_{action}", "feed": f"person:{key}", "actor": user.username},
    )
    if isinstance(done, str):
        url = f"{context.service.settings.public_url.rstrip('/')}/feeds/{done}.ics"
        return await _show(request, issued=url, notice="A new feed URL was issued.")
    return await _show(
        request, issued=None, notice="The feed URL was revoked." if done else "No URL to revoke."
    )


def routes() -> list[Route]:
    return [
        Route("/people/{key}", person_page, methods=["GET"]),
        Route("/people/{key}/feed", feed_action, methods=["POST"]),
    ]
