"""Feed serving and feed rendering, each against a baseline, reported as ratios.

    .venv/bin/python -m bench.bench_feeds [--requests 4000] [--connections 8] [--events 10000]

(1) HTTP: one employee's personal feed (the demo data set, an elected participant: 33 events,
    15 kB) fetched through its secret URL, against the same bytes with the same headers served
    by a static route of the same app in the same run: the difference is the token lookup, the
    cache's stamp check (one short database read in a worker thread) and the counters. Measured
    for full answers (200) and for revalidations (If-None-Match, 304). The app runs on uvicorn in
    this process; the load comes from a separate process (raw keep-alive HTTP/1.1 over
    ``--connections`` sockets) so that client and server do not share a GIL. Targets: 0.5 of the
    static rate for 200s, 0.8 for 304s.
(2) Rendering: ``calendars.ical.render_feed`` over ``--events`` events (a mix of all-day
    deadlines and timed events in two zones) against building the same VEVENTs with
    ``icalendar`` alone (``Calendar.add_missing_timezones`` for the zones) and serialising them.

A benchmark measures; it does not pass or fail. Exits 1 only when an answer is wrong (an
unexpected status), never on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from calendars.events import Audience, Event, EventKind
from calendars.ical import FeedItem, FeedMeta, default_description, render_feed
from config.loader import load_programs
from config.settings import Settings
from jobs.imports import DEMO_FILES, DEMO_SCENARIO, demo_dir, import_csv, load_scenario
from jobs.storage import tokens
from jobs.storage.db import begin_write, upgrade
from scheduler.daemon.service import Service
from scheduler.web import http

NOW = datetime(2003, 3, 1, 18, 0, tzinfo=UTC)
FEED = "person:employee:E1005"
TARGET_200, TARGET_304 = 0.5, 0.8
ROOT = Path(__file__).resolve().parents[1]


# (1) HTTP ----------------------------------------------------------------------------------


def demo_service(directory: Path) -> tuple[Service, str]:
    """Return a service over a fresh SQLite file holding the demo data, and a feed token."""
    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    settings = Settings(database_url=url, maildir=directory / "maildir")
    programs = load_programs(None)
    service = Service(settings, programs)
    with service.factory() as session:
        for kind, name in DEMO_FILES:
            import_csv(session, kind, demo_dir() / name, now=NOW, actor="bench")
    with service.factory() as session:
        load_scenario(
            session,
            demo_dir() / DEMO_SCENARIO,
            programs={p.id: p for p in programs},
            now=NOW,
            actor="bench",
        )
    with begin_write(service.factory) as session:
        token = tokens.issue(session, FEED, NOW)
    return service, token


class Server:
    """The app on uvicorn, on an event loop in a thread of this process."""

    def __init__(self, app: object) -> None:
        self.sock = http.listen("127.0.0.1", 0)
        self.port = int(self.sock.getsockname()[1])
        self._app = app
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await http.serve(self._app, self.sock, self._stop)

        asyncio.run(main())

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def load(port: int, path: str, etag: str | None, requests: int, connections: int) -> float:
    """Run the load generator in a separate process; return requests per second."""
    command = [sys.executable, "-m", "bench.bench_feeds", "--load", str(port), path]
    command += ["--requests", str(requests), "--connections", str(connections)]
    if etag:
        command += ["--etag", etag]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"load generator failed:\n{result.stdout}{result.stderr}")
    return float(result.stdout.strip())


def bench_http(requests: int, connections: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        service, token = demo_service(Path(directory))
        app = http.create_app(service, clock=lambda: NOW)
        state: http.State = app.state.tickler
        feed_path = f"/feeds/{token}.ics"
        rendered = state.feeds.render(FEED, NOW)

        async def static(request: Request) -> Response:
            return http.conditional(request, rendered, private=True)

        app.router.routes.append(Route("/static.ics", static, methods=["GET"]))
        server = Server(app)
        try:
            # Warm up both paths (and the feed cache) before measuring.
            for path in (feed_path, "/static.ics"):
                load(server.port, path, None, 200, connections)
            rates: dict[str, list[float]] = {
                k: [] for k in ("feed", "static", "feed304", "static304")
            }
            for _ in range(rounds):
                for name, path, etag in (
                    ("static", "/static.ics", None),
                    ("feed", feed_path, None),
                    ("static304", "/static.ics", rendered.etag),
                    ("feed304", feed_path, rendered.etag),
                ):
                    rates[name].append(load(server.port, path, etag, requests, connections))
        finally:
            server.close()
            service.engine.dispose()
    result = {name: statistics.median(values) for name, values in rates.items()}
    result["bytes"] = float(len(rendered.body))
    result["events"] = float(rendered.body.count(b"BEGIN:VEVENT"))
    return result


async def _generate(
    port: int, path: str, etag: str | None, requests: int, connections: int
) -> float:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/calendar\r\n"
    if etag:
        head += f"If-None-Match: {etag}\r\n"
    request = (head + "\r\n").encode()
    expected = b"304" if etag else b"200"
    per_connection = [
        requests // connections + (i < requests % connections) for i in range(connections)
    ]

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                if header[9:12] != expected:
                    raise SystemExit(f"{path}: {header[:12]!r}, expected {expected!r}")
                length = 0
                for line in header.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length and not etag:
                    await reader.readexactly(length)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in per_connection))
    return requests / (time.perf_counter() - start)


# (2) Rendering -------------------------------------------------------------------------------

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
STAMP = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)


def sample_events(count: int) -> list[Event]:
    """Return ``count`` events: two thirds all-day deadlines, one third timed, in two zones."""
    events = []
    for n in range(count):
        day = date(2026, 1, 1) + timedelta(days=n % 730)
        if n % 3:
            events.append(
                Event(
                    program="bench",
                    key=f"deadline/{n}",
                    kind=EventKind.FCPA_ACK_DUE,
                    title=f"Acknowledgment due: person {n}",
                    start=day,
                    end=day + timedelta(days=1),
                    timezone="America/Los_Angeles",
                    audiences=frozenset({Audience.REPRESENTATIVES}),
                    description=f"Sign the acknowledgment of the FCPA policy by {day}.",
                )
            )
        else:
            zone = LA if n % 2 else NY
            start = datetime.combine(day, datetime.min.time().replace(hour=9), tzinfo=zone)
            events.append(
                Event(
                    program="bench",
                    key=f"meeting/{n}",
                    kind=EventKind.PRESENTATION,
                    title=f"Presentation {n}",
                    start=start,
                    end=start + timedelta(hours=1),
                    timezone=zone.key,
                    audiences=frozenset({Audience.EMPLOYEES}),
                    location="E-Net conference room, Irvine",
                )
            )
    return events


def icalendar_alone(events: Sequence[Event]) -> bytes:
    """Serialise the same VEVENTs as ``render_feed`` writes, with icalendar and nothing else."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//Tickler//bench//EN")
    cal.add("VERSION", "2.0")
    cal.add("METHOD", "PUBLISH")
    for event in events:
        vevent = icalendar.Event()
        vevent.add("UID", event.uid)
        vevent.add("DTSTAMP", STAMP)
        vevent.add("LAST-MODIFIED", STAMP)
        vevent.add("SEQUENCE", 0)
        vevent.add("DTSTART", event.start)
        vevent.add("DTEND", event.end)
        vevent.add("SUMMARY", event.title)
        vevent.add("DESCRIPTION", event.description or default_description(event))
        if event.location:
            vevent.add("LOCATION", event.location)
        vevent.add("CATEGORIES", [event.program, str(event.kind)])
        vevent.add("STATUS", "CONFIRMED")
        vevent.add("TRANSP", "TRANSPARENT" if event.all_day else "OPAQUE")
        cal.add_component(vevent)
    cal.add_missing_timezones()
    data: bytes = cal.to_ical()
    return data


def bench_render(count: int, repeat: int) -> dict[str, float]:
    events = sample_events(count)
    items = [FeedItem(event=e, last_modified=STAMP) for e in events]
    meta = FeedMeta(name="Benchmark", timezone="America/Los_Angeles")

    def best(run: Callable[[], bytes]) -> tuple[float, int]:
        times, size = [], 0
        for _ in range(repeat):
            start = time.perf_counter()
            size = len(run())
            times.append(time.perf_counter() - start)
        return min(times), size

    ours, ours_size = best(lambda: render_feed(items, meta))
    theirs, theirs_size = best(lambda: icalendar_alone(events))
    return {
        "ours": ours,
        "icalendar": theirs,
        "ours_bytes": ours_size,
        "icalendar_bytes": theirs_size,
    }


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_feeds", description=__doc__)
    parser.add_argument("--requests", type=int, default=4000, help="requests per measurement")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent keep-alive connections"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements per path (median)")
    parser.add_argument("--events", type=int, default=10_000, help="events in the rendered feed")
    parser.add_argument("--load", nargs=2, metavar=("PORT", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--etag", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        port, path = int(args.load[0]), args.load[1]
        print(asyncio.run(_generate(port, path, args.etag, args.requests, args.connections)))
        return 0

    r = bench_render(args.events, repeat=3)
    print(
        f"render {args.events} events: render_feed {r['ours']:.3f} s ({r['ours_bytes']} bytes), "
        f"icalendar alone {r['icalendar']:.3f} s ({r['icalendar_bytes']} bytes); "
        f"ratio icalendar/render_feed = {r['icalendar'] / r['ours']:.2f}"
    )
    h = bench_http(args.requests, args.connections, args.rounds)
    print(
        f"personal feed over HTTP ({int(h['events'])} events, {int(h['bytes'])} bytes, "
        f"{args.connections} connections, median of {args.rounds}):"
    )
    for label, feed, static, target in (
        ("200", h["feed"], h["static"], TARGET_200),
        ("304", h["feed304"], h["static304"], TARGET_304),
    ):
        print(
            f"  {label}: feed {feed:,.0f} req/s, static {static:,.0f} req/s, "
            f"ratio {feed / static:.2f} (target >= {target})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
