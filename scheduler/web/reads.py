"""The read API and the message actions: GET what Tickler holds, act on one message.

``GET /api/v1/people``, ``/obligations``, ``/messages``, ``/events`` page by an opaque cursor
(``next`` in the body and a ``Link: rel="next"`` header; keyset underneath, see
``jobs.storage.reads``), ``/messages/{ref}`` shows one message with its reply, actions and
resends, ``/messages/{ref}/raw`` gives the bytes as sent (``message/rfc822``), ``/programs``
and ``/programs/{id}/calendar`` the calendars. These need the token's ``read`` scope;
``POST /api/v1/messages/{ref}/retry|cancel|resend`` the ``messages`` scope, and go to the event
log as ``api:NAME``. ``/api/v1/docs`` is a page rendered from the OpenAPI document.
Errors are RFC 9457 problem details, as for the rest of the API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calendars.events import event_to_dict
from calendars.kinds import effective
from calendars.plan import plan
from jobs.storage import cancelled, evidence, reads
from jobs.storage import messages as store
from jobs.storage.db import EventSource, OutboxState, PersonKind, begin_write
from jobs.storage.snapshot import load_facts
from scheduler.daemon.service import Service
from scheduler.web.problems import FieldError, pointer

PREFIX = "/api/v1"
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")
State = Literal["pending", "claimed", "sent", "failed", "skipped", "cancelled"]


class Page(BaseModel):
    """Query parameters every listing takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cursor: str | None = Field(default=None, description="`next` of the previous page")
    limit: int = Field(default=100, ge=1, le=1000, description="Rows per page")


class PeopleQuery(Page):
    kind: Literal["supplier", "employee", "third_party"] | None = None


class DueRange(Page):
    program: str | None = Field(default=None, max_length=64)
    person: str | None = Field(default=None, max_length=160, description="KIND:ID")
    due_from: AwareDatetime | None = Field(default=None, description="Due at or after")
    due_to: AwareDatetime | None = Field(default=None, description="Due before")


class ObligationQuery(DueRange):
    state: str | None = Field(default=None, max_length=32)
    kind: Literal["cmrt_response", "election", "fcpa_ack"] | None = None


class MessageQuery(DueRange):
    state: State | None = None
    kind: str | None = Field(default=None, max_length=64, description="The message's job")


class EventQuery(Page):
    program: str | None = Field(default=None, max_length=64)
    person: str | None = Field(default=None, max_length=160, description="KIND:ID")
    kind: str | None = Field(default=None, max_length=64)


class CalendarQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: date | None = Field(default=None, alias="from", description="First local day")
    end: date | None = Field(default=None, alias="to", description="Last local day")


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: str = Field(default="", max_length=1000, description="Why (kept in the event log)")


class Refused(Exception):
    def __init__(self, status: int, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, list(errors)


def encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = value["after"]
        if isinstance(after, int) and after >= 0:
            return after
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    detail = "not a cursor this API gave out"
    raise Refused(
        422, f"cursor: {detail}", [FieldError(field="cursor", pointer="#/cursor", detail=detail)]
    )


def _query(model: type[_M], request: Request) -> _M:
    params = request.query_params
    repeated = sorted({k for k in params if len(params.getlist(k)) > 1})
    if repeated:
        raise Refused(422, f"{repeated[0]}: given more than once")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        errors = [
            FieldError(
                field=".".join(str(p) for p in e["loc"]) or "query",
                pointer=pointer(e["loc"]),
                detail=e["msg"],
            )
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise Refused(422, "; ".join(f"{e.field}: {e.detail}" for e in errors), errors) from None


def _page(request: Request, items: list[dict[str, Any]], limit: int) -> Response:
    nxt = encode_cursor(int(items[-1]["id"])) if len(items) == limit else None
    headers = {}
    if nxt is not None:
        headers["Link"] = f'<{request.url.include_query_params(cursor=nxt)}>; rel="next"'
    return JSONResponse({"items": items, "next": nxt}, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Request, str, Handler], Awaitable[Response]]


def routes(service: Service, clock: Callable[[], datetime], guard: Guard) -> list[Route]:
    """Return the read routes and the message actions; ``guard(request, scope, handler)``
    authenticates, checks the scope, and turns ``Refused`` into problem details."""
    programs = {p.id: p for p in service.programs}
    zone = ZoneInfo(service.settings.timezone)

    def described(session: Any, rows: Sequence[store.Message]) -> list[dict[str, Any]]:
        """Return ``rows`` as JSON, each cancelled one with why (days in the deployment's zone)."""
        why = cancelled.reasons(session, rows, zone)
        return [
            m.as_json()
            | {
                "withdrawn": (c := why.get(m.id)) is not None and c.withdrawn,
                "cancelled_why": None if c is None else c.why,
            }
            for m in rows
        ]

    async def db(work: Callable[[], _T]) -> _T:
        return await asyncio.to_thread(work)

    def person(session: Any, key: str | None) -> int | None:
        if key is None:
            return None
        found = reads.person_id(session, key)
        if found is None:
            raise Refused(404, f"no person {key!r} (KIND:ID, e.g. supplier:S002)")
        return found

    async def people(request: Request) -> Response:
        q = _query(PeopleQuery, request)
        after = decode_cursor(q.cursor)

        def work() -> list[dict[str, Any]]:
            kind = PersonKind(q.kind) if q.kind else None
            with service.factory() as session:
                return reads.people(session, kind=kind, after=after, limit=q.limit)

        return _page(request, await db(work), q.limit)

    async def obligations(request: Request) -> Response:
        q = _query(ObligationQuery, request)
        after = decode_cursor(q.cursor)

        def work() -> list[dict[str, Any]]:
            with service.factory() as session:
                filters = reads.ObligationFilters(
                    program=q.program,
                    person_id=person(session, q.person),
                    state=q.state,
                    kind=q.kind,
                    due_from=q.due_from,
                    due_to=q.due_to,
                )
                return reads.obligations(session, filters, after=after, limit=q.limit)

        return _page(request, await db(work), q.limit)

    async def messages(request: Request) -> Response:
        q = _query(MessageQuery, request)
        after = decode_cursor(q.cursor)

        def work() -> list[dict[str, Any]]:
            with service.factory() as session:
                filters = store.Filters(
                    program=q.program,
                    person_id=person(session, q.person),
                    state=OutboxState(q.state) if q.state else None,
                    job=q.kind,
                    due_from=q.due_from,
                    due_to=q.due_to,
                )
                rows = store.page(session, filters, after=after, limit=q.limit)
                return described(session, rows)

        return _page(request, await db(work), q.limit)

    async def message(request: Request) -> Response:
        ref = request.path_params["ref"]

        def work() -> dict[str, Any]:
            with service.factory() as session:
                found = store.find(session, ref)
                if found is None:
                    raise Refused(404, f"no message {ref!r} (an id, an identity or a Message-ID)")
                sent = evidence.load(session, found.id)
                return described(session, [found])[0] | {
                    "resends": store.resends(session, found.id),
                    "actions": [
                        {"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
                         "payload": e.payload}
                        for e in store.events(session, found)
                    ],
                    "evidence": None if sent is None else {
                        "sent_at": sent.sent_at.isoformat(),
                        "code": sent.code,
                        "reply": sent.reply,
                        "size": len(sent.data),
                        "raw": f"{PREFIX}/messages/{found.id}/raw",
                    },
                }  # fmt: skip

        return JSONResponse(await db(work))

    async def raw(request: Request) -> Response:
        ref = request.path_params["ref"]

        def work() -> bytes:
            with service.factory() as session:
                found = store.find(session, ref)
                sent = None if found is None else evidence.load(session, found.id)
                if found is None or sent is None:
                    raise Refused(404, f"no bytes kept for message {ref!r}")
                return sent.data

        return Response(await db(work), media_type="message/rfc822")

    async def program_list(request: Request) -> Response:
        items = [{"id": p.id, "kind": p.kind, "name": p.name} for p in programs.values()]
        return JSONResponse({"items": items, "next": None})

    async def calendar(request: Request) -> Response:
        program = programs.get(request.path_params["program"])
        if program is None:
            raise Refused(404, f"no program {request.path_params['program']!r}")
        q = _query(CalendarQuery, request)
        now = clock()

        def work() -> list[dict[str, Any]]:
            with service.factory() as session:
                facts = [f for f in load_facts(session) if f.program in (program.id, None)]
            events = plan([effective(program, facts)], now=now, start=q.start, end=q.end)
            return [{"uid": e.uid} | event_to_dict(e) for e in events]

        return JSONResponse({"program": program.id, "events": await db(work)})

    def action(name: Literal["retry", "cancel", "resend"]) -> Handler:
        async def act(request: Request) -> Response:
            body = await request.body()
            try:
                parsed = ActionBody.model_validate_json(body or b"{}")
            except ValidationError as exc:
                raise Refused(422, str(exc.errors(include_url=False)[0]["msg"])) from None
            ref, now = request.path_params["ref"], clock()
            actor = f"api:{request.state.caller}"

            def work() -> dict[str, Any]:
                with begin_write(service.factory) as session:
                    kwargs: dict[str, Any] = {"reason": parsed.reason} if name == "cancel" else {}
                    try:
                        done = getattr(store, name)(
                            session, ref, actor=actor, source=EventSource.API, now=now, **kwargs
                        )
                    except store.MessageError as exc:
                        raise Refused(exc.status, exc.message) from None
                    return dict(done.as_json())

            result = await db(work)
            return JSONResponse(result, status_code=201 if name == "resend" else 200)

        act.__name__ = f"message_{name}"  # the metrics' endpoint label
        return act

    def guarded(scope: str, handler: Handler) -> Handler:
        # An ``async def``: Starlette runs any other callable as a synchronous endpoint.
        async def endpoint(request: Request) -> Response:
            return await guard(request, scope, handler)

        return endpoint

    def read(handler: Handler) -> Handler:
        return guarded("read", handler)

    def acting(handler: Handler) -> Handler:
        return guarded("messages", handler)

    get = ["GET"]
    return [
        Route(f"{PREFIX}/people", read(people), methods=get),
        Route(f"{PREFIX}/obligations", read(obligations), methods=get),
        Route(f"{PREFIX}/messages", read(messages), methods=get),
        Route(f"{PREFIX}/messages/{{ref}}", read(message), methods=get),
        Route(f"{PREFIX}/messages/{{ref}}/raw", read(raw), methods=get),
        Route(f"{PREFIX}/events", read(events_handler(service)), methods=get),
        Route(f"{PREFIX}/programs", read(program_list), methods=get),
        Route(f"{PREFIX}/programs/{{program}}/calendar", read(calendar), methods=get),
        *(
            Route(f"{PREFIX}/messages/{{ref}}/{n}", acting(action(n)), methods=["POST"])
            for n in ("retry", "cancel", "resend")
        ),
    ]


def events_handler(service: Service) -> Handler:
    async def events(request: Request) -> Response:
        q = _query(EventQuery, request)
        after = decode_cursor(q.cursor)

        def work() -> list[dict[str, Any]]:
            with service.factory() as session:
                pid = None
                if q.person is not None:
                    pid = reads.person_id(session, q.person)
                    if pid is None:
                        raise Refused(404, f"no person {q.person!r} (KIND:ID)")
                return reads.events(
                    session, program=q.program, person_id=pid, kind=q.kind, after=after,
                    limit=q.limit,
                )  # fmt: skip

        return _page(request, await asyncio.to_thread(work), q.limit)

    return events


# ---------------------------------------------------------------------------------------------
# OpenAPI and the docs page


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": field.get("description", ""),
            "schema": {k: v for k, v in field.items() if k not in ("description", "title")},
        }
        for name, field in schema.get("properties", {}).items()
    ]


_PATH_PARAMS = {
    "ref": "The message's id, identity or Message-ID",
    "program": "The program's id",
}


def openapi_paths(error: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Return the OpenAPI paths of the read API and the message actions."""

    def op(
        summary: str,
        description: str,
        query: type[BaseModel] | None,
        ok: dict[str, Any],
        scope: str = "read",
        method: str = "get",
        status: str = "200",
        path_params: Sequence[str] = (),
    ) -> dict[str, Any]:
        params = [
            {"name": p, "in": "path", "required": True, "description": _PATH_PARAMS[p],
             "schema": {"type": "string"}}
            for p in path_params
        ] + (_parameters(query) if query is not None else [])  # fmt: skip
        responses = {
            status: ok,
            "401": error("No or unknown API token"),
            "403": error(f"The token lacks the `{scope}` scope"),
            "404": error("No such message, person or program"),
            "422": error("A malformed parameter or cursor; `errors` names each"),
        }
        if method == "post":
            responses["409"] = error("The message is not in a state this action takes")
        body = {
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": ActionBody.model_json_schema()}},
            }
        }
        return {
            method: {
                "operationId": summary.lower().replace(" ", "_").replace("'", ""),
                "summary": summary,
                "description": f"{description} Scope: `{scope}`.",
                "parameters": params,
                "responses": responses,
            }
            | (body if method == "post" else {})
        }

    def listing(what: str) -> dict[str, Any]:
        return {
            "description": f"A page of {what}; `next` is the cursor of the next page (null at "
            'the end), also given as a `Link: rel="next"` header',
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": {"type": "object"}},
                            "next": {"type": ["string", "null"]},
                        },
                    }
                }
            },
        }

    obj = {"content": {"application/json": {"schema": {"type": "object"}}}}
    paths = {
        f"{PREFIX}/people": op(
            "List people", "Suppliers, employees and third parties, by id.",
            PeopleQuery, listing("people"),
        ),
        f"{PREFIX}/obligations": op(
            "List obligations", "What each person owes each occurrence of a program.",
            ObligationQuery, listing("obligations"),
        ),
        f"{PREFIX}/messages": op(
            "List messages", "Outgoing messages (filters: program, person, state, kind = the "
            "message's job, due range). A cancelled one says why (`cancelled_why`) and whether "
            "the planner withdrew it (`withdrawn`: a forecast the facts no longer call for, "
            "never sent) rather than an operator.", MessageQuery, listing("messages"),
        ),
        f"{PREFIX}/messages/{{ref}}": op(
            "Show a message", "One message: its state, attempts, the server's reply, the "
            "operators' actions, its resends and where its bytes are.", None,
            {"description": "The message"} | obj, path_params=["ref"],
        ),
        f"{PREFIX}/messages/{{ref}}/raw": op(
            "Get a message's bytes", "The message exactly as sent (kept by the delivery job).",
            None, {"description": "The bytes as sent",
                   "content": {"message/rfc822": {"schema": {"type": "string"}}}},
            path_params=["ref"],
        ),
        f"{PREFIX}/events": op(
            "List events", "The event log: recorded facts and operators' actions, with who "
            "and when.", EventQuery, listing("events"),
        ),
        f"{PREFIX}/programs": op(
            "List programs", "The programs the daemon runs.", None, listing("programs"),
        ),
        f"{PREFIX}/programs/{{program}}/calendar": op(
            "Get a program's calendar", "The program's dated events (extensions applied), "
            "local days from..to.", CalendarQuery, {"description": "The events"} | obj,
            path_params=["program"],
        ),
    }  # fmt: skip
    for name, what in (
        ("retry", "Send a failed message again (pending now, attempts from 0)."),
        ("cancel", "Cancel a pending message."),
        ("resend", "Send a sent message again: a new message with a new Message-ID, linked."),
    ):
        paths[f"{PREFIX}/messages/{{ref}}/{name}"] = op(
            f"{name.capitalize()} a message", f"{what} Logged with the token's name.", None,
            {"description": "The message (for resend, the new one)"} | obj, scope="messages",
            method="post", status="201" if name == "resend" else "200", path_params=["ref"],
        )  # fmt: skip
    return paths


def docs_page(schema: dict[str, Any]) -> str:
    """Return the API's documentation page, rendered from its OpenAPI document (no script)."""
    e = html.escape
    info = schema["info"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(info['title'])} API</title>",
        "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:0 .2em}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:"
        "top}h3{margin-top:2rem}.m{font-weight:bold;text-transform:uppercase}</style></head><body>",
        f"<h1>{e(info['title'])} API v{e(str(info['version']))}</h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        f"<p>Authenticate with <code>Authorization: Bearer TOKEN</code>. The machine-readable "
        f"document: <a href='{PREFIX}/openapi.json'>{PREFIX}/openapi.json</a>.</p>",
        "<h2>Contents</h2><ul>",
    ]
    operations = [
        (path, method, spec)
        for path, methods in schema["paths"].items()
        for method, spec in methods.items()
    ]
    for path, method, spec in operations:
        anchor = e(spec.get("operationId", f"{method}-{path}"))
        parts.append(
            f"<li><a href='#{anchor}'><span class=m>{e(method)}</span> <code>{e(path)}</code>"
            f"</a>: {e(spec.get('summary', ''))}</li>"
        )
    parts.append("</ul>")
    for path, method, spec in operations:
        anchor = e(spec.get("operationId", f"{method}-{path}"))
        parts.append(
            f"<h3 id='{anchor}'><span class=m>{e(method)}</span> <code>{e(path)}</code></h3>"
            f"<p><b>{e(spec.get('summary', ''))}</b>. {e(spec.get('description', ''))}</p>"
        )
        if spec.get("parameters"):
            parts.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>")
            for p in spec["parameters"]:
                kind = json.dumps(p.get("schema", {}), sort_keys=True)
                needed = " (required)" if p.get("required") else ""
                parts.append(
                    f"<tr><td><code>{e(p['name'])}</code>{needed}"
                    f"</td><td>{e(p['in'])}</td><td><code>{e(kind)}</code></td>"
                    f"<td>{e(p.get('description', ''))}</td></tr>"
                )
            parts.append("</table>")
        body = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
        if body:
            ref = body.get("schema", {}).get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            shown = schema["components"]["schemas"].get(name, body.get("schema"))
            parts.append(f"<p>Body (JSON):</p><pre>{e(json.dumps(shown, indent=2))}</pre>")
        parts.append("<table><tr><th>status</th><th>meaning</th></tr>")
        for status, response in spec.get("responses", {}).items():
            parts.append(
                f"<tr><td>{e(status)}</td><td>{e(response.get('description', ''))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
