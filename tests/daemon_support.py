"""Helpers for end-to-end tests of ``tickler run`` as a process, against real servers.

A database of its own (``Database``), the SMTP sink as a separate process (``sink_process``)
so that it outlives a daemon killed with SIGKILL, daemons started with the hidden ``--now``
(``start_daemon``), waits with deadlines, and the accounting every such test reports: what
was delivered, retried, recorded as failed and duplicated (``Tally``).

Messages are counted by Message-ID at the server: that is what a recipient would see twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import ColumnElement, insert, select
from sqlalchemy.orm import Session, sessionmaker

from config.programs import Program
from config.settings import Settings
from jobs.record import record
from jobs.storage.db import (
    OutboxMessage,
    OutboxState,
    Person,
    PersonKind,
    SupplierTier,
    begin_write,
    make_engine,
    session_factory,
    upgrade,
)

# In ``conflict-minerals-2016`` wave 1 (contract manufacturers and direct suppliers) is due on
# 2017-01-09 at 09:00 America/Los_Angeles, 17:00 UTC; wave 2 (indirect) two weeks later.
PROGRAM = "conflict-minerals-2016"
WAVE_1 = datetime(2017, 1, 9, 17, 0, tzinfo=UTC)  # 09:00 in Los Angeles
WAVE_2 = datetime(2017, 1, 23, 17, 0, tzinfo=UTC)
CONNECTIONS = 4  # SmtpTransport connections, and messages on the wire at once
# Accepted messages whose ``sent`` may still wait for its commit: with the CONNECTIONS on the
# wire, what a killed daemon can have sent without recording it.
UNRECORDED: int = Settings.model_fields["unrecorded_sends"].default
CRASH_WINDOW = CONNECTIONS + UNRECORDED
REPO = Path(__file__).resolve().parents[1]
FINAL = (OutboxState.SENT, OutboxState.SKIPPED)


@dataclass
class Database:
    url: str
    factory: sessionmaker[Session]

    def messages(self, *where: ColumnElement[bool]) -> list[OutboxMessage]:
        with self.factory() as session:
            return list(session.scalars(select(OutboxMessage).where(*where)))

    def message(self, identity: str) -> OutboxMessage:
        [row] = self.messages(OutboxMessage.identity == identity)
        return row

    def due(self, now: datetime) -> list[OutboxMessage]:
        return self.messages(OutboxMessage.due_at <= now)

    def unfinished(self, now: datetime) -> list[OutboxMessage]:
        """Return rows claimed, or pending and due at ``now``: work a daemon still owes."""
        return [
            m
            for m in self.messages(
                OutboxMessage.state.in_([OutboxState.PENDING, OutboxState.CLAIMED])
            )
            if m.state == OutboxState.CLAIMED or m.due_at <= now
        ]

    def add_suppliers(self, count: int, tier: SupplierTier, *, prefix: str = "S") -> list[str]:
        """Insert ``count`` suppliers of one tier in one statement; return their person keys."""
        rows = [
            {
                "kind": PersonKind.SUPPLIER,
                "external_id": f"{prefix}{n:05d}",
                "name": f"Supplier {prefix}{n:05d}",
                "email": f"{prefix.lower()}{n:05d}@example.com",
                "country": "US",
                "tier": tier,
                "owner_email": "buyer@example.com",
                "created_at": WAVE_1 - timedelta(days=30),
                "updated_at": WAVE_1 - timedelta(days=30),
            }
            for n in range(count)
        ]
        with self.factory.begin() as session:
            session.execute(insert(Person), rows)
        return [f"supplier:{row['external_id']}" for row in rows]

    def record_response(self, person: str, at: datetime, programs: list[Program]) -> int:
        """Record a complete CMRT from ``person`` the way the API does: one write transaction."""
        with begin_write(self.factory) as session:
            return record(
                session,
                kind="cmrt_response",
                program=PROGRAM,
                person=person,
                at=at,
                actor="test",
                source="api",
                payload={"complete": True},
                programs={p.id: p for p in programs},
                now=at,
            )


@contextmanager
def database(url: str) -> Iterator[Database]:
    upgrade(url)
    engine = make_engine(url)
    try:
        yield Database(url=url, factory=session_factory(engine))
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Wait until ``condition()`` holds (polling); return how long that took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


async def eventually(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Wait until ``condition()`` holds, polling without blocking the event loop (a daemon
    in the same process goes on meanwhile); return how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
    return loop.time() - start


def child_env() -> dict[str, str]:
    """Return this process's environment without ``TICKLER_…``, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The SMTP sink as a process ----------------------------------------------------------------


@dataclass
class SinkProcess:
    """``python -m tests.smtp_sink`` in its own process: it survives the daemon's death."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def ids(self) -> Counter[str]:
        return Counter(self.log.read_text(encoding="ascii").split())

    def count(self) -> int:
        return len(self.ids())


@contextmanager
def sink_process(tmp_path: Path, port: int = 0) -> Iterator[SinkProcess]:
    """Run the sink on ``port`` (0: any free port); its log of Message-IDs is kept."""
    log, out = tmp_path / "sink.log", tmp_path / "sink.out"
    log.touch()
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink", "--port", str(port), "--log", str(log)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=child_env(),
        )
    try:
        wait_for(
            lambda: out.read_text().strip().isdigit() or process.poll() is not None,
            timeout=20,
            what="the sink prints its port",
        )
        assert process.poll() is None, out.read_text()
        yield SinkProcess(process=process, port=int(out.read_text().strip()), log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)


# The daemon as a process -------------------------------------------------------------------


def daemon_command(now: datetime) -> list[str]:
    """Return the command line of ``tickler --now NOW@UNIX run``: the daemon's clock reads NOW
    at this call (UNIX), not whenever the process gets going, so that daemons started one
    after the other with ``now`` moved on by the time between share one clock."""
    command = "from scheduler.cli.main import main; main()"
    return [sys.executable, "-c", command, "--now", f"{now.isoformat()}@{time.time()!r}", "run"]


def daemon_env(
    db: Database, sink: SinkProcess | int | None, workdir: Path, **settings: object
) -> dict[str, str]:
    """Return the environment of a daemon over ``db`` sending to ``sink``.

    ``sink`` is the SMTP server, or its port (a server that may not be running yet), or None
    for the Maildir. Defaults: 2 s lease, 1 s sweep, ``CONNECTIONS`` connections, any free
    HTTP port; ``settings`` override them or add others (``smtp_timeout=1`` sets
    ``TICKLER_SMTP_TIMEOUT=1``).
    """
    values: dict[str, object] = {
        "database_url": db.url,
        "smtp_security": "none",
        "smtp_connections": CONNECTIONS,
        "lease_seconds": 2,
        "sweep_seconds": 1,
        "maildir": workdir / "maildir",
        "http_port": 0,  # any free port: tests may run side by side
    }
    if sink is not None:
        values["smtp_host"] = "127.0.0.1"
        values["smtp_port"] = sink if isinstance(sink, int) else sink.port
    values.update(settings)
    return child_env() | {f"TICKLER_{key.upper()}": str(value) for key, value in values.items()}


def start_daemon(
    db: Database,
    sink: SinkProcess | int | None,
    now: datetime,
    log: Path,
    **settings: object,
) -> subprocess.Popen[bytes]:
    """Start ``tickler --now NOW run`` (see ``daemon_env``); its output goes to ``log``."""
    env = daemon_env(db, sink, log.parent, **settings)
    with log.open("ab") as output:
        return subprocess.Popen(
            daemon_command(now), stdout=output, stderr=subprocess.STDOUT, cwd=log.parent, env=env
        )


def wait_while_running(
    process: subprocess.Popen[bytes],
    condition: Callable[[], bool],
    log: Path,
    what: str,
    *,
    timeout: float = 60,
) -> float:
    """Wait for ``condition``, failing at once (with its log) if the daemon exits."""

    def done() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited {process.returncode}:\n{log.read_text()}")
        return condition()

    return wait_for(done, timeout=timeout, what=what)


def stop(process: subprocess.Popen[bytes], log: Path) -> float:
    """SIGTERM the daemon; check it exits 0 within 10 s; return how long it took."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"no exit within 10 s of SIGTERM:\n{log.read_text()}") from None
    assert code == 0, log.read_text()
    return time.monotonic() - start


def stop_all(daemons: Iterable[tuple[subprocess.Popen[bytes], Path]], timeout: float = 30) -> None:
    """SIGTERM every daemon at once; check each exits 0 within ``timeout`` seconds."""
    daemons = list(daemons)
    for process, _ in daemons:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    problems = []
    for process, log in daemons:
        try:
            code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            problems.append(f"no exit within {timeout} s of SIGTERM:\n{log.read_text()}")
            continue
        if code != 0:
            problems.append(f"the daemon exited {code}:\n{log.read_text()}")
    assert not problems, "\n".join(problems)


def kill_all(daemons: Iterable[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """Kill the daemons still running (cleanup after a failure: no questions asked)."""
    for process, _ in daemons:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def log_records(log: Path) -> list[dict[str, object]]:
    """Return the JSON log records a daemon wrote to ``log`` (other lines are skipped)."""
    records = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def http_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """Wait for the daemon's ``http_listening`` log line; return the port it names."""
    found: list[int] = []

    def listening() -> bool:
        found.extend(
            int(str(r["port"])) for r in log_records(log) if r.get("action") == "http_listening"
        )
        return bool(found)

    wait_while_running(process, listening, log, "the HTTP server listens", timeout=30)
    return found[0]


@dataclass(frozen=True)
class Scrape:
    """One /metrics page, parsed by prometheus_client's own parser."""

    families: dict[str, Metric]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls({f.name: f for f in text_string_to_metric_families(text)})

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """Return the samples called ``name`` whose labels include ``labels``."""
        return [
            s
            for f in self.families.values()
            for s in f.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]

    def value(self, name: str, **labels: str) -> float:
        """Return the sum of the matching samples (over the labels not given, e.g. ``owner``);
        fail when there is none: a series that is missing is not a zero."""
        found = self.samples(name, **labels)
        assert found, f"no sample {name}{labels} in /metrics: {sorted(self.families)}"
        return sum(s.value for s in found)


def read_metrics(port: int) -> Scrape:
    """GET /metrics over the socket and parse it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return Scrape.parse(response.read().decode())


def scrape(port: int) -> dict[str, float]:
    """GET /metrics; return each sample (``name{labels}``, labels in page order) and its value."""
    out = {}
    for family in read_metrics(port).families.values():
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in s.labels.items())
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


# Accounting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """What happened to a set of outbox rows, as the server and the database tell it.

    delivered: distinct Message-IDs the server accepted; retried: attempts beyond the first
    (``attempts`` counts claims, so a reaped lease counts too); failed: rows recorded as
    failed; duplicates: extra copies the server accepted (a Message-ID twice is one).
    """

    messages: int
    delivered: int
    retried: int
    failed: int
    duplicates: int

    @classmethod
    def of(cls, rows: Iterable[OutboxMessage], received: Counter[str]) -> Tally:
        rows = list(rows)
        ids = {m.message_id for m in rows}
        return cls(
            messages=len(rows),
            delivered=sum(1 for mid in ids if received[mid] > 0),
            retried=sum(max(m.attempts - 1, 0) for m in rows),
            failed=sum(1 for m in rows if m.state == OutboxState.FAILED),
            duplicates=sum(received[mid] - 1 for mid in ids if received[mid] > 1),
        )

    def __str__(self) -> str:
        return (
            f"{self.messages} messages: delivered {self.delivered}, retried {self.retried}, "
            f"failed {self.failed}, duplicates {self.duplicates}"
        )


# A PostgreSQL cluster of a test's own -----------------------------------------------------


@dataclass
class PostgresCluster:
    """A throwaway cluster (scripts/pg-start's recipe) on its own port and data directory.

    The server refuses to run as root, so as root its commands run as ``postgres``, on a
    directory under /tmp that ``postgres`` owns (pytest's tmp_path is private to root).
    """

    bindir: Path
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data")]
        command += ["-l", str(self.directory / "log"), "-w", "-t", "60", "-o", options, *args]
        _as_server_user(command)

    def restart(self, *, down: float = 0.0) -> float:
        """Restart the server (fast: open connections are terminated), staying stopped at
        least ``down`` seconds; return how long it was unavailable."""
        start = time.monotonic()
        if down > 0:
            self.pg_ctl("-m", "fast", "stop")
            time.sleep(down)
            self.pg_ctl("start")
        else:
            self.pg_ctl("-m", "fast", "restart")
        return time.monotonic() - start


def postgres_bindir() -> Path | None:
    """Return the newest installed PostgreSQL server's bin directory (Debian's layout)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _as_server_user(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, cwd="/", capture_output=True, timeout=120)


@contextmanager
def postgres_cluster(bindir: Path) -> Iterator[PostgresCluster]:
    """initdb and start a cluster on a free port; stop and delete it on the way out."""
    directory = Path(tempfile.mkdtemp(prefix="tickler-pg-test-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    cluster = PostgresCluster(bindir=bindir, directory=directory, port=free_port())
    try:
        initdb = [str(bindir / "initdb"), "-D", str(directory / "data"), "-A", "trust"]
        _as_server_user([*initdb, "-U", "postgres", "-E", "UTF8", "--no-instructions"])
        cluster.pg_ctl("start")
        yield cluster
    finally:
        with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if (directory / "data" / "postmaster.pid").exists():
                cluster.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(directory, ignore_errors=True)
