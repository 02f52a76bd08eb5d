"""Delivery throughput: the daemon's path against bare aiosmtplib loops, same server, same mail.

    .venv/bin/python -m bench.bench_delivery [--messages 20000] [--connections 4]

(a) pre-built: ``--connections`` plain ``aiosmtplib.SMTP`` clients take turns at one list of
    messages built beforehand, to the byte as the daemon builds them, and send them
    (``sendmail``). Sending only: the most any sender could do over these connections.
(b) build and send: the same loop, but each client builds each message (``mime_bytes`` and
    the envelope, as ``SmtpTransport`` does) just before sending it, which any sender must do.
    Templates are rendered beforehand, as for (a).
(c) build, send and record: loop (b), and each accepted Message-ID committed durably to a
    fresh database of the same kind as (d)'s, in groups: a writer thread commits whatever has
    been accepted since its last commit, and at most ``UNRECORDED`` (the daemon's default)
    accepted messages wait for their commit. The least any exactly-once sender does.
(d) the daemon's path: as many due rows in a fresh SQLite database, put there by
    ``jobs.storage.outbox.enqueue``, delivered by ``Service.deliver`` over
    ``SmtpTransport(connections=...)``: claim, render, build the MIME, send, commit ``sent``.

The SMTP server is ``tests.smtp_sink`` in a separate process. In a thread of this process it
would compete for this process's GIL with the code being measured, and a real relay is
another machine anyway; on a 2-core machine, a process of its own is the closest to that.

Prints the four throughputs and the daemon's ratio to each baseline (target: 0.8 of (c) or
better),
with the CPU time each one took per message: this process (all its threads) and the server.
Exits 1 on errors (a send that failed, a message the server did not get once), never on a
missed target: a benchmark measures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import aiosmtplib
from sqlalchemy import Column, MetaData, String, Table, insert

from calendars.notices import Notice
from config.settings import Settings
from jobs.deliver import DeliveryOptions, compose
from jobs.mail.mime import OutgoingMessage, envelope_recipients, envelope_sender, mime_bytes
from jobs.storage.db import begin_write, make_engine, session_factory, upgrade
from jobs.storage.outbox import counts, enqueue
from scheduler.daemon.service import Service

TARGET = 0.8
RUNS = {
    "prebuilt": "(a) bare aiosmtplib, pre-built messages:",
    "build": "(b) bare aiosmtplib, build then send:",
    "durable": "(c) build, send, commit Message-IDs:",
    "daemon": "(d) daemon (Service.deliver):",
}
UNRECORDED = Settings.model_fields["unrecorded_sends"].default
NOW = datetime(2017, 1, 9, 17, 0, tzinfo=UTC)
SENDER = "Tickler Compliance <compliance@example.com>"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Meter:
    """Wall time and CPU time (this process, all threads; and the server process) of a run."""

    server_pid: int
    seconds: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0

    @contextmanager
    def measure(self) -> Iterator[None]:
        wall, cpu, server = time.perf_counter(), time.process_time(), self._server()
        try:
            yield
        finally:
            self.seconds = time.perf_counter() - wall
            self.cpu = time.process_time() - cpu
            self.server_cpu = self._server() - server

    def _server(self) -> float:
        # /proc/PID/stat fields 14 and 15: user and system time, in clock ticks.
        fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A message ready for SMTP: its bytes, the envelope sender, the envelope recipients.
Prepared = tuple[bytes, str, list[str]]
Item = TypeVar("Item")


def planned(count: int, tag: str) -> list[Notice]:
    """Return ``count`` CMRT requests due at NOW, Message-IDs ``HASH.bench-TAG@tickler``."""
    return [
        Notice(
            program=f"bench-{tag}",
            occurrence="2016",
            person_id=None,
            recipient_key=f"supplier:S{n:06d}",
            recipient=f"s{n:06d}@example.com",
            job="cmrt_request",
            step="request/wave-1",
            template="cmrt_request",
            context={
                "program_name": "Conflict minerals RY2016 (Form SD)",
                "reporting_year": 2016,
                "form_sd_due": "2017-05-31",
                "name": f"Supplier S{n:06d}",
                "wave": "wave-1",
                "response_due": "2017-02-10",
            },
            due=NOW,
            expires=NOW + timedelta(days=140),
        )
        for n in range(count)
    ]


def outgoing(messages: Sequence[Notice]) -> list[OutgoingMessage]:
    """Return each message rendered as the daemon renders it, not yet built."""
    options = DeliveryOptions(sender=SENDER)
    return [compose(m, dict(m.context), options) for m in messages]


def build(email: OutgoingMessage) -> Prepared:
    """Return email ready for SMTP, built as ``SmtpTransport.send`` builds it."""
    return mime_bytes(email, date=NOW), envelope_sender(email), envelope_recipients(email)


def ready(prepared: Prepared) -> Prepared:
    return prepared


@contextmanager
def sink(folder: Path) -> Iterator[tuple[int, Path, int]]:
    """Run ``python -m tests.smtp_sink`` in its own process; yield its port, log and pid."""
    log, out = folder / "sink.log", folder / "sink.out"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink", "--port", "0", "--log", str(log)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while not out.read_text().strip().isdigit():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start: {out.read_text()}")
            time.sleep(0.05)
        yield int(out.read_text().strip()), log, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


async def bare_loop(
    port: int,
    messages: Sequence[Item],
    prepare: Callable[[Item], Prepared],
    connections: int,
    meter: Meter,
) -> int:
    """Prepare and send every message over ``connections`` plain clients; return the errors."""
    queue = iter(messages)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        for message in queue:  # one shared iterator: whoever is free takes the next one
            data, sender, recipients = prepare(message)
            try:
                refused, _ = await client.sendmail(sender, recipients, data)
            except aiosmtplib.SMTPException as exc:
                print(f"baseline: {exc}", file=sys.stderr)
                errors += 1
                continue
            errors += len(refused)
        await client.quit()

    with meter.measure():
        await asyncio.gather(*(worker() for _ in range(connections)))
    return errors


async def durable_loop(
    port: int, url: str, emails: Sequence[OutgoingMessage], connections: int, meter: Meter
) -> int:
    """Loop (b), committing each accepted Message-ID to ``url`` in groups; return the errors
    (a send refused, or an ID missing from the table afterwards)."""
    engine = make_engine(url)
    metadata = MetaData()
    accepted = Table("accepted", metadata, Column("message_id", String, primary_key=True))
    metadata.create_all(engine)
    queue = iter(emails)
    waiting: list[str] = []
    room = asyncio.Semaphore(UNRECORDED)  # accepted messages not yet committed, at most
    ready = asyncio.Event()
    done = False
    errors = 0
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(max_workers=1)

    def commit(ids: list[str]) -> None:
        with engine.begin() as connection:
            connection.execute(insert(accepted), [{"message_id": i} for i in ids])

    async def committer() -> None:
        while not (done and not waiting):
            await ready.wait()
            ready.clear()
            group, waiting[:] = list(waiting), []
            if group:
                await loop.run_in_executor(writer, commit, group)
                for _ in group:
                    room.release()

    async def worker() -> None:
        nonlocal errors
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        for email in queue:
            await room.acquire()
            data, sender, recipients = build(email)
            try:
                refused, _ = await client.sendmail(sender, recipients, data)
            except aiosmtplib.SMTPException as exc:
                print(f"baseline: {exc}", file=sys.stderr)
                errors += 1
                room.release()
                continue
            errors += len(refused)
            waiting.append(email.message_id)
            ready.set()
        await client.quit()

    with meter.measure():
        writing = asyncio.create_task(committer())
        await asyncio.gather(*(worker() for _ in range(connections)))
        done = True
        ready.set()
        await writing
    writer.shutdown()
    with engine.connect() as connection:
        stored = connection.execute(accepted.select()).all()
    engine.dispose()
    return errors + len(emails) - len(stored)


async def daemon_path(
    port: int, folder: Path, messages: list[Notice], connections: int, meter: Meter
) -> int:
    """Enqueue ``messages`` in a fresh SQLite file and deliver them; return the errors."""
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with begin_write(factory) as session:
        enqueue(session, messages, NOW)
    settings = Settings(
        database_url=url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_connections=connections,
        maildir=folder / "maildir",
        mail_from=SENDER,
    )
    service = Service(settings, [], engine=engine)
    with meter.measure():
        report = await service.deliver(NOW)
    await service.close()  # disposes the engine
    engine = make_engine(url)
    with session_factory(engine)() as session:
        states = counts(session)
    engine.dispose()
    errors = report.failed + report.retried + report.skipped + report.lost_lease
    errors += len(messages) - report.sent
    if errors:
        print(f"daemon path: {report} outbox {dict(states)}", file=sys.stderr)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_delivery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", choices=RUNS, help="run one of the three (e.g. under a profiler)")
    args = parser.parse_args(argv)
    n, connections = args.messages, args.connections

    with (
        tempfile.TemporaryDirectory(prefix="tickler-bench-") as tmp,
        sink(Path(tmp)) as (port, log, pid),
    ):
        folder = Path(tmp)
        rates: dict[str, float] = {}
        errors = 0
        for run in RUNS if args.only is None else [args.only]:
            meter = Meter(pid)
            if run == "prebuilt":
                prepared = [build(email) for email in outgoing(planned(n, "pre"))]
                failed = asyncio.run(bare_loop(port, prepared, ready, connections, meter))
            elif run == "build":
                emails = outgoing(planned(n, "build"))
                failed = asyncio.run(bare_loop(port, emails, build, connections, meter))
            elif run == "durable":
                emails = outgoing(planned(n, "durable"))
                url = f"sqlite:///{folder / 'durable.db'}"
                failed = asyncio.run(durable_loop(port, url, emails, connections, meter))
            else:
                messages = planned(n, "daemon")
                failed = asyncio.run(daemon_path(port, folder, messages, connections, meter))
            rates[run], errors = n / meter.seconds, errors + failed
            print(
                f"{RUNS[run]:<40} {n} in {meter.seconds:6.2f} s = {rates[run]:5.0f} msg/s; "
                f"CPU per message: {meter.cpu / n * 1e6:4.0f} µs here, "
                f"{meter.server_cpu / n * 1e6:4.0f} µs in the server"
            )
        sent = log.read_text().split()
        seen = Counter(line.split(".", 1)[1].split("@")[0] for line in sent)  # by program
        expected = n * len(rates)
        if len(set(sent)) != expected or len(sent) != expected:
            print(f"the server got {dict(seen)} ({len(set(sent))} distinct), expected {expected}")
            errors += 1
    if "daemon" in rates:
        for run in ("prebuilt", "build", "durable"):
            if run in rates:
                ratio = rates["daemon"] / rates[run]
                verdict = "meets" if ratio >= TARGET else "misses"
                target = f"({verdict} the {TARGET} target)" if run == "durable" else ""
                print(f"ratio daemon/{run}: {ratio:.2f} {target}")
    print(f"{connections} connections, {n} messages")
    if errors:
        print(f"{errors} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
