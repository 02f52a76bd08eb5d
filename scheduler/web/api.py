"""The JSON API: record what happened, with the same meaning as ``tickler record``.

One endpoint per kind of fact (``POST /api/v1/elections`` …), a pydantic model per body, and
``jobs.record.record`` behind them all, so the API and the CLI accept and refuse exactly
the same facts. Callers authenticate with a bearer token from the settings (``NAME:SECRET``);
the name goes into the event log as ``api:NAME``. Status codes: 401 no or unknown token,
403 the token may not record this kind, 404 unknown program or person, 409 refused by the
rules (an election after the cutoff), 413 body too large, 422 malformed body, each as RFC 9457
problem details (``scheduler.web.problems``: ``detail`` says what is wrong, ``errors`` names each
invalid field). The OpenAPI schema is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NaiveDatetime,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from config.emails import Email
from config.facts import BACKFILL, MESSAGES, READ, FactKind
from config.settings import Settings, api_token_parts
from jobs.record import CLOCK_SKEW, RecordError, record
from jobs.storage.db import begin_write
from scheduler.daemon.service import Service
from scheduler.web import reads
from scheduler.web.metrics import HttpMetrics
from scheduler.web.problems import PROBLEM_JSON, FieldError, Problem, pointer, problem

log = logging.getLogger("tickler")

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # one line of text: no control characters

Line = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_PRINTABLE)]
Text = Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
ProgramId = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Program id, as in the program file",
        examples=["option-exchange-2003"],
    ),
]
PersonKey = Annotated[
    str,
    Field(
        min_length=3,
        max_length=160,
        pattern=r"^[a-z_]+:[^\x00-\x1f\x7f]+$",
        description="KIND:ID with KIND supplier, employee or third_party",
        examples=["employee:E1001"],
    ),
]
Role = Literal[
    "director", "officer", "employee", "agent", "distributor", "consultant", "jv_partner"
]


class Fact(BaseModel):
    """Fields every fact has; subclasses add their own and say how they are recorded."""

    # Strict: JSON gives dates as ISO strings and flags as true/false, never 0 or "yes".
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    kind: ClassVar[FactKind]  # its noun names the endpoint, its value the log entry

    at: AwareDatetime | None = Field(
        default=None,
        description="When it happened (RFC 3339 with offset); default: now. More than 5 "
        "minutes before the server's time is a backfill: the token needs the backfill scope, "
        "and rules with a deadline judge this time (a backfilled election must still be dated "
        "before the cutoff); otherwise they judge the server's time",
    )

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        """Return (program, person, payload) as ``jobs.record.record`` takes them."""
        raise NotImplementedError


class CmrtResponse(Fact):
    """A supplier's CMRT came back (complete, or incomplete with what is wrong)."""

    kind: ClassVar[FactKind] = FactKind.CMRT_RESPONSE
    program: ProgramId
    person: PersonKey
    complete: bool = True
    issues: Text | None = Field(default=None, description="What is wrong, if incomplete")
    file: Line | None = Field(default=None, description="The returned file's name")

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        payload: dict[str, Any] = {"complete": self.complete}
        payload.update({k: v for k, v in (("issues", self.issues), ("file", self.file)) if v})
        return self.program, self.person, payload


class Election(Fact):
    """An eligible employee elects to exchange their options (before the cutoff)."""

    kind: ClassVar[FactKind] = FactKind.ELECTION
    program: ProgramId
    person: PersonKey

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        return self.program, self.person, {}


class Withdrawal(Election):
    """An employee withdraws their election (before the cutoff)."""

    kind: ClassVar[FactKind] = FactKind.WITHDRAWAL


class Acknowledgment(Fact):
    """A Representative or Third Party signed the FCPA policy acknowledgment."""

    kind: ClassVar[FactKind] = FactKind.FCPA_ACK
    program: ProgramId
    person: PersonKey
    policy_version: Line | None = Field(default=None, description="Default: the current one")

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        payload = {"policy_version": self.policy_version} if self.policy_version else {}
        return self.program, self.person, payload


class Termination(Fact):
    """A relationship ended on ``date`` (the person is not employed on that day)."""

    kind: ClassVar[FactKind] = FactKind.TERMINATION
    person: PersonKey
    date: date

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        return None, self.person, {"date": self.date.isoformat()}


class Hire(Fact):
    """A new employee or third party: they get the FCPA policy to acknowledge."""

    kind: ClassVar[FactKind] = FactKind.HIRE
    person_kind: Literal["employee", "third_party"] = Field(default="employee", alias="kind")
    external_id: Annotated[Line, StringConstraints(max_length=128)]
    name: Line
    email: Email
    start_date: date
    role: Role | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    manager_email: Email | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=False)

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        payload = self.model_dump(mode="json", by_alias=True, exclude={"at"}, exclude_none=True)
        return None, None, payload


class Extension(Fact):
    """The offer is extended to a new cutoff, local time in the program's zone."""

    kind: ClassVar[FactKind] = FactKind.OFFER_EXTENSION
    program: ProgramId
    cutoff: NaiveDatetime = Field(
        description="The new cutoff, local date-time without offset", examples=["2003-02-03T21:00"]
    )

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        return self.program, None, {"cutoff": self.cutoff.isoformat()}


class Retraction(Fact):
    """The offer's latest extension is undone, while nothing it caused has been sent."""

    kind: ClassVar[FactKind] = FactKind.EXTENSION_RETRACTION
    program: ProgramId
    extension: int | None = Field(
        default=None, gt=0, description="Event-log id of the extension; default: the latest"
    )

    def parts(self) -> tuple[str | None, str | None, dict[str, Any]]:
        return self.program, None, {} if self.extension is None else {"extension": self.extension}


class Recorded(BaseModel):
    id: int = Field(description="The event-log id of the recorded fact")
    kind: str
    actor: str
    at: datetime = Field(description="When it happened, as the fact says")
    received_at: datetime = Field(description="The server's time when it was recorded")
    backfill: bool = Field(description="Recorded as of an earlier time (the backfill scope)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    path: str
    model: type[Fact]

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


# One endpoint per kind of fact, named by its noun: /api/v1/responses, /api/v1/hires...
MODELS: tuple[type[Fact], ...] = (
    CmrtResponse,
    Election,
    Withdrawal,
    Acknowledgment,
    Termination,
    Hire,
    Extension,
    Retraction,
)
ENDPOINTS = tuple(Endpoint(path=f"{PREFIX}/{m.kind.noun}s", model=m) for m in MODELS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    name: str
    digest: bytes
    kinds: frozenset[FactKind] | None  # None: every kind
    backfill: bool = False  # may record facts as of an earlier time
    # The capabilities that name no kind of fact: "read", "messages" (``scheduler.web.reads``).
    scopes: frozenset[str] = frozenset()


def callers(settings: Settings) -> list[Caller]:
    """Return the configured API callers, their secrets kept only as digests."""
    out = []
    for value in settings.api_tokens:
        name, secret = api_token_parts(value.get_secret_value())
        kinds = settings.api_scopes.get(name)
        out.append(
            Caller(
                name=name,
                digest=hashlib.sha256(secret.encode()).digest(),
                kinds=(
                    frozenset(k for k in kinds if isinstance(k, FactKind))
                    if kinds is not None
                    else None
                ),
                backfill=kinds is not None and BACKFILL in kinds,
                scopes=frozenset(k for k in kinds or () if k in (READ, MESSAGES)),
            )
        )
    return out


def authenticate(header: str | None, known: Sequence[Caller]) -> Caller | None:
    """Return the caller whose token ``header`` ("Bearer SECRET") carries, in constant time."""
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    digest = hashlib.sha256(secret.strip().encode()).digest()
    found = None
    for caller in known:  # no early exit: every token is compared
        if hmac.compare_digest(caller.digest, digest):
            found = caller
    return found


def refusal(status: int, detail: str, errors: Sequence[FieldError] | None = None) -> Response:
    """Return the API's problem+json answer (a 401 says how to authenticate)."""
    headers = {"WWW-Authenticate": 'Bearer realm="tickler"'} if status == 401 else None
    return problem(status, detail, errors=errors, headers=headers)


Clock = Callable[[], datetime]


def routes(service: Service, clock: Clock, counters: HttpMetrics) -> list[Route]:
    """Return the API's routes (and its OpenAPI schema's) for ``service``."""
    known = callers(service.settings)
    programs = {p.id: p for p in service.programs}

    def handler(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            response = await _handle(request, endpoint)
            counters.api_request(endpoint.name, response.status_code)
            return response

        return handle

    async def _handle(request: Request, endpoint: Endpoint) -> Response:
        caller = authenticate(request.headers.get("authorization"), known)
        if caller is None:
            return refusal(401, "a valid API token is required: Authorization: Bearer TOKEN")
        model = endpoint.model
        if caller.kinds is not None and model.kind not in caller.kinds:
            noun = model.kind.noun
            article = "an" if noun[0] in "aeiou" else "a"
            return refusal(403, f"token {caller.name!r} may not record {article} {noun}")
        body = await _read(request)
        if body is None:
            return refusal(413, f"the body is larger than {MAX_BODY} bytes")
        if not body.strip():
            return refusal(422, f"the body is empty: send a JSON object ({model.__name__})")
        try:
            fact = model.model_validate_json(body)
        except ValidationError as exc:
            errors = _errors(exc)
            return refusal(422, "; ".join(f"{e.field}: {e.detail}" for e in errors), errors)
        now = clock()
        at = fact.at or now
        backfill = at < now - CLOCK_SKEW
        if backfill and not caller.backfill:
            # The caller's clock never decides a deadline: an earlier time is a capability.
            return refusal(
                403,
                f"token {caller.name!r} may not backfill: at {at.isoformat()} is more than "
                f"{CLOCK_SKEW} before the server's time {now.isoformat()}, and recording a "
                f"fact as of an earlier time needs the {BACKFILL!r} scope",
            )
        program, person, payload = fact.parts()
        actor = f"api:{caller.name}"

        def work() -> int:
            with begin_write(service.factory) as session:
                return record(
                    session,
                    kind=model.kind,
                    program=program,
                    person=person,
                    at=at,
                    actor=actor,
                    source="api",
                    payload=payload,
                    programs=programs,
                    now=now,
                    may_backfill=caller.backfill,
                )

        try:
            event_id = await asyncio.to_thread(work)
        except RecordError as exc:
            return refusal(exc.status, exc.message)
        service.recorded()
        log.info(
            "recorded",
            extra={
                "action": "recorded",
                "kind": model.kind,
                "event_id": event_id,
                "actor": actor,
                "backfill": backfill,
            },
        )
        recorded = Recorded(
            id=event_id, kind=model.kind, actor=actor, at=at, received_at=now, backfill=backfill
        )
        return JSONResponse(recorded.model_dump(mode="json"), status_code=201)

    schema = openapi()
    page = reads.docs_page(schema)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(schema)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    async def guard(request: Request, scope: str, handle: reads.Handler) -> Response:
        response = await _guarded(request, scope, handle)
        counters.api_request(handle.__name__, response.status_code)
        return response

    async def _guarded(request: Request, scope: str, handle: reads.Handler) -> Response:
        caller = authenticate(request.headers.get("authorization"), known)
        if caller is None:
            return refusal(401, "a valid API token is required: Authorization: Bearer TOKEN")
        if scope not in caller.scopes:
            return refusal(403, f"token {caller.name!r} lacks the {scope!r} scope")
        request.state.caller = caller.name
        try:
            return await handle(request)
        except reads.Refused as exc:
            return refusal(exc.status, exc.detail, exc.errors or None)

    return [
        *(Route(e.path, handler(e), methods=["POST"]) for e in ENDPOINTS),
        Route(f"{PREFIX}/openapi.json", openapi_json, methods=["GET"]),
        Route(f"{PREFIX}/docs", docs, methods=["GET"]),
        *reads.routes(service, clock, guard),
    ]


async def _read(request: Request) -> bytes | None:
    """Return the body, or None once it is longer than ``MAX_BODY``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            field=".".join(str(part) for part in e["loc"]) or "body",
            pointer=pointer(e["loc"]),
            # A validator's own ValueError reads as in the CLI and the imports.
            detail=e["msg"].removeprefix("Value error, "),
        )
        for e in exc.errors(include_url=False, include_input=False)
    ]


def openapi() -> dict[str, Any]:
    """Return the OpenAPI 3.1 description of the API."""
    models: list[type[BaseModel]] = [e.model for e in ENDPOINTS] + [Recorded, Problem]
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: Mapping[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": ref(Problem)}},
        }

    paths = {}
    for endpoint in ENDPOINTS:
        model = endpoint.model
        paths[endpoint.path] = {
            "post": {
                "operationId": f"record_{endpoint.name}",
                "summary": f"Record a {model.kind.noun}",
                "description": (model.__doc__ or "").strip(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(model)}},
                },
                "responses": {
                    "201": {
                        "description": "Recorded in the event log",
                        "content": {"application/json": {"schema": ref(Recorded)}},
                    },
                    "401": error("No or unknown API token"),
                    "403": error("The token may not record this kind, or backfill (an earlier at)"),
                    "404": error("Unknown program or person (or path)"),
                    "409": error("Refused by the program's rules (e.g. after the cutoff)"),
                    "413": error("Body too large"),
                    "422": error("Malformed body; `errors` names each field"),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tickler",
            "version": "1",
            "description": "Record what happened; the scheduler reacts within seconds. Every "
            "error is RFC 9457 problem details (application/problem+json, the `Problem` "
            "schema), including 404 for a path that does not exist and 405 (with `Allow`) for "
            "a method a path does not take.",
        },
        "paths": paths | reads.openapi_paths(error),
        "components": {
            "schemas": dict(schemas),
            "responses": {
                "NotFound": error("No such path"),
                "MethodNotAllowed": error("The path does not take this method")
                | {"headers": {"Allow": {"schema": {"type": "string"}}}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
