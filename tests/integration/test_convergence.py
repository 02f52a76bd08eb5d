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

from sqlalchemy.orm import Session

from calendars.notices import Team
from jobs.planning import DIGEST_PROGRAM, digest_notices
from jobs.storage import messages, outbox
from jobs.storage.db import EventSource
from jobs.storage.queries import status_rows
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

    # Every figure: obligations and messages by state (pending, cancelled, sent...), the
    # survey statistics, what is next, what failed and what planning left out. The "after" run
    # is on SQLite, so the two backends end with identical figures.
    for part in ("programs", "upcoming", "failed", "skipped"):
        assert during[part] == after[part], part
    fcpa = during["programs"]["fcpa"]["obligations"]
    assert fcpa.get("retired") is None  # retired obligations are history, counted nowhere


def test_a_withdrawn_forecast_is_no_cancelled_message_and_comes_back_when_planned_again(
    session: Session,
) -> None:
    """A message planning queued then cancelled itself before any attempt to send it is
    counted nowhere, and planned again it is pending again; an operator's cancel stays a
    cancelled message (``queries.status_rows``)."""
    team = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")
    first, second = digest_notices(team, "America/Los_Angeles", NOW)
    outbox.enqueue(session, [first, second], NOW)
    outbox.cancel_pending(session, [first.identity, second.identity], outbox.UNPLANNED, NOW)

    def states() -> dict[str, int]:
        rows = [tuple(row) for row in status_rows(session, NOW).messages]
        return {str(state): n for _program, state, n in rows}

    assert states() == {}  # two forecasts withdrawn: no message, no cancelled one

    report = outbox.enqueue(session, [first], NOW)  # the facts call for the first again
    assert (report.inserted, report.updated) == (0, 1)
    assert states() == {"pending": 1}
    assert outbox.pending_of(session, {DIGEST_PROGRAM}, None).keys() == {first.identity}

    messages.cancel(
        session, first.identity, actor="cli:ops", source=EventSource.CLI, now=NOW, reason="by hand"
    )
    outbox.enqueue(session, [first, second], NOW)  # an operator's cancel is a decision: kept
    assert states() == {"cancelled": 1, "pending": 1}
