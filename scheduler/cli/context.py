"""What every ``tickler`` command shares: the settings, the clock read once, and how to fail.

The command modules import this, and ``main`` imports them: the imports of the CLI point one way.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from scheduler.cli.terminal import shown

if TYPE_CHECKING:
    from config.programs import Program
    from config.settings import Settings

#: Exit statuses of every command: 0 done; 1 refused or failed at run time (the input was
#: fine, the state of things said no: a daemon holds the database, a port is taken, a late
#: election); 2 a usage error or invalid input (nothing was changed).
EXIT_REFUSED = 1
EXIT_USAGE = 2


class Context:
    """What every command shares: settings built once, the clock read once."""

    def __init__(self, settings: Settings, now: datetime) -> None:
        self.settings = settings
        self.now = now
        # time.monotonic() when the clock read ``now``: a daemon's pretend clock (``--now``)
        # runs on from here, not from after the server stack's imports (seconds on a busy
        # machine, and not the same for two replicas started together).
        self.read_at = time.monotonic()

    def programs(self, config_dir: Path | None = None) -> list[Program]:
        # Imported here: `tickler --version` and `--help` never read a program file.
        from config.loader import ProgramFileErrors, load_programs

        try:
            return load_programs(config_dir or self.settings.program_dir)
        except ProgramFileErrors as exc:
            fail(*(str(e) for e in exc.errors))


def fail(*lines: str) -> NoReturn:
    """Print errors to stderr and exit 2: bad input changes nothing.

    Errors quote data (a CSV header, a program's name): it is shown, never obeyed (``shown``).
    """
    for line in lines:
        click.echo(f"error: {shown(line)}", err=True)
    sys.exit(EXIT_USAGE)


def refuse(*lines: str) -> NoReturn:
    """Print why the command cannot go on to stderr and exit 1 (the input itself was valid)."""
    for line in lines:
        click.echo(f"error: {shown(line)}", err=True)
    sys.exit(EXIT_REFUSED)
