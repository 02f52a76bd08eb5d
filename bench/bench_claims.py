"""Claim throughput on PostgreSQL: replicas claiming one outbox at once, as delivery claims.

    .venv/bin/python -m bench.bench_claims --database-url postgresql://… \\
        [--messages 30000] [--claimers 3] [--batch 200] [--groups 0] [--outbox FILE]

A fresh database on that server, migrated; ``--messages`` due rows put there by
``jobs.storage.outbox.enqueue`` (not timed), ``--groups`` of them combined escalations (groups
of 40, one recipient and instant each, their rows interleaved with the others). Then
``--claimers`` threads, each with an engine of its own (a replica), start together and call
``claim_due`` (``limit=--batch``, ``combine=COMBINED_JOBS``, the daemon's cap) and commit, until
nothing is left. Nothing is sent: this times the claims alone, the part replicas contend on.
Prints rows and claims per second, each claim's latency (p50, p99, max, as a claimer sees it:
waiting for its turn included), claims that failed and were retried ("deadlock detected"),
and groups that went out in more than one claim.

``--outbox FILE`` times another version of ``jobs/storage/outbox.py`` (``git show
REV:jobs/storage/outbox.py > FILE``) for a before/after. Exits 1 if a row was claimed twice
or not at all; never on speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import zip_longest
from types import ModuleType
from typing import Any

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import OperationalError

from calendars.escalations import COMBINED_JOBS, MAX_COMBINED
from calendars.notices import Notice
from jobs.storage import outbox as current
from jobs.storage.db import make_engine, session_factory, upgrade
from tests.integration.test_claim_race import NOW, notice

GROUP = 40
MINUTE = timedelta(minutes=1)


def planned(messages: int, groups: int) -> list[Notice]:
    """Return ``messages`` due rows: ``groups`` of ``GROUP`` escalations (one recipient and
    instant each) and ordinary reminders, alternating so that their ids interleave."""
    grouped = [
        notice(
            n,
            job="fcpa_escalation",
            recipient=f"owner{n // GROUP}@example.com",
            due=NOW - (n // GROUP) % 7 * MINUTE,
        )
        for n in range(min(groups * GROUP, messages))
    ]
    alone = [
        notice(n, job="fcpa_reminder", recipient=f"p{n}@example.com", due=NOW - n % 7 * MINUTE)
        for n in range(len(grouped), messages)
    ]
    return [m for pair in zip_longest(grouped, alone) for m in pair if m is not None]


def load(path: str | None) -> ModuleType:
    if path is None:
        return current
    spec = importlib.util.spec_from_file_location("outbox_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--database-url", required=True, help="a server we may create on")
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--claimers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--groups", type=int, default=0)
    parser.add_argument("--outbox", help="another version of jobs/storage/outbox.py")
    args = parser.parse_args()
    module = load(args.outbox)

    admin = make_engine(args.database_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"bench_claims_{int(time.time())}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.database_url).set(database=name)
    engines: list[Engine] = []
    try:
        upgrade(url)
        engines = [make_engine(url) for _ in range(args.claimers)]
        with session_factory(engines[0]).begin() as session:
            current.enqueue(session, planned(args.messages, args.groups), NOW)
        return run(module, engines, args)
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(module: ModuleType, engines: list[Engine], args: argparse.Namespace) -> int:
    start = threading.Barrier(len(engines))
    failed: Counter[int] = Counter()

    def claimer(index: int) -> list[tuple[float, list[Any]]]:
        factory = session_factory(engines[index])
        mine: list[tuple[float, list[Any]]] = []
        start.wait()
        while True:
            began = time.perf_counter()
            try:
                with factory.begin() as session:
                    batch = module.claim_due(
                        session,
                        now=NOW,
                        owner=f"replica{index}",
                        lease=timedelta(minutes=5),
                        limit=args.batch,
                        combine=COMBINED_JOBS,
                        combine_max=MAX_COMBINED,
                    )
            except OperationalError:
                failed[index] += 1  # "deadlock detected": the claim rolled back, try again
                continue
            if not batch:
                return mine
            mine.append((time.perf_counter() - began, batch))

    began = time.perf_counter()
    with ThreadPoolExecutor(len(engines)) as pool:
        claims = [c for done in pool.map(claimer, range(len(engines))) for c in done]
    elapsed = time.perf_counter() - began

    ids = Counter(m.id for _, batch in claims for m in batch)
    claims_of: dict[tuple[str, datetime], int] = defaultdict(int)
    for _, batch in claims:
        for group in {
            (m.notice.recipient, m.notice.due) for m in batch if m.notice.job in COMBINED_JOBS
        }:
            claims_of[group] += 1
    latencies = sorted(seconds * 1000 for seconds, _ in claims)
    print(
        f"{args.claimers} claimers, batch {args.batch}, {args.messages} rows"
        f" ({args.groups} groups of {GROUP}), {args.outbox or 'jobs/storage/outbox.py'}"
    )
    print(
        f"  {elapsed:.2f} s: {len(ids) / elapsed:,.0f} rows/s, {len(claims) / elapsed:.1f} claims/s"
    )
    print(
        f"  claim latency ms: p50 {statistics.median(latencies):.1f}"
        f" p99 {latencies[int(len(latencies) * 0.99)]:.1f} max {latencies[-1]:.1f}"
    )
    print(
        f"  claims failed and retried: {sum(failed.values())};"
        f" groups in more than one claim: {sum(1 for n in claims_of.values() if n > 1)}"
    )
    twice = [i for i, n in ids.items() if n > 1]
    if twice or len(ids) != args.messages:
        print(f"  WRONG: {len(twice)} rows claimed twice, {args.messages - len(ids)} never")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
