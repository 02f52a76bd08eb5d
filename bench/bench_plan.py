"""Import and first plan of a synthetic company, against a bare Core bulk INSERT of its rows.

    .venv/bin/python -m bench.bench_plan [--employees 100000] [--suppliers 5000]
        [--grants 20000] [--third-parties 1000] [--database-url URL] [--now ISO]

1. ``bench.generate`` writes the CSVs (not timed).
2. Import: ``jobs.imports.import_csv`` of the four files into a fresh, migrated database
   (a SQLite file in a temporary folder, or the empty PostgreSQL database ``--database-url``).
3. First plan: ``Service.plan(now)`` over the shipped programs (FCPA covers every employee and
   agent, the conflict-minerals programs every supplier, the option exchange the grants).
4. Plan again, nothing changed: the full reconciliation the daemon keeps as a safety net.
5. Baseline: every row steps 2-3 wrote (all tables) read back, then inserted into a second
   fresh database of the same kind with SQLAlchemy Core ``insert(table)`` executemany, 10,000
   rows to a statement, one transaction per table: the least any scheduler that stores the
   same rows does. Only the inserts are timed.

Prints each figure, the ratio of import + first plan to the baseline (target: 3x or
better), the outbox rows planned, and this process's peak RSS after the plan (before the
baseline reads rows back). One size per run, so the peak RSS is that size's.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text

from bench.generate import Sizes, write
from config.loader import load_programs
from config.settings import Settings
from jobs.imports import import_csv
from jobs.storage.db import Base, make_engine, session_factory, upgrade
from scheduler.daemon.service import Service

TARGET = 3.0
CHUNK = 10_000
FILES = [  # people before the grants that name them
    ("employees", "employees.csv"),
    ("suppliers", "suppliers.csv"),
    ("third-parties", "third_parties.csv"),
    ("grants", "grants.csv"),
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def fresh_postgres(admin_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``admin_url``; return its URL."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return engine.url.set(database=name).render_as_string(hide_password=False)


def import_and_plan(url: str, folder: Path, now: datetime) -> dict[str, Any]:
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    figures: dict[str, Any] = {}
    started, cpu = time.perf_counter(), time.process_time()
    for kind, name in FILES:
        with factory() as session:
            import_csv(session, kind, folder / name, now=now, actor="bench")  # type: ignore[arg-type]
    figures["import"] = time.perf_counter() - started
    figures["import_cpu"] = time.process_time() - cpu
    settings = Settings(database_url=url, maildir=folder / "maildir")
    service = Service(settings, load_programs(None), engine=engine)

    async def plan() -> tuple[float, float]:
        first = time.perf_counter()
        await service.plan(now)
        second = time.perf_counter()
        await service.plan(now)
        return second - first, time.perf_counter() - second

    cpu = time.process_time()
    figures["plan"], figures["replan"] = asyncio.run(plan())
    figures["plan_cpu"] = time.process_time() - cpu  # both plans: threads share one clock
    figures["rss"] = peak_rss_mb()
    with engine.connect() as connection:
        figures["rows"] = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    return figures


def bare_insert(source_url: str, target_url: str) -> tuple[float, float]:
    """Copy every row of ``source_url`` into the fresh ``target_url``; return the inserts'
    wall time and CPU time."""
    upgrade(target_url)
    source, target = make_engine(source_url), make_engine(target_url)
    seconds = cpu = 0.0
    for table in Base.metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        with source.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(select(table))]
        if not rows:
            continue
        started, used = time.perf_counter(), time.process_time()
        with target.begin() as connection:
            for at in range(0, len(rows), CHUNK):
                connection.execute(insert(table), rows[at : at + CHUNK])
        seconds += time.perf_counter() - started
        cpu += time.process_time() - used
    source.dispose()
    target.dispose()
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--suppliers", type=int, default=5_000)
    parser.add_argument("--grants", type=int, default=20_000)
    parser.add_argument("--third-parties", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="a PostgreSQL server (its databases are made)")
    parser.add_argument(
        "--now", default="2026-01-05T17:00:00+00:00", help="the plan's now (ISO, aware)"
    )
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now).astimezone(UTC)
    sizes = Sizes(
        employees=args.employees,
        suppliers=args.suppliers,
        grants=args.grants,
        third_parties=args.third_parties,
    )
    with tempfile.TemporaryDirectory(prefix="tickler-bench-") as tmp:
        folder = Path(tmp)
        write(folder, sizes, args.seed)
        if args.database_url:
            url = fresh_postgres(args.database_url, "tickler_bench_plan")
            baseline_url = fresh_postgres(args.database_url, "tickler_bench_bare")
        else:
            url, baseline_url = f"sqlite:///{folder / 'plan.db'}", f"sqlite:///{folder / 'bare.db'}"
        figures = import_and_plan(url, folder, now)
        bare, bare_cpu = bare_insert(url, baseline_url)
    rows = figures["rows"]
    total = sum(rows.values())
    ours = figures["import"] + figures["plan"]
    print(f"{sizes}, now {now.isoformat()}, {url.split(':')[0]}")
    imported, import_cpu = figures["import"], figures["import_cpu"]
    print(f"import (4 files):                 {imported:7.1f} s, CPU {import_cpu:.1f} s")
    print(f"first plan:                       {figures['plan']:7.1f} s")
    print(f"plan again, nothing changed:      {figures['replan']:7.1f} s")
    print(f"CPU of both plans (this process): {figures['plan_cpu']:7.1f} s")
    print(f"rows written: {total} ({rows['outbox']} outbox, {rows['people']} people)")
    speed = f"{total / bare:,.0f} rows/s"
    print(f"baseline, Core bulk INSERT:       {bare:7.1f} s ({speed}), CPU {bare_cpu:.1f} s")
    verdict = "meets" if ours / bare <= TARGET else "misses"
    ratio = f"{ours / bare:7.1f}x ({verdict} the {TARGET:.0f}x target)"
    print(f"ratio import+plan / bare insert:  {ratio}")
    print(f"peak RSS after the plan:          {figures['rss']:7.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
