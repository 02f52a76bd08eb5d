"""The pages behind the emails' action links: acknowledge, elect or withdraw, upload a CMRT.

``GET /act/{token}`` shows what the link is for and what is already recorded (a replayed or
forwarded link shows the answer, it does not repeat it); ``POST /act/{token}`` acts. Pages are
rendered on the server and work without JavaScript. A change is a POST carrying a CSRF value
bound to a cookie (double submit: the cookie is ``SameSite=Strict``, the form's value its HMAC
with the token, so another site can neither read nor forge it). Every answer goes through
``jobs.record.record``, the same rules as the API and the CLI, judged by the server's clock:
an election one minute after the cutoff is refused with the cutoff named. Every refusal (bad,
expired or foreign link, too many tries, a file that is not a CMRT) is a page saying why.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from calendars import offer_notices
from calendars.action_links import Action, Link, LinkError, verify
from calendars.cmrt_check import check
from calendars.notices import Fact, GrantView, PersonView
from calendars.wording import spoken_instant
from config.facts import FactKind
from config.programs import ConflictMinerals, Fcpa, OptionExchange, Program
from jobs.cmrt_file import MAX_UPLOAD, UnreadableFile, read_cells
from jobs.record import RecordError, record
from jobs.storage import actions as stored
from jobs.storage import uploads
from jobs.storage.db import begin_write
from jobs.storage.snapshot import load_grants
from scheduler.daemon.service import Service

log = logging.getLogger("tickler")

CSRF_COOKIE = "tickler_csrf"
# Tries per window: enough for a person correcting a CMRT several times, not for a script.
RATE_WINDOW = 600.0
PER_TOKEN = 20
PER_ADDRESS = 60
MAX_KEYS = 10_000
HEADERS = {
    # The token is in the URL: no page may pass it on (Referer), be framed, or run a script.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Clock = Callable[[], datetime]

_pages = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(enabled_extensions=("html",)),
    undefined=StrictUndefined,
    auto_reload=False,
)


@dataclass(slots=True)
class Limiter:
    """At most ``limit`` tries per key within ``window`` seconds (one process's memory)."""

    limit: int
    window: float = RATE_WINDOW
    seen: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if len(self.seen) > MAX_KEYS:
            # Forget the keys whose tries are all past the window: memory stays bounded by the
            # keys active in one window, however many links and addresses come by.
            for stale in [k for k, t in self.seen.items() if not t or now - t[-1] > self.window]:
                del self.seen[stale]
        tries = self.seen[key]
        while tries and now - tries[0] > self.window:
            tries.popleft()
        if len(tries) >= self.limit:
            return False
        tries.append(now)
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What a valid link opens: its person, program and the facts already recorded."""

    link: Link
    person: PersonView
    program: Program
    facts: list[Fact]
    grants: list[GrantView]


_NEEDS: dict[Action, type[Any]] = {
    Action.ACKNOWLEDGE: Fcpa,
    Action.ELECT: OptionExchange,
    Action.CMRT: ConflictMinerals,
}


def routes(service: Service, clock: Clock) -> list[Route]:
    """Return the action routes, or none when no ``action_secret`` is set (no links either)."""
    if service.settings.action_secret is None:
        return []
    secret = service.settings.action_secret.get_secret_value().encode()
    programs = {p.id: p for p in service.programs}
    by_token, by_address = Limiter(PER_TOKEN), Limiter(PER_ADDRESS)
    secure = service.settings.public_url.startswith("https://")

    def load(link: Link) -> Target | None:
        program = programs.get(link.program)
        if program is None or not isinstance(program, _NEEDS[link.action]):
            return None
        with service.factory() as session:
            person = stored.person_by_id(session, link.person_id)
            if person is None:
                return None
            return Target(
                link=link,
                person=person,
                program=program,
                facts=stored.facts_of(session, program=program.id, person_id=person.id),
                grants=load_grants(session, person.id) if link.action is Action.ELECT else [],
            )

    async def act(request: Request) -> Response:
        token = request.path_params["token"]
        now = clock()
        if request.method == "POST":
            address = request.client.host if request.client else "unknown"
            if not (by_token.allow(token) and by_address.allow(address)):
                return _message(429, "Too many tries", "Please wait a few minutes and try again.")
        try:
            link = verify(token, secret, now)
        except LinkError as exc:
            return _link_error(exc, now, programs)
        target = await asyncio.to_thread(load, link)
        if target is None:
            return _link_error(LinkError("invalid"), now, programs)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if request.method == "GET":
            fresh = not cookie
            cookie = cookie or secrets.token_urlsafe(24)
            response = _page(target, now, csrf=_csrf(secret, cookie, token))
            if fresh:
                response.set_cookie(
                    CSRF_COOKIE,
                    cookie,
                    httponly=True,
                    samesite="strict",
                    secure=secure,
                    path="/act",
                )
            return response
        return await _post(request, target, token, cookie, now)

    async def _post(
        request: Request, target: Target, token: str, cookie: str, now: datetime
    ) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_UPLOAD + 64 * 1024:
            return _message(413, "File too large", f"A CMRT is at most {MAX_UPLOAD // 2**20} MB.")
        try:
            async with request.form(
                max_files=1, max_fields=4, max_part_size=MAX_UPLOAD + 1
            ) as form:
                return await _submit(request, target, token, cookie, now, form)
        except MultiPartException as exc:
            return _message(400, "The form could not be read", str(exc))

    async def _submit(
        request: Request, target: Target, token: str, cookie: str, now: datetime, form: FormData
    ) -> Response:
        sent = form.get("csrf")
        if (
            not cookie
            or not isinstance(sent, str)
            or not hmac.compare_digest(sent, _csrf(secret, cookie, token))
        ):
            return _message(
                403,
                "Please try again",
                "This form expired or came from elsewhere. Open the link from your email again.",
            )
        client = request.client.host if request.client else None
        action = target.link.action
        if action is Action.ACKNOWLEDGE:
            return await _acknowledge(target, now, client)
        if action is Action.ELECT:
            choice = form.get("choice")
            if choice not in ("elect", "withdraw"):
                return _message(400, "Choose elect or withdraw", "The form had no choice.")
            return await _elect(target, now, str(choice))
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _message(400, "No file", "Choose your CMRT file (.xlsx) and upload it again.")
        data = await upload.read(MAX_UPLOAD + 1)
        return await _cmrt(target, now, upload.filename or "cmrt.xlsx", data)

    def save(
        target: Target,
        kind: FactKind,
        now: datetime,
        payload: dict[str, Any],
        upload: bytes | None,
    ) -> int:
        with begin_write(service.factory) as session:
            if upload is not None:  # kept with the fact that names it, or not at all
                payload = {**payload, "sha256": uploads.keep(session, upload, now)}
            return record(
                session,
                kind=kind,
                program=target.program.id,
                person=target.person.key,
                at=now,
                # The event log says how the answer came: from the person's own link.
                actor=f"link:{target.person.key}",
                source="link",
                payload=payload,
                programs=programs,
                now=now,
            )

    async def _record(
        target: Target,
        kind: FactKind,
        now: datetime,
        payload: dict[str, Any],
        upload: bytes | None = None,
    ) -> str | None:
        """Record the fact (keeping ``upload``, the file it names); return why it was
        refused, or None."""
        try:
            event_id = await asyncio.to_thread(save, target, kind, now, payload, upload)
        except RecordError as exc:
            return exc.message
        log.info(
            "recorded",
            extra={
                "action": "recorded",
                "kind": kind.value,
                "event_id": event_id,
                "actor": f"link:{target.person.key}",
            },
        )
        return None

    async def _acknowledge(target: Target, now: datetime, client: str | None) -> Response:
        assert isinstance(target.program, Fcpa)
        done = _acknowledged(target)
        if done is not None:
            return _page(target, now, csrf="")
        refused = await _record(
            target,
            FactKind.FCPA_ACK,
            now,
            {"policy_version": target.program.policy_version, "client": client or ""},
        )
        if refused:
            return _message(409, "Not recorded", refused[:1].upper() + refused[1:])
        return _done(
            target,
            "Thank you",
            f"Your acknowledgment of policy version {target.program.policy_version} was recorded "
            f"on {spoken_instant(now, target.program.zone)}.",
        )

    async def _elect(target: Target, now: datetime, choice: str) -> Response:
        assert isinstance(target.program, OptionExchange)
        elected = offer_notices.elected_at(target.facts, target.person.id)
        if (choice == "elect") == (elected is not None):
            return _page(target, now, csrf="")  # already so: show what is recorded
        kind = FactKind.ELECTION if choice == "elect" else FactKind.WITHDRAWAL
        refused = await _record(target, kind, now, {})
        if refused:
            return _message(409, "Not recorded", refused[:1].upper() + refused[1:])
        what = "election" if choice == "elect" else "withdrawal"
        return _done(
            target,
            f"Your {what} is recorded",
            f"We recorded your {what} on {spoken_instant(now, target.program.zone)}. "
            "A receipt is on its way by email.",
        )

    async def _cmrt(target: Target, now: datetime, filename: str, data: bytes) -> Response:
        try:
            cells = await asyncio.to_thread(read_cells, data)
        except UnreadableFile as exc:
            return _message(422, "This file cannot be checked", f"{exc}. Nothing was recorded.")
        result = check(cells)
        issues = "\n".join(str(p) for p in result.problems)
        refused = await _record(
            target,
            FactKind.CMRT_RESPONSE,
            now,
            {
                "complete": result.complete,
                "issues": issues,
                "file": filename[:200],
                "template_version": result.version or "",
            },
            data,
        )
        if refused:
            return _message(409, "Not recorded", refused[:1].upper() + refused[1:])
        return _html(
            200,
            "cmrt_result.html",
            title="CMRT complete" if result.complete else "CMRT incomplete",
            result=result,
            person=target.person,
            when=spoken_instant(now, target.program.zone),
        )

    return [Route("/act/{token}", act, methods=["GET", "POST"])]


def _csrf(secret: bytes, cookie: str, token: str) -> str:
    return hmac.new(secret, f"csrf:{cookie}:{token}".encode(), hashlib.sha256).hexdigest()


def _acknowledged(target: Target) -> Fact | None:
    assert isinstance(target.program, Fcpa)
    version = target.program.policy_version
    found = [
        f
        for f in target.facts
        if f.kind == FactKind.FCPA_ACK and f.payload.get("policy_version") == version
    ]
    return found[-1] if found else None


def _page(target: Target, now: datetime, *, csrf: str) -> Response:
    program, zone = target.program, target.program.zone
    common: dict[str, Any] = {"person": target.person, "program": program, "csrf": csrf}
    if isinstance(program, Fcpa):
        done = _acknowledged(target)
        return _html(
            200,
            "acknowledge.html",
            title="FCPA policy acknowledgment",
            done=spoken_instant(done.at, zone) if done else None,
            **common,
        )
    if isinstance(program, OptionExchange):
        holding = offer_notices.holdings(program, [target.person], target.grants)
        cutoff = offer_notices.closes_at(program, target.facts)
        elected = offer_notices.elected_at(target.facts, target.person.id)
        return _html(
            200,
            "elect.html",
            title=program.name,
            lines=holding[0].lines if holding else (),
            new_shares=holding[0].new_shares if holding else 0,
            cutoff=spoken_instant(cutoff, zone),
            cutoff_utc=f"{cutoff:%Y-%m-%d %H:%M} UTC",
            open=now < cutoff,
            elected=spoken_instant(elected.at, zone) if elected else None,
            **common,
        )
    responses = [f for f in target.facts if f.kind == FactKind.CMRT_RESPONSE]
    last = responses[-1] if responses else None
    return _html(
        200,
        "cmrt.html",
        title="Conflict minerals survey",
        last=last,
        last_at=spoken_instant(last.at, zone) if last else None,
        max_mb=MAX_UPLOAD // 2**20,
        **common,
    )


def _done(target: Target, title: str, body: str) -> Response:
    return _html(200, "message.html", title=title, body=body, person=target.person)


def _message(status: int, title: str, body: str) -> Response:
    return _html(status, "message.html", title=title, body=body, person=None)


def _link_error(exc: LinkError, now: datetime, programs: Mapping[str, Program]) -> Response:
    if exc.reason == "expired" and exc.link is not None:
        program = programs.get(exc.link.program)
        name = program.name if program else "this request"
        return _message(
            410,
            "This link has expired",
            f"The link for {name} stopped working on "
            f"{spoken_instant(exc.link.expires, program.zone if program else _utc_zone())}. "
            "If something is still owed, the compliance team can send a new one.",
        )
    return _message(
        404,
        "This link is not valid",
        "It may have been cut short or changed on its way. Open the link from your email again, "
        "or ask the compliance team for a new one.",
    )


def _utc_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")


def _html(status: int, name: str, **context: Any) -> Response:
    body = _pages.get_template(f"actions/{name}").render(**context)
    return HTMLResponse(body, status_code=status, headers=HEADERS)
