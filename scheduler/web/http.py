"""The HTTP interface: iCal feeds, the JSON API, health and metrics, in the daemon's process.

``tickler run`` serves this app with uvicorn on the daemon's event loop (``serve``). Feeds are
rendered in worker threads and cached in memory until what they were built from changes (see
``scheduler.web.feeds``). The database is asked whether anything changed at most once every
``feed_check_seconds`` (``Changes``); in between, a feed already verified is answered from
memory, so a revoked token or a new fact reaches the feeds within that delay (1 s by default).
Conditional GET: a strong ETag (a hash of the bytes) and Last-Modified (the newest event
change), answered with 304 when the client has them.

Every error is RFC 9457 problem details (``scheduler.web.problems``). Every 404 is the same
response, whether the path does not exist, the token is unknown or was revoked, or a public
feed is not public: a URL reveals nothing about other URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Route

from jobs.storage import UNAVAILABLE, queries, tokens
from jobs.storage.db import ping
from scheduler.daemon.loop import Daemon, utc_now
from scheduler.daemon.service import Service
from scheduler.web import actions, api, dashboard, metrics
from scheduler.web.feeds import FeedError, FeedSource, Rendered, feed_day
from scheduler.web.problems import problem

log = logging.getLogger("tickler")

CALENDAR = "text/calendar; charset=utf-8"
READY_TIMEOUT = 2.0
# /readyz names at most this many skipped programs and people (tickler status lists them all).
READY_SKIPS_SHOWN = 20
TOKEN_FEED = "/feeds/{token}.ics"
# What a 503 asks clients to wait: about as long as a database restart or failover takes.
RETRY_AFTER_SECONDS = 30
Clock = Callable[[], datetime]


@dataclass(slots=True)
class FeedCache:
    """Rendered feeds by name, least recently used first; one render per feed at a time."""

    size: int
    entries: OrderedDict[str, Rendered] = field(default_factory=OrderedDict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def get(self, name: str) -> Rendered | None:
        found = self.entries.get(name)
        if found is not None:
            self.entries.move_to_end(name)
        return found

    def put(self, rendered: Rendered) -> None:
        self.entries[rendered.name] = rendered
        self.entries.move_to_end(rendered.name)
        while len(self.entries) > self.size:
            name, _ = self.entries.popitem(last=False)
            lock = self.locks.get(name)
            if lock is not None and not lock.locked():
                del self.locks[name]

    def peek(self, name: str) -> Rendered | None:
        """Return the cached feed without touching the LRU order (safe from a worker thread)."""
        return self.entries.get(name)

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())


class Changes:
    """Whether anything a feed or a token depends on changed, asked at most every ``interval``.

    Between two checks every feed already verified is served from memory without touching the
    database; that is what makes a revalidation (304) cost about as little as a static file.
    The price is that a change (a new fact, a revoked token) reaches the feeds up to
    ``interval`` seconds later. ``interval=0`` checks on every request.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.generation = 0
        self._seen: tuple[int, ...] | None = None
        self._checked = -float("inf")
        self._lock = asyncio.Lock()

    async def current(self, service: Service) -> int:
        """Return the generation: a number that moves whenever the database changed."""
        if time.monotonic() - self._checked < self.interval:
            return self.generation
        async with self._lock:
            started = time.monotonic()
            if started - self._checked < self.interval:
                return self.generation  # another request checked while this one waited

            def read() -> tuple[int, ...]:
                with service.factory() as session:
                    return queries.database_stamp(session)

            seen = await asyncio.to_thread(read)
            if seen != self._seen or self.interval == 0:
                self._seen = seen
                self.generation += 1
            self._checked = started
            return self.generation


@dataclass(slots=True, kw_only=True)
class State:
    service: Service
    daemon: Daemon | None
    clock: Clock
    feeds: FeedSource
    cache: FeedCache
    counters: metrics.HttpMetrics
    registry: CollectorRegistry
    public: frozenset[str]
    changes: Changes
    public_url: str  # the base of redirects: configuration, never the request's Host header
    metrics_digest: bytes | None = None  # sha256 of the bearer token /metrics asks for
    # Feeds verified against the database, by token hash or public name: (feed, generation).
    verified: dict[str, tuple[str, int]] = field(default_factory=dict)
    generation: int = 0


def create_app(
    service: Service, daemon: Daemon | None = None, *, clock: Clock | None = None
) -> Starlette:
    """Return the ASGI app over ``service``; ``daemon`` (when given) is what /readyz reports on.

    ``clock`` defaults to the daemon's, so that feeds and the API see the time the scheduler sees.
    """
    settings = service.settings
    clock = clock or (daemon.clock if daemon is not None else utc_now)
    registry, counters = metrics.app_registry(
        service.metrics, service.factory, clock, [p.id for p in service.programs]
    )
    state = State(
        service=service,
        daemon=daemon,
        clock=clock,
        feeds=FeedSource(
            service.factory, service.programs, team=service.team, timezone=settings.timezone
        ),
        cache=FeedCache(size=settings.feed_cache_size),
        counters=counters,
        registry=registry,
        public=frozenset(settings.public_feeds),
        changes=Changes(settings.feed_check_seconds),
        public_url=settings.public_url,
        metrics_digest=(
            hashlib.sha256(settings.metrics_token.get_secret_value().encode()).digest()
            if settings.metrics_token is not None
            else None
        ),
    )

    async def token_feed(request: Request) -> Response:
        return await _feed(state, request, token=request.path_params["token"])

    async def public_feed(request: Request) -> Response:
        return await _feed(state, request, public=request.path_params["name"])

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        body = await _readiness(state)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        # With a listener of its own (TICKLER_METRICS_PORT), /metrics is served only there.
        *([] if settings.metrics_port is not None else [_metrics_route()]),
        Route("/feeds/public/{name}.ics", public_feed, methods=["GET"]),
        Route(TOKEN_FEED, token_feed, methods=["GET"]),
        *api.routes(service, state.clock, state.counters),
        *actions.routes(service, state.clock),
        *dashboard.routes(service, state.clock),
    ]
    app = Starlette(routes=routes, exception_handlers=_HANDLERS)
    # Starlette's own trailing-slash redirect is built from the Host header and repeats the
    # path, feed token included; ours (_slash_redirect) is built from TICKLER_PUBLIC_URL.
    app.router.redirect_slashes = False
    app.state.tickler = state
    return app


def metrics_app(app: Starlette) -> Starlette:
    """Return an app serving ``/metrics`` (and ``/healthz``) of ``app``, for its own listener."""
    healthz = Route("/healthz", lambda request: PlainTextResponse("ok\n"), methods=["GET"])
    metrics = Starlette(routes=[_metrics_route(), healthz], exception_handlers=_HANDLERS)
    metrics.router.redirect_slashes = False
    metrics.state.tickler = app.state.tickler
    return metrics


def _metrics_route() -> Route:
    return Route("/metrics", _metrics, methods=["GET"])


async def _metrics(request: Request) -> Response:
    # The Prometheus text format, or OpenMetrics when the scraper asks for it. Built in a
    # worker thread: the database's figures are read while it runs.
    state: State = request.app.state.tickler
    if state.metrics_digest is not None:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(secret.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, state.metrics_digest):
            return problem(
                401,
                "/metrics needs its token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": 'Bearer realm="tickler-metrics"'},
            )
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    body = await asyncio.to_thread(encode, state.registry)
    return Response(body, headers={"Content-Type": content_type})


async def _http_problem(request: Request, exc: Exception) -> Response:
    """Answer Starlette's own errors (no route: 404; a route without this method: 405)."""
    assert isinstance(exc, HTTPException)
    status, headers = exc.status_code, dict(exc.headers or {})
    if status == 404:
        redirect = _slash_redirect(request)
        if redirect is not None:
            return redirect
        # One detail for every 404: a feed's URL must not say why it is not there.
        return problem(404, "nothing here", headers=headers)
    if status == 405:
        allowed = headers.get("Allow", "")
        return problem(
            405, f"{request.method} is not allowed here; allowed: {allowed}", headers=headers
        )
    return problem(status, exc.detail, headers=headers)


def _slash_redirect(request: Request) -> Response | None:
    """Redirect ``/healthz/`` to ``/healthz`` at TICKLER_PUBLIC_URL; None if no route matches.

    A personal feed is never redirected: its token would be repeated in a Location header
    (and in whatever logs it), so ``/feeds/TOKEN.ics/`` gets the same 404 as any other path.
    """
    path = request.scope["path"]
    if path == "/" or not path.endswith("/"):
        return None
    target = {**request.scope, "path": path.rstrip("/")}
    for route in request.app.router.routes:
        match, _ = route.matches(target)
        if match is Match.NONE:
            continue
        if getattr(route, "path", None) == TOKEN_FEED:
            return None
        state: State = request.app.state.tickler
        location = state.public_url.rstrip("/") + quote(target["path"], safe="/:@!$&'()*+,;=")
        if request.scope.get("query_string"):
            location += "?" + request.scope["query_string"].decode("latin-1")
        return RedirectResponse(location, status_code=308)
    return None


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """Answer 503 while the database cannot be used: one log line, no traceback."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    route = request.scope.get("route")
    log.warning(
        "database unavailable",
        extra={
            "action": "http_database_unavailable",
            "method": request.method,
            # The route's pattern, not the path: a personal feed's path is its secret token.
            "route": getattr(route, "path", "?"),
            "error": f"{type(exc).__name__}: {reason[0] if reason else ''}"[:300],
        },
    )
    return problem(
        503,
        "the database is unavailable; try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _server_problem(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback itself (and re-raises after answering); the caller only
    # learns that it was not their fault.
    return problem(500, "an internal error; it is logged on the server")


_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_problem,
    **dict.fromkeys(UNAVAILABLE, _database_unavailable),
    Exception: _server_problem,
}


def _gone() -> HTTPException:
    return HTTPException(status_code=404)


async def _feed(
    state: State, request: Request, *, token: str | None = None, public: str | None = None
) -> Response:
    now = state.clock()
    generation = await state.changes.current(state.service)
    if generation != state.generation:
        state.verified.clear()  # every feed is verified again, once, after a change
        state.generation = generation
    key = f"token:{tokens.token_hash(token)}" if token is not None else f"public:{public}"
    rendered = _remembered(state, key, generation, now)
    if rendered is None:
        name, rendered = await _verify(state, token, public, now)
        if name is None:
            state.counters.feed_request("unknown", 404)
            raise _gone()
        if rendered is None:
            rendered = await _render(state, name, now, token, public)
        state.verified[key] = (name, generation)
    kind = rendered.name.partition(":")[0]
    response = conditional(request, rendered, private=token is not None)
    state.counters.feed_request(kind, response.status_code)
    return response


def _remembered(state: State, key: str, generation: int, now: datetime) -> Rendered | None:
    """Return the cached feed for ``key`` if nothing changed since it was last verified."""
    known = state.verified.get(key)
    if known is None or known[1] != generation:
        return None
    rendered = state.cache.get(known[0])
    if rendered is None or rendered.stamp[-1] != feed_day(now):
        return None
    return rendered


async def _verify(
    state: State, token: str | None, public: str | None, now: datetime
) -> tuple[str | None, Rendered | None]:
    """Resolve the feed in the database; return its name and its cached bytes if still current."""

    def lookup() -> tuple[str | None, Rendered | None]:
        with state.service.factory() as session:
            if token is not None:
                name = tokens.resolve(session, token)
            else:
                name = public if public in state.public else None
            if name is None:
                return None, None
            cached = state.cache.peek(name)
            if cached is not None and cached.stamp == state.feeds.stamp(
                session, cached.scopes, now
            ):
                return name, cached
            return name, None

    return await asyncio.to_thread(lookup)


async def _render(
    state: State, name: str, now: datetime, token: str | None, public: str | None
) -> Rendered:
    kind = name.partition(":")[0]
    async with state.cache.lock(name):
        # Another request may have rendered it while this one waited for the lock.
        _, rendered = await _verify(state, token, public, now)
        if rendered is not None:
            return rendered
        try:
            rendered = await asyncio.to_thread(state.feeds.render, name, now)
        except FeedError:
            # A token whose person has since been deleted: nothing to show.
            state.counters.feed_request(kind, 404)
            raise _gone() from None
        state.cache.put(rendered)
        state.counters.feed_render(kind)
        return rendered


def conditional(request: Request, rendered: Rendered, *, private: bool) -> Response:
    """Answer GET or HEAD for ``rendered``: 304 when the client's copy is current."""
    headers = {
        "ETag": rendered.etag,
        # Revalidate every time: the ETag makes that a 304 of a few bytes.
        "Cache-Control": f"{'private' if private else 'public'}, no-cache",
    }
    if rendered.last_modified is not None:
        headers["Last-Modified"] = format_datetime(
            rendered.last_modified.astimezone(UTC), usegmt=True
        )
    if private:
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Robots-Tag"] = "noindex"
    if _not_modified(request, rendered):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(rendered.body))
        return Response(b"", headers=headers, media_type=CALENDAR)
    return Response(rendered.body, headers=headers, media_type=CALENDAR)


def _not_modified(request: Request, rendered: Rendered) -> bool:
    # RFC 9110 13.2.2: If-None-Match, when present, decides alone (weak comparison).
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or rendered.etag in tags
    since = _http_date(request.headers.get("if-modified-since"))
    if since is None or rendered.last_modified is None:
        return False
    return rendered.last_modified.replace(microsecond=0) <= since


def _http_date(value: str | None) -> datetime | None:
    """Return the instant an HTTP-date names, or None when ``value`` is not a valid one.

    RFC 9110 13.1.3: an If-Modified-Since that is not a valid HTTP-date is ignored (the full
    response is sent). An HTTP-date is always GMT; a year that does not fit (99999, or digits
    too many for an int) makes the parser raise ValueError or OverflowError: ignored too.
    """
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.utcoffset() != timedelta(0):  # naive (-0000) or another zone: not an HTTP-date
        return None
    return when


async def _readiness(state: State) -> dict[str, Any]:
    """Return /readyz's body: ready when the database answers and the scheduler runs.

    Planning is reported beside, not in ``ready``: a program or person left out (their rules
    raise on their data) or a failing plan is "degraded" and named, but the replica still
    serves feeds and the API and delivers what is due, so it stays in rotation.
    """
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, state.service.engine), READY_TIMEOUT)
        database = "ok"
    except Exception as exc:  # any failure means not ready; say which
        database = f"unreachable: {type(exc).__name__}"
    daemon = state.daemon
    if daemon is None or not daemon.running:
        scheduler = "not running"
    elif daemon.stop.is_set():
        scheduler = "shutting down"
    else:
        scheduler = "ok"
    skipped = sorted(state.service.skipped.values(), key=lambda s: (s.program, s.person))
    if daemon is not None and daemon.plan_error is not None:
        planning = f"failing: {daemon.plan_error}"
    elif skipped:
        planning = f"degraded: {len(skipped)} left out of planning"
    else:
        planning = "ok"
    return {
        "ready": database == "ok" and scheduler == "ok",
        "database": database,
        "scheduler": scheduler,
        "planning": planning,
        "skipped": [
            {"program": s.program, "person": s.person or None, "error": s.error}
            for s in skipped[:READY_SKIPS_SHOWN]
        ],
    }


# ------------------------------------------------------------------------------------------
# Serving next to the daemon


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its host: the daemon's handlers stop both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """Bind a listening socket for ``host``:``port`` (port 0: any free port); raise OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    app: Any, sock: socket.socket, stop: asyncio.Event, *, listener: str = "http"
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then finish the requests in flight."""
    # log_config=None: uvicorn's own lines (an unexpected error's traceback among them) go
    # through the process's handler, so they are JSON and redacted like every other line.
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, lifespan="off", timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()[:2]
    log.info(
        "listening",
        extra={"action": "http_listening", "listener": listener, "host": host, "port": port},
    )
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopped.cancel()
        await task
        sock.close()
