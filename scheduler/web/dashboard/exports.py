"""``/dashboard/exports``: download a program's evidence (CSV, XLSX) and survey statistics.

The files are ``tickler export evidence``'s (``jobs.export``): the export runs in a worker
thread and writes into a ``Pipe``, whose chunks the response streams as they come. The pipe
holds at most ``DEPTH`` chunks of ``CHUNK`` bytes: a slow client slows the export instead of
the file piling up in memory, and a client that goes away stops it. XLSX is written by
openpyxl's write-only mode (each sheet to a temporary file, then zipped into the stream with
data descriptors: the zip needs no seeking), so neither format is ever whole in memory.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any, Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from jobs import export
from scheduler.web.auth import Role, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import message, render

CHUNK = 64 * 1024
DEPTH = 8
FILES: dict[str, export.Format | Literal["statistics"]] = {
    "evidence.csv": "csv",
    "evidence.xlsx": "xlsx",
    "statistics.csv": "statistics",
}
_DONE = object()


class Gone(Exception):
    """The client went away: the export stops."""


class Pipe(io.RawIOBase):
    """A write-only, non-seekable stream whose bytes a reader takes in chunks from a queue."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: queue.Queue[Any] = queue.Queue(maxsize=DEPTH)
        self.gone = threading.Event()
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def take(self) -> Any:
        """Return the next chunk, the end, or the error; the end once the reader is gone."""
        while not self.gone.is_set():
            try:
                return self.chunks.get(timeout=0.5)
            except queue.Empty:
                continue
        return _DONE

    def finish(self, error: BaseException | None = None) -> None:
        """Pass on what is left, then the end (or the error that ended the export)."""
        if self._buffer and error is None:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        self._put(error if error is not None else _DONE)

    def _put(self, item: Any) -> None:
        while not self.gone.is_set():
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise Gone


async def stream(produce: Callable[[IO[bytes]], object]) -> AsyncGenerator[bytes, None]:
    """Run ``produce(pipe)`` in a worker thread and yield what it writes, as it writes it."""
    pipe = Pipe()

    def run() -> None:
        try:
            produce(pipe)  # type: ignore[arg-type]  # a RawIOBase is a binary stream
        except Gone:
            return
        except BaseException as exc:
            pipe.finish(exc)
            return
        pipe.finish()

    worker = asyncio.create_task(asyncio.to_thread(run))
    try:
        while True:
            item = await asyncio.to_thread(pipe.take)
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pipe.gone.set()
        await worker


def _day(request: Request, name: str, *, end: bool = False) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}={value[:40]!r} is not a date (YYYY-MM-DD)") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def filename(program: str, name: str, now: datetime) -> str:
    """Return the download's file name: program, what, the day it was taken (UTC)."""
    stem, _, suffix = name.partition(".")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in program)[:64]
    return f"{safe}-{stem}-{now.astimezone(UTC):%Y%m%d}.{suffix}"


async def page(request: Request) -> Response:
    await require(request, Role.VIEWER)
    programs = dashboard_of(request).by_name
    return render(request, "exports.html", active="exports", title="Exports", programs=programs)


async def download(request: Request) -> Response:
    await require(request, Role.VIEWER)
    dashboard = dashboard_of(request)
    program, name = request.path_params["program"], request.path_params["name"]
    if program not in dashboard.programs or name not in FILES:
        return message(request, 404, "No such export", "That program or file does not exist.")
    try:
        due_from, due_to = _day(request, "from"), _day(request, "to", end=True)
    except ValueError as exc:
        return message(request, 400, "Not a date", str(exc))
    if due_from and due_to and due_to <= due_from:
        return message(request, 400, "Empty range", "to is before from: nothing to export.")
    what = FILES[name]
    now = dashboard.clock()
    factory = dashboard.service.factory

    def produce(out: IO[bytes]) -> None:
        with factory() as session:
            export.write(session, program, what, out, due_from=due_from, due_to=due_to)

    media = export.MEDIA_TYPES["xlsx" if what == "xlsx" else "csv"]
    return StreamingResponse(
        stream(produce),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{filename(program, name, now)}"',
        },
    )


def routes() -> list[Route]:
    return [
        Route("/exports", page, methods=["GET"]),
        Route("/exports/{program}/{name}", download, methods=["GET"]),
    ]
