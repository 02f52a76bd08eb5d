"""The compliance team's dashboard: server-rendered pages under ``/dashboard``, behind a login.

How a page plugs in (each page is a module of this package with a ``routes()`` function):

1. **Route.** Write ``async def handler(request: Request) -> Response`` and return
   ``Route("/deliveries", handler, methods=[...])`` from your module's ``routes()``; add the
   module to ``PAGES`` below. Paths are relative to ``/dashboard``. Links in templates are
   plain paths (``/dashboard/deliveries``); a redirect goes to ``auth_of(request).url(path)``
   (TICKLER_PUBLIC_URL, never the Host header).
2. **Role.** The handler's first line: ``user = await require(request, Role.OPERATOR)``
   (``scheduler.web.auth``). No session: it raises a 303 to the sign-in page; a role too low:
   a 403 page. Both are ``Refusal`` exceptions, answered by this package's middleware.
3. **Render.** ``render(request, "deliveries.html", active="deliveries", title=..., **data)``
   (``scheduler.web.dashboard.pages``); the template starts with
   ``{% extends "dashboard/base.html" %}`` and fills ``{% block content %}``. Autoescaped:
   pass data, never markup. No inline script or style (the CSP forbids both): classes from
   ``static/dashboard.css``.
4. **CSRF.** Every POST form holds ``{{ csrf }}`` (the hidden input); the handler reads the
   form (``async with request.form(max_fields=..., max_part_size=...) as form``) and calls
   ``check_csrf(request, form)`` before acting: a missing or foreign value raises a 403.
5. **Context.** ``dashboard_of(request)`` (``.context``) gives the service (its ``factory``
   for sessions, ``programs``, ``settings``) and the clock: read
   ``now = dashboard_of(request).clock()`` once, run storage calls in ``asyncio.to_thread``,
   keep the queries in ``jobs.storage`` and the page assembly in pure functions of (rows, now).

Every response under ``/dashboard`` carries the security headers (``auth.HEADERS``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.daemon.service import Service
from scheduler.web.auth import PREFIX, Auth, Refusal, SecurityHeaders
from scheduler.web.dashboard import (
    deliveries,
    exports,
    login,
    overview,
    person,
    program,
    recording,
    upcoming,
)
from scheduler.web.dashboard.context import Clock, Dashboard

STATIC = Path(__file__).resolve().parents[1] / "static"
#: The modules whose routes make the dashboard.
PAGES = (login, overview, program, person, deliveries, upcoming, exports, recording)


class _Context:
    """Middleware: put the dashboard in the scope; answer a Refusal with its response."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["tickler.dashboard"] = self.dashboard
        scope["tickler.auth"] = self.dashboard.auth
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Refusal as refusal:
            if started:
                raise
            await refusal.response(scope, receive, send)


async def _stylesheet(request: Request) -> Response:
    return Response(
        (STATIC / "dashboard.css").read_bytes(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


def routes(service: Service, clock: Clock) -> list[BaseRoute]:
    """Return the dashboard's routes for ``http.create_app``."""
    dashboard = Dashboard(
        service=service,
        clock=clock,
        auth=Auth.from_service(service, clock),
        programs={p.id: p for p in service.programs},
    )
    inner: list[BaseRoute] = [Route("/static/dashboard.css", _stylesheet, methods=["GET"])]
    for page in PAGES:
        inner.extend(page.routes())
    # redirect_slashes off: Starlette's would be built from the Host header.
    router = Router(inner, redirect_slashes=False)
    bare = dashboard.auth.url(PREFIX + "/")
    return [
        Route(PREFIX, lambda request: RedirectResponse(bare, status_code=308), methods=["GET"]),
        Mount(
            PREFIX,
            app=router,
            middleware=[Middleware(SecurityHeaders), Middleware(_Context, dashboard=dashboard)],
        ),
    ]
