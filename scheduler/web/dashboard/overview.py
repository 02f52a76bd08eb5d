"""``/dashboard/``: every program, with what it is and where it stands."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.web.auth import Role, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import render


async def overview(request: Request) -> Response:
    await require(request, Role.VIEWER)
    programs = sorted(dashboard_of(request).programs.values(), key=lambda p: p.name)
    return render(request, "overview.html", active="overview", title="Overview", programs=programs)


def routes() -> list[Route]:
    return [Route("/", overview, methods=["GET"])]
