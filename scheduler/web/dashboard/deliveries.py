"""``/dashboard/deliveries``: the messages that went wrong, and the operators' hand on them.

The list shows failed messages (a 5xx, or attempts used up) or, with ``show=retrying``, the
ones a temporary failure sent back to wait, newest due first, with the server's reply, in
keyset pages of ``PAGE`` (``before`` is the last row's due instant and id). A viewer sees;
an operator acts, each action a POST with the session's CSRF value:

- ``retry`` a failed message, ``cancel`` a pending one, ``resend`` a sent one: the same
  ``jobs.storage.messages`` functions as ``tickler messages`` and the API, so the same rules
  and the same event-log row, with the dashboard user as actor (``user:alice``);
- ``address``: correct the person's email (``jobs.record.correct_email``, as an import of
  that row would: planning re-addresses what is still pending); a retry then goes to the
  corrected address.

``/dashboard/messages/{id}`` shows one message (any state) with its reply, the actions taken
on it and its resends; that is where a sent message is resent. Page assembly is pure
(``rows``, ``detail``), tested without HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from config.programs import Program
from jobs.record import RecordError, correct_email
from jobs.storage import Session, evidence, people
from jobs.storage import cancelled as cancellations
from jobs.storage import messages as store
from jobs.storage.cancelled import Cancelled
from jobs.storage.db import EventLog, EventSource, PersonKind, begin_write
from scheduler.web.auth import Role, User, auth_of, check_csrf, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import message, render

log = logging.getLogger("tickler")

PAGE = 50
ACTIONS = ("retry", "cancel", "resend", "address")
REASON_MAX = 500
#: How ``jobs.storage.messages`` notes an operator's retry or cancel in ``last_error``.
OPERATOR_NOTES = ("retry by ", "cancelled by ")
DONE = {
    "retry": "Retried: the message went back in the queue.",
    "cancel": "Cancelled: the message will not be sent.",
    "resend": "Resent: a copy is queued (listed below under resends).",
    "address": "Address corrected: messages still pending go to the new address; retry a "
    "failed one to send it there.",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One message as the deliveries list shows it."""

    id: int
    program: str
    job: str
    person: str | None
    recipient: str
    state: str
    due: str  # in the program's zone, the zone named
    attempts: int
    reply: str  # the server's last answer, or what the delivery job recorded
    can_retry: bool
    can_cancel: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Detail:
    """One message with what was done to it, for its own page."""

    row: Row
    identity: str
    message_id: str
    expires: str
    sent: str
    sent_reply: str
    own_address: bool  # the person's own message: their address can be corrected here
    current: str  # where a retry or a resend would go now
    can_resend: bool
    actions: list[tuple[str, str, str, str]]  # (when, what, who, reason)
    resent_as: list[int]
    resend_of: int | None
    #: Why it is cancelled (None: it is not); ``withdrawn``: a forecast, never a message.
    cancelled: Cancelled | None = None


def when(instant: datetime | None, zone: ZoneInfo) -> str:
    """Return ``instant`` as a short local time with the zone named (``2003-01-20 21:00 PST``)."""
    if instant is None:
        return "-"
    local = instant.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _zone(programs: Mapping[str, Program], program: str) -> ZoneInfo:
    found = programs.get(program)
    return found.zone if found is not None else _UTC


def row(m: store.Message, programs: Mapping[str, Program], now: datetime) -> Row:
    """Return the list's view of ``m``: its due time in its program's zone, what may be done."""
    reply = f"{m.last_code or ''} {m.last_error or ''}".strip()
    if (m.last_error or "").startswith(OPERATOR_NOTES):
        reply = m.last_error or ""  # an operator's note, not the server's: no reply code
    expired = m.expires_at is not None and m.expires_at <= now
    return Row(
        id=m.id,
        program=m.program,
        job=m.job,
        person=m.person,
        recipient=m.recipient,
        state=m.state,
        due=when(m.due_at, _zone(programs, m.program)),
        attempts=m.attempts,
        reply=reply or "-",
        can_retry=m.state == "failed" and not expired,
        can_cancel=m.state == "pending",
    )


def rows(
    messages: Sequence[store.Message], programs: Mapping[str, Program], now: datetime
) -> list[Row]:
    return [row(m, programs, now) for m in messages]


def cursor(m: store.Message) -> str:
    """Return the ``before`` value that pages on after ``m``: microseconds since 1970, id."""
    micros = (m.due_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{m.id}"


def parse_cursor(text: str) -> tuple[datetime, int]:
    """Parse a ``before`` value; raise ValueError saying what it should be."""
    micros, sep, id_ = text.rpartition("-")
    if not sep or not id_.isdigit() or not micros.lstrip("-").isdigit() or len(text) > 40:
        raise ValueError(f"before={text[:40]!r} is not a page of this list (MICROS-ID)")
    return _EPOCH + timedelta(microseconds=int(micros)), int(id_)


def detail(
    m: store.Message,
    *,
    programs: Mapping[str, Program],
    sent: tuple[int | None, str] | None,
    actions: Sequence[EventLog],
    resent_as: Sequence[int],
    current: str,
    now: datetime,
    cancelled: Cancelled | None = None,
) -> Detail:
    """Return the message page's view of ``m`` and what was done to it."""
    zone = _zone(programs, m.program)
    own = store.to_person(m)
    return Detail(
        row=row(m, programs, now),
        identity=m.identity,
        message_id=m.message_id,
        expires=when(m.expires_at, zone),
        sent=when(m.sent_at, zone),
        sent_reply=(f"{sent[0] if sent[0] is not None else '-'} {sent[1]}" if sent else ""),
        own_address=own,
        current=current,
        can_resend=m.state == "sent",
        actions=[
            (
                when(a.at, zone),
                a.kind.removeprefix("message_"),
                a.actor,
                str(a.payload.get("reason", "")),
            )
            for a in actions
        ],
        resent_as=list(resent_as),
        resend_of=m.resend_of,
        cancelled=cancelled,
    )


# ------------------------------------------------------------------------------------------
# HTTP


async def deliveries(request: Request) -> Response:
    user = await require(request, Role.VIEWER)
    dashboard = dashboard_of(request)
    now = dashboard.clock()
    retrying = request.query_params.get("show") == "retrying"
    program = request.query_params.get("program") or None
    if program is not None and program not in dashboard.programs:
        return message(request, 400, "Unknown program", f"program={program[:80]!r} is not one.")
    before = None
    if "before" in request.query_params:
        try:
            before = parse_cursor(request.query_params["before"])
        except ValueError as exc:
            return message(request, 400, "Not a page", str(exc))

    def read() -> list[store.Message]:
        with dashboard.service.factory() as session:
            return store.troubled(
                session,
                retrying=retrying,
                now=now,
                program=program,
                before=before,
                limit=PAGE + 1,
            )

    found = await asyncio.to_thread(read)
    more = found[PAGE - 1] if len(found) > PAGE else None
    return render(
        request,
        "deliveries.html",
        active="deliveries",
        title="Deliveries",
        show="retrying" if retrying else "failed",
        program=program or "",
        programs=sorted(dashboard.programs),
        rows=rows(found[:PAGE], dashboard.programs, now),
        next=cursor(more) if more is not None else None,
        operator=user.may(Role.OPERATOR),
    )


async def one(request: Request) -> Response:
    user = await require(request, Role.VIEWER)
    return await _page(request, user, request.path_params["id"])


async def _page(
    request: Request, user: User, id: int, *, status: int = 200, error: str = ""
) -> Response:
    dashboard = dashboard_of(request)
    now = dashboard.clock()

    def read() -> Detail | None:
        with dashboard.service.factory() as session:
            m = store.find(session, id)
            if m is None:
                return None
            return detail(
                m,
                programs=dashboard.programs,
                sent=evidence.replies(session, [m.id]).get(m.id),
                actions=store.events(session, m),
                resent_as=store.resends(session, m.id),
                current=_current(session, m),
                now=now,
                cancelled=cancellations.reasons(
                    session, [m], _zone(dashboard.programs, m.program)
                ).get(m.id),
            )

    shown = await asyncio.to_thread(read)
    if shown is None:
        return message(request, 404, "No such message", f"There is no message {id}.")
    return render(
        request,
        "delivery.html",
        status=status,
        active="deliveries",
        title=f"Message {id}",
        m=shown,
        error=error,
        # Only an action's name comes back in the URL: a link cannot put words on this page.
        done=DONE.get(request.query_params.get("done", ""), ""),
        operator=user.may(Role.OPERATOR),
    )


def _current(session: Session, m: store.Message) -> str:
    """Return where a retry or a resend of ``m`` goes now: the person's address when it is
    their own message (``jobs.storage.messages`` does the same), else the one it had."""
    if m.person is None or not store.to_person(m):
        return m.recipient
    kind, _, external_id = m.person.partition(":")
    person = people.find(session, PersonKind(kind), external_id)
    return person.email if person is not None else m.recipient


async def act(request: Request) -> Response:
    """Retry, cancel, resend one message or correct its person's address (operators)."""
    user = await require(request, Role.OPERATOR)
    id_, action = request.path_params["id"], request.path_params["action"]
    async with request.form(max_fields=4, max_files=0, max_part_size=4096) as form:
        check_csrf(request, form)
        reason = str(form.get("reason") or "").strip()
        email = str(form.get("email") or "")
    if action not in ACTIONS:
        return message(request, 404, "No such action", f"{action[:40]!r} is not an action.")
    if len(reason) > REASON_MAX or any(ord(c) < 32 for c in reason):
        return await _page(
            request,
            user,
            id_,
            status=422,
            error=f"The reason is one line of at most {REASON_MAX} characters.",
        )
    dashboard = dashboard_of(request)
    now = dashboard.clock()
    actor = f"user:{user.username}"

    def apply() -> None:
        with begin_write(dashboard.service.factory) as session:
            if action == "address":
                m = store.find(session, id_)
                if m is None:
                    raise store.MessageError(404, f"there is no message {id_}")
                if m.person is None or not store.to_person(m):
                    raise store.MessageError(
                        409, f"message {id_} does not go to a person's own address"
                    )
                correct_email(
                    session,
                    m.person,
                    email,
                    now=now,
                    actor=actor,
                    source=EventSource.DASHBOARD,
                    reason=reason,
                )
                return
            kwargs = {"reason": reason} if action == "cancel" else {}
            getattr(store, action)(
                session, str(id_), actor=actor, source=EventSource.DASHBOARD, now=now, **kwargs
            )

    try:
        await asyncio.to_thread(apply)
    except (store.MessageError, RecordError) as exc:
        return await _page(request, user, id_, status=exc.status, error=exc.message)
    log.info(
        "dashboard action",
        extra={"action": f"dashboard_{action}", "message": id_, "actor": actor},
    )
    target = f"/dashboard/messages/{id_}?done={action}"
    return RedirectResponse(auth_of(request).url(target), status_code=303)


def routes() -> list[Route]:
    return [
        Route("/deliveries", deliveries, methods=["GET"]),
        Route("/messages/{id:int}", one, methods=["GET"]),
        Route("/messages/{id:int}/{action}", act, methods=["POST"]),
    ]
