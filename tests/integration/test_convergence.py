"""One truth whatever the timing (issue 15, part 1), on every backend.

``tickler import demo`` while the daemon runs: the daemon plans between the import's steps
(people before the facts about them). Obligations planned too early used to stay open forever
(44 pending and 428 escalated on PostgreSQL against 43 and 418 on SQLite). Now what planning no
longer produces is retired, and ``tickler status`` ends as it does when the daemon starts
after the import (a single plan after everything, here always on SQLite).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.daemon_support import (
    Database,
    daemon_env,
    database,
    start_daemon,
    stop,
    wait_for,
    wait_while_running,
)

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def tickler(db: Database, workdir: Path, *args: str) -> str:
    command = "from scheduler.cli.main import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", command, "--now", NOW.isoformat(), *args],
        env=daemon_env(db, None, workdir),
        cwd=workdir,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def settled_status(db: Database, workdir: Path, daemon: subprocess.Popen[bytes], log: Path) -> Any:
    """Return ``tickler status --format json`` once it stops changing (the daemon is idle)."""
    seen: list[Any] = []

    def quiet() -> bool:
        seen.append(json.loads(tickler(db, workdir, "status", "--format", "json")))
        return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

    wait_while_running(daemon, quiet, log, "status settled", timeout=180)
    return seen[-1]


def run_daemon_during(db: Database, workdir: Path, importing: bool) -> Any:
    log = workdir / "daemon.log"
    if not importing:
        tickler(db, workdir, "import", "demo")
    daemon = start_daemon(db, None, NOW, log)
    try:
        wait_for(lambda: b'"started"' in log.read_bytes(), timeout=60, what="the daemon started")
        if importing:
            time.sleep(1)  # the daemon's first plan is under way
            tickler(db, workdir, "import", "demo")
        return settled_status(db, workdir, daemon, log)
    finally:
        stop(daemon, log)


def test_import_demo_while_the_daemon_runs_ends_as_a_single_plan_after_it(
    empty_db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "during").mkdir()
    (tmp_path / "after").mkdir()
    with database(empty_db_url) as db:
        during = run_daemon_during(db, tmp_path / "during", importing=True)
    with database(f"sqlite:///{tmp_path / 'after' / 'tickler.sqlite'}") as db:
        after = run_daemon_during(db, tmp_path / "after", importing=False)

    def figures(status: Any) -> dict[str, Any]:
        return {
            program: {
                "obligations": info["obligations"],
                "pending": info["messages"].get("pending"),
            }
            for program, info in status["programs"].items()
        }

    assert figures(during) == figures(after)
    assert during["upcoming"] == after["upcoming"]
    fcpa = during["programs"]["fcpa"]["obligations"]
    assert fcpa.get("retired") is None  # retired obligations are history, counted nowhere
