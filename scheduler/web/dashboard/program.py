"""``/dashboard/programs`` and ``/dashboard/programs/{id}``: everyone a program asks.

The list is keyset-paginated (``jobs.storage.dashboard.page``): the "next page" link carries
the sort value and id of the last row shown. Every query parameter is checked: a bad one is
a 400 page naming it, and nothing is queried.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.programs import Program
from jobs.digest import readable
from jobs.storage import dashboard as stored
from scheduler.web.auth import Role, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.overview import when
from scheduler.web.dashboard.pages import message, render

MAX_SEARCH = 100


class BadQuery(ValueError):
    """A query parameter of the program page that cannot be used (the message says which)."""


def parse_query(program: str, params: dict[str, str]) -> stored.Query:
    """Return the page query of ``params``; raise BadQuery naming the parameter at fault."""
    wanted = params.get("sort") or "name"
    sort = next((s for s in stored.SORTS if s == wanted), None)
    if sort is None:
        raise BadQuery(f"sort={wanted!r}: sort by one of {', '.join(stored.SORTS)}")
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise BadQuery(f"order={order!r}: asc or desc")
    search = (params.get("q") or "").strip()
    if len(search) > MAX_SEARCH:
        raise BadQuery(f"q: a search has at most {MAX_SEARCH} characters")
    status = (params.get("status") or "").strip()
    if len(status) > 32:
        raise BadQuery("status: no state is that long")
    after = None
    if params.get("after_id"):
        raw_id, value = params["after_id"], params.get("after", "")
        if not raw_id.isdigit() or len(raw_id) > 18:
            raise BadQuery(f"after_id={raw_id!r}: a row id (digits)")
        if sort == "due":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise BadQuery(
                    f"after={value!r}: an ISO 8601 instant when sorting by due"
                ) from None
            if parsed.tzinfo is None:
                raise BadQuery(f"after={value!r}: the instant needs its UTC offset")
        if len(value) > 300:
            raise BadQuery("after: too long")
        after = (value, int(raw_id))
    return stored.Query(
        program=program,
        status=status or None,
        search=search or None,
        sort=sort,
        descending=order == "desc",
        after=after,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One row of the program page, as shown."""

    row: stored.Row
    due: str
    last: str
    next: str


def lines(rows: list[stored.Row], program: Program, now: datetime) -> list[Line]:
    """Say each row's instants in the program's zone; a past due date of an open obligation
    is what ``status`` shows as overdue."""
    zone = program.zone
    return [
        Line(
            row=r,
            due=when(r.due_at, zone),
            last=f"{readable(r.last_job or '')} {when(r.last_sent, zone)}"
            if r.last_sent
            else "none",
            next=f"{readable(r.next_job or '')} {when(r.next_due, zone)}" if r.next_due else "none",
        )
        for r in rows
    ]


def link(query: stored.Query, **changes: str | None) -> str:
    """Return the page's URL with ``changes`` (None drops a parameter), keeping the rest."""
    params: dict[str, str | None] = {
        "status": query.status,
        "q": query.search,
        "sort": query.sort if query.sort != "name" else None,
        "order": "desc" if query.descending else None,
    }
    params.update(changes)
    kept = {k: v for k, v in params.items() if v}
    path = f"/dashboard/programs/{query.program}"
    return f"{path}?{urlencode(kept)}" if kept else path


async def programs(request: Request) -> Response:
    await require(request, Role.VIEWER)
    listed = dashboard_of(request).by_name
    return render(request, "programs.html", active="programs", title="Programs", programs=listed)


async def program_page(request: Request) -> Response:
    await require(request, Role.VIEWER)
    context = dashboard_of(request)
    program = context.programs.get(request.path_params["program"])
    if program is None:
        return message(request, 404, "No such program", "No program has that id.")
    try:
        query = parse_query(program.id, dict(request.query_params))
    except BadQuery as exc:
        return message(request, 400, "That page cannot be shown", str(exc))
    now = context.clock()

    def load() -> tuple[list[stored.Row], tuple[str, int] | None, list[str]]:
        with context.service.factory() as session:
            rows, following = stored.page(session, query)
            return rows, following, stored.states(session, program.id)

    rows, following, states = await asyncio.to_thread(load)
    return render(
        request,
        "program.html",
        active="programs",
        **page_context(program, query, rows, following, states, now),
    )


def page_context(
    program: Program,
    query: stored.Query,
    rows: list[stored.Row],
    following: tuple[str, int] | None,
    states: list[str],
    now: datetime,
) -> dict[str, Any]:
    """Assemble what ``program.html`` shows from one page's rows (no HTTP, no database)."""
    return {
        "title": program.name,
        "program": program,
        "query": query,
        "lines": lines(rows, program, now),
        "states": states,
        "next_link": (
            link(query, after=following[0], after_id=str(following[1])) if following else None
        ),
        "first_link": link(query) if query.after else None,
        "sort_link": lambda sort: link(
            query,
            sort=sort if sort != "name" else None,
            order="desc" if query.sort == sort and not query.descending else None,
        ),
    }


def routes() -> list[Route]:
    return [
        Route("/programs", programs, methods=["GET"]),
        Route("/programs/{program}", program_page, methods=["GET"]),
    ]
