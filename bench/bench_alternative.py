"""The alternative: the same reminders as one APScheduler 3 job each in SQLAlchemyJobStore.

    .venv/bin/python -m bench.bench_alternative [--reminders 10000]

Each side runs in a process of its own (so that its peak RSS is its own), on a fresh SQLite
file, with the same ``--reminders`` CMRT requests (``bench.bench_delivery.planned``):

- APScheduler 3.x: an ``AsyncIOScheduler`` with a ``SQLAlchemyJobStore``, started paused;
  schedule = ``add_job`` of each reminder (a date trigger at its due time, already past,
  ``misfire_grace_time=None`` so none is dropped; the Notice pickled into the job as its
  argument); fire = ``resume`` until every job has run. A job renders the email and writes
  it to a Maildir, as Tickler's delivery does.
- Tickler: schedule = ``jobs.storage.outbox.enqueue`` of the same reminders (the write half
  of a plan, in one transaction); fire = ``jobs.deliver.deliver_due`` to a Maildir: claim,
  render, write, record ``sent`` (and the evidence), each message once.

Neither side's planning logic is timed: APScheduler has none; Tickler's is in bench_plan.
Prints both sides' times, their ratios (target: Tickler 10x faster to schedule and to fire)
and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_delivery import NOW, SENDER, planned
from calendars.notices import Notice
from jobs.deliver import DeliveryOptions, compose, deliver_due
from jobs.mail.transport import MaildirTransport
from jobs.storage.db import begin_write, make_engine, session_factory, upgrade
from jobs.storage.outbox import enqueue

TARGET = 10.0
OPTIONS = DeliveryOptions(sender=SENDER)
# The job function's world, set in the APScheduler process before it starts (a job stores
# only a reference to the function and its pickled arguments).
_maildir: MaildirTransport | None = None
_fired: list[int] = [0]
_all_fired = asyncio.Event()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def send_reminder(notice: Notice, total: int) -> None:
    """An APScheduler job: render one reminder and write it to the Maildir."""
    assert _maildir is not None
    await _maildir.send(compose(notice, dict(notice.context), OPTIONS), date=NOW)
    _fired[0] += 1
    if _fired[0] == total:
        _all_fired.set()


async def apscheduler_side(folder: Path, reminders: list[Notice]) -> dict[str, float]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    global _maildir
    _maildir = MaildirTransport(folder / "maildir")
    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{folder / 'aps.db'}")},
        timezone=UTC,
    )
    scheduler.start(paused=True)
    # A due time just past, on the real clock APScheduler reads: due at resume, none dropped.
    due = datetime.now(UTC)
    started = time.perf_counter()
    for notice in reminders:
        scheduler.add_job(
            send_reminder,
            "date",
            run_date=due,
            args=[notice, len(reminders)],
            id=notice.message_id,
            misfire_grace_time=None,
        )
    scheduled = time.perf_counter()
    scheduler.resume()
    await asyncio.wait_for(_all_fired.wait(), timeout=3600)
    fired = time.perf_counter()
    scheduler.shutdown()
    return {"schedule": scheduled - started, "fire": fired - scheduled, "rss": peak_rss_mb()}


async def tickler_side(folder: Path, reminders: list[Notice]) -> dict[str, float]:
    url = f"sqlite:///{folder / 'tickler.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    started = time.perf_counter()
    with begin_write(factory) as session:
        enqueue(session, reminders, NOW)
    scheduled = time.perf_counter()
    report = await deliver_due(
        factory, MaildirTransport(folder / "maildir"), OPTIONS, owner="bench", now=NOW
    )
    fired = time.perf_counter()
    engine.dispose()
    if report.sent != len(reminders):
        raise RuntimeError(f"sent {report.sent} of {len(reminders)}: {report}")
    return {"schedule": scheduled - started, "fire": fired - scheduled, "rss": peak_rss_mb()}


def run_side(side: str, count: int) -> dict[str, Any]:
    """Run one side in a fresh process; return its figures."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_alternative",
            "--reminders",
            str(count),
            "--side",
            side,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_alternative",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--side", choices=["apscheduler", "tickler"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side is not None:
        reminders = planned(args.reminders, args.side)
        side = apscheduler_side if args.side == "apscheduler" else tickler_side
        with tempfile.TemporaryDirectory(prefix="tickler-bench-") as tmp:
            figures = asyncio.run(side(Path(tmp), reminders))
            figures["written"] = len(list((Path(tmp) / "maildir" / "new").iterdir()))
        print(json.dumps(figures))
        return 0
    results = {side: run_side(side, args.reminders) for side in ("apscheduler", "tickler")}
    aps, ours = results["apscheduler"], results["tickler"]
    n = args.reminders
    for name, r in (("APScheduler 3 + SQLAlchemyJobStore", aps), ("Tickler (outbox)", ours)):
        print(
            f"{name:<36} schedule {r['schedule']:7.2f} s ({n / r['schedule']:7,.0f}/s)  "
            f"fire {r['fire']:7.2f} s ({n / r['fire']:6,.0f}/s)  peak RSS {r['rss']:5.0f} MB  "
            f"({r['written']} written)"
        )
    for what in ("schedule", "fire"):
        ratio = aps[what] / ours[what]
        verdict = "meets" if ratio >= TARGET else "misses"
        print(f"Tickler faster to {what}: {ratio:6.1f}x ({verdict} the {TARGET:.0f}x target)")
    print(f"{n} reminders, SQLite, Maildir")
    return 0 if aps["written"] == ours["written"] == n else 1


if __name__ == "__main__":
    sys.exit(main())
