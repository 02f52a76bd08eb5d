"""The demo company as the dashboard's tests see it: ``tickler import demo``, a hostile
supplier imported from a CSV, one plan and delivery at NOW, a viewer and an operator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests.world import PROGRAMS, settings

#: After the 2016 survey's due date: every supplier asked, most answered, some escalated.
NOW = datetime(2017, 6, 15, 17, 0, tzinfo=UTC)
CMRT = "conflict-minerals-2016"
PASSWORD = "correct horse battery"
HOSTILE = '<script>alert("x")</script> & Co'
SESSION_KEY = "session-key-for-tests-0123456789abcdef"


def tickler(db_url: str, *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(
        cli, ["--now", NOW.isoformat(), *args], input=input, env={"TICKLER_DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.output
    return result.output


def demo(db_url: str, tmp_path: Path, **changes: object) -> Service:
    """Return a service over the demo data planned and delivered at NOW (mail to a Maildir)."""
    tickler(db_url, "import", "demo")
    hostile = tmp_path / "hostile.csv"
    hostile.write_text(
        "external_id,name,email,tier,owner_email\n"
        f'S999,"{HOSTILE.replace(chr(34), chr(34) * 2)}",evil@hostile.example,indirect,\n',
        encoding="utf-8",
    )
    tickler(db_url, "import", "suppliers", str(hostile))
    service = Service(settings(db_url, tmp_path, session_key=SESSION_KEY, **changes), PROGRAMS)

    async def tick() -> None:
        await service.plan(NOW)
        await service.deliver(NOW)
        await service.transport.close()

    asyncio.run(tick())
    for name, role in (("vic", "viewer"), ("olga", "operator")):
        tickler(db_url, "users", "add", name, "--role", role, "--password-stdin", input=PASSWORD)
    return service
