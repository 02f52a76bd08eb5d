"""`tickler --version`, `--help`, `check` and `plan` start without the server stack.

Importing SQLAlchemy, Starlette, uvicorn, aiosmtplib, APScheduler and Jinja2 took about two
seconds of every command's start; these commands need none of them. Each case runs the command
in a fresh interpreter and lists what it imported: no timing, so the test is as steady on a
loaded CI machine as on a laptop. A failure names the module that came back; the cure is to
import it inside the body of the command that uses it (scheduler/cli/main.py says why).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Top-level packages and our own rooms that only the daemon's commands need.
SERVER_STACK = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "uvicorn",
    "starlette",
    "aiosmtplib",
    "apscheduler",
    "jinja2",
    "jobs",
    "scheduler.daemon",
    "scheduler.web",
)

# Run the CLI in-process, then report which modules of SERVER_STACK it imported.
PROBE = """
import json, sys
from scheduler.cli.main import cli
args, stack, report = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
try:
    cli.main(args, prog_name="tickler")
    code = 0
except SystemExit as exc:
    code = exc.code
loaded = [s for s in stack if any(m == s or m.startswith(s + ".") for m in sys.modules)]
with open(report, "w") as f:
    json.dump({"code": code, "loaded": loaded}, f)
"""

NOW = ["--now", "2003-01-01T00:00:00+00:00"]


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["plan", "--help"],
        ["check"],
        [*NOW, "plan", "--format", "json"],
        [*NOW, "plan"],
        # The daemon's commands declare themselves without importing what they run.
        ["run", "--help"],
        ["feeds", "--help"],
        ["import", "--help"],
    ],
    ids=" ".join,
)
def test_command_does_not_import_the_server_stack(args: list[str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    # The shipped demo programs and default settings: no TICKLER_* from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLER_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(SERVER_STACK), str(report)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["code"] == 0, done.stdout + done.stderr
    assert result["loaded"] == []


def test_import_kinds_are_the_importers() -> None:
    """The CLI spells out the importer's kinds to stay light; they must not drift apart."""
    from jobs.imports import KINDS
    from scheduler.cli import imports

    assert imports.KINDS == KINDS


def test_help_lists_every_command_with_its_line() -> None:
    """Registering the commands in main (not on import of their modules) misses none."""
    from click.testing import CliRunner

    from scheduler.cli.main import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1]
    lines = dict(line.split(None, 1) for line in listed.splitlines() if line.strip())
    assert sorted(lines) == sorted(cli.commands)
    assert {"check", "db", "feeds", "import", "plan", "record", "run", "simulate", "status"} <= set(
        lines
    )
    assert all(text.strip() for text in lines.values())
