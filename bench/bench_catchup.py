"""Catch-up after downtime: a day of due messages delivered once the daemon is back.

    .venv/bin/python -m bench.bench_catchup [--messages 50000] [--connections 4]

``--messages`` CMRT requests fell due one after the other over the 24 hours before ``NOW``
(the daemon was down), none expired; they sit ``pending`` in a fresh SQLite outbox. Measured:
the daemon's delivery (``Service.deliver(NOW)``, as the loop's first tick runs it) until every
one is recorded ``sent``, to ``tests.smtp_sink`` in a process of its own, counted there by
Message-ID (each must arrive once). Baseline in the same run: the same number of messages
through bench_delivery's (c), the bare aiosmtplib loop that commits each accepted Message-ID
in groups. Prints both times and the ratio of their throughputs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bench.bench_delivery import NOW, Meter, daemon_path, durable_loop, outgoing, planned, sink

DOWNTIME = timedelta(days=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_catchup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    n, connections = args.messages, args.connections
    step = DOWNTIME / max(1, n)
    backlog = [replace(m, due=NOW - DOWNTIME + i * step) for i, m in enumerate(planned(n, "up"))]
    errors = 0
    with tempfile.TemporaryDirectory(prefix="tickler-bench-") as tmp, sink(Path(tmp)) as sunk:
        port, log, pid = sunk
        folder = Path(tmp)
        ours, bare = Meter(pid), Meter(pid)
        errors += asyncio.run(daemon_path(port, folder, backlog, connections, ours))
        emails = outgoing(planned(n, "bare"))
        url = f"sqlite:///{folder / 'durable.db'}"
        errors += asyncio.run(durable_loop(port, url, emails, connections, bare))
        lines = log.read_text().split()
    arrived = Counter(line.split(".", 1)[1].split("@")[0] for line in lines)
    if arrived != Counter({"bench-up": n, "bench-bare": n}) or len(set(lines)) != 2 * n:
        print(f"the server got {dict(arrived)}, expected {n} of each once", file=sys.stderr)
        errors += 1
    hours = DOWNTIME / timedelta(hours=1)
    print(f"backlog of {n} due over the last {hours:.0f} h, {connections} connections")
    for name, meter in (("daemon, all delivered:", ours), ("bare loop + durable IDs:", bare)):
        rate = n / meter.seconds
        print(f"{name:<36}{meter.seconds:7.1f} s ({rate:5.0f} msg/s)")
    print(f"ratio daemon/baseline throughput:   {bare.seconds / ours.seconds:7.2f}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
