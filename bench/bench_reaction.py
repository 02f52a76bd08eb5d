"""Reaction: from a recorded election to that person's follow-ups cancelled and receipt queued.

    .venv/bin/python -m bench.bench_reaction [--employees 10000] [--samples 20] [--via cli|api]

A generated company (``bench.generate``, ``--employees`` with as many grants) is imported into
a fresh SQLite file; the daemon (``tickler --now NOW run``, Maildir, a sweep every 60 s) runs
in a process of its own on it, ``NOW`` inside the 2003 option exchange's offer period. Once
its first plan is in (the outbox stops growing), ``--samples`` eligible employees, one after
the other, each elect with ``tickler record election`` (a process, as an operator runs it).
Measured per election, polling the database every 10 ms from the command's exit: from the
command's start until one of that person's pending messages is cancelled (the cutoff
reminders) and a new row of theirs exists (the receipt); and the command's own time
(starting Python, recording, and, as ``tickler record`` does, replanning that person).
With ``--via api`` each election is instead a ``POST /api/v1/elections`` to the running
daemon (a bearer token with every scope), timed from the request until the same reaction; the
command's own time is then the HTTP answer's. Prints p50 and p99 of both (target: p99 < 1 s),
and the pending rows the daemon held. ``--full-every S`` sets ``TICKLER_FULL_PLAN_SECONDS``:
with a few seconds, the daemon's whole plan (the safety net, every six hours by default) runs
again and again, so that every election lands while one is in flight, its worst case.
Baseline in the same run: the time a fresh process takes to read that person's pending rows
(a process start and one query), the least a reaction through another process can take.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.generate import Sizes, write
from jobs.imports import import_csv
from jobs.storage import SessionFactory
from jobs.storage.db import (
    OutboxMessage,
    OutboxState,
    Person,
    make_engine,
    session_factory,
    upgrade,
)

NOW = datetime(2003, 1, 6, 17, 0, tzinfo=UTC)  # the offer is open until 2003-01-20
PROGRAM = "option-exchange-2003"
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from scheduler.cli.main import main; main()"]
SECRET = "bench-reaction-secret-0123456789"
PROBE = (
    "import sys; from sqlalchemy import create_engine, text; "
    "e = create_engine(sys.argv[1]); c = e.connect(); "
    "c.execute(text('SELECT id FROM outbox WHERE person_id = :p AND state = :s'), "
    "{'p': int(sys.argv[2]), 's': 'pending'}).all()"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_reaction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the first plan")
    parser.add_argument(
        "--via", choices=["cli", "api"], default="cli", help="record with the CLI or the HTTP API"
    )
    parser.add_argument(
        "--full-every", type=float, default=None, help="seconds between the daemon's whole plans"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tickler-bench-") as tmp:
        folder = Path(tmp)
        sizes = Sizes(employees=args.employees, suppliers=0, grants=args.employees, third_parties=0)
        write(folder, sizes, seed=1)
        url = f"sqlite:///{folder / 'reaction.db'}"
        upgrade(url)
        engine = make_engine(url)
        factory = session_factory(engine)
        with factory() as session:
            import_csv(session, "employees", folder / "employees.csv", now=NOW, actor="bench")
        with factory() as session:
            import_csv(session, "grants", folder / "grants.csv", now=NOW, actor="bench")
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            TICKLER_DATABASE_URL=url,
            TICKLER_MAILDIR=str(folder / "maildir"),
            TICKLER_HTTP_PORT=str(free_port()),
            TICKLER_LOG_FORMAT="json",
            TICKLER_API_TOKENS=json.dumps([f"bench:{SECRET}"]),
            TICKLER_API_SCOPES=json.dumps({"bench": "*"}),
        )
        if args.full_every is not None:
            env["TICKLER_FULL_PLAN_SECONDS"] = str(args.full_every)
        log = (folder / "daemon.log").open("wb")
        launched = time.monotonic()
        daemon = subprocess.Popen(
            [*CLI, "--now", NOW.isoformat(), "run", "--sweep", "60"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
        try:
            return measure(factory, env, folder, daemon, args, launched)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            log.close()
            engine.dispose()


def free_port() -> int:
    """Return a loopback port free a moment ago, for the daemon's HTTP listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def by_cli(env: dict[str, str], folder: Path) -> Callable[[str, datetime], str | None]:
    """Record an election with ``tickler record`` (a process); return an error or None."""

    def elect(external_id: str, at: datetime) -> str | None:
        done = subprocess.run(
            [
                *CLI,
                "--now",
                at.isoformat(),
                "record",
                "election",
                "--program",
                PROGRAM,
                "--person",
                f"employee:{external_id}",
                "--actor",
                "bench",
            ],
            env=env,
            cwd=folder,
            capture_output=True,
        )
        return None if done.returncode == 0 else done.stdout.decode() + done.stderr.decode()

    return elect


def by_api(env: dict[str, str]) -> Callable[[str, datetime], str | None]:
    """Record an election with ``POST /api/v1/elections``; return an error or None. The
    daemon's clock decides when it happened."""
    url = f"http://127.0.0.1:{env['TICKLER_HTTP_PORT']}/api/v1/elections"

    def elect(external_id: str, _at: datetime) -> str | None:
        body = json.dumps({"program": PROGRAM, "person": f"employee:{external_id}"}).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return None if answer.status in (200, 201) else f"HTTP {answer.status}"
        except OSError as exc:  # an HTTPError is one too, and says its status
            return f"POST {url}: {exc}"

    return elect


def pending_count(factory: SessionFactory) -> int:
    with factory() as session:
        stmt = select(func.count()).where(OutboxMessage.state == OutboxState.PENDING)
        return int(session.execute(stmt).scalar_one())


def measure(
    factory: SessionFactory,
    env: dict[str, str],
    folder: Path,
    daemon: subprocess.Popen[bytes],
    args: argparse.Namespace,
    launched: float,
) -> int:
    started, last, still = time.monotonic(), -1, 0.0
    while True:  # the first plan is in once the outbox stops growing for 5 s
        if daemon.poll() is not None:
            print((folder / "daemon.log").read_text()[-3000:], file=sys.stderr)
            return 1
        count = pending_count(factory)
        if count == last and count > 0:
            if time.monotonic() - still >= 5:
                break
        else:
            last, still = count, time.monotonic()
        if time.monotonic() - started > args.timeout:
            print(f"the first plan did not settle in {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"first plan settled after {time.monotonic() - started:.0f} s: {last} pending")
    with factory() as session:
        # Eligible employees: those with pending cutoff reminders of the offer.
        rows = session.execute(
            select(Person.id, Person.external_id)
            .join(OutboxMessage, OutboxMessage.person_id == Person.id)
            .where(OutboxMessage.program == PROGRAM, OutboxMessage.state == OutboxState.PENDING)
            .group_by(Person.id, Person.external_id)
            .order_by(Person.id)
            .limit(args.samples)
        ).all()
    elect = by_api(env) if args.via == "api" else by_cli(env, folder)
    reactions: list[float] = []
    commands: list[float] = []
    probes: list[float] = []
    for person_id, external_id in rows:
        with factory() as session:
            before = session.execute(
                select(OutboxMessage.id, OutboxMessage.state).where(
                    OutboxMessage.person_id == person_id
                )
            ).all()
        pending = {i for i, state in before if state == OutboxState.PENDING}
        newest = max(i for i, _ in before)
        t0 = time.monotonic()
        # The command's clock is the daemon's (which started at NOW): the offer is open then.
        failed = elect(external_id, NOW + timedelta(seconds=t0 - launched))
        t1 = time.monotonic()
        if failed is not None:
            print(f"employee:{external_id}: {failed}", file=sys.stderr)
            return 1
        while True:
            with factory() as session:
                after = session.execute(
                    select(OutboxMessage.id, OutboxMessage.state).where(
                        OutboxMessage.person_id == person_id
                    )
                ).all()
            cancelled = any(i in pending and s == OutboxState.CANCELLED for i, s in after)
            if cancelled and any(i > newest for i, _ in after):
                break
            if time.monotonic() - t1 > 120:
                print(f"employee:{external_id}: no reaction in 120 s", file=sys.stderr)
                return 1
            time.sleep(0.01)
        reactions.append(time.monotonic() - t0)
        commands.append(t1 - t0)
        p0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", PROBE, env["TICKLER_DATABASE_URL"], str(person_id)],
            check=True,
            env=env,
        )
        probes.append(time.monotonic() - p0)
    for name, values in (
        ("record -> cancelled + receipt", reactions),
        ("the POST, answered" if args.via == "api" else "tickler record (the command)", commands),
        ("baseline: a process reading the rows", probes),
    ):
        print(
            f"{name:<40} p50 {statistics.median(values):6.2f} s  "
            f"p99 {percentile(values, 0.99):6.2f} s  (n={len(values)})"
        )
    verdict = "meets" if percentile(reactions, 0.99) < 1 else "misses"
    print(
        f"reaction ({args.via}) p99 {verdict} the 1 s target; "
        f"{args.employees} employees, {last} pending"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
