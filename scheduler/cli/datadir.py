"""Check, before ``tickler run`` listens, that it can write where it keeps its state.

Why at start: an SQLite file (with its WAL, shared-memory and lock files beside it) or a
Maildir in a directory the process cannot write (in a container, a bind mount owned by root
while tickler runs as uid 10001) used to fail only after ``listening`` had been logged, as a
``PermissionError`` traceback. Checked here, it is one line naming the directory, the setting
and the uid, and exit 2 like every other settings error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from config.settings import Settings


def unwritable(settings: Settings, database: str | None) -> list[str]:
    """Return one error per place the daemon must write but cannot; none when all is well.

    ``database`` is the SQLite file of the database URL (None for a server database, which
    keeps its state elsewhere; ":memory:" for none). The Maildir counts only when mail goes
    there (no ``TICKLER_SMTP_HOST``). Directories that do not exist yet are created, as the
    daemon would create them, so that a parent that cannot be written is found too.
    """
    places: list[tuple[Path, str, Path | None]] = []
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser().absolute()
        places.append((path.parent, "TICKLER_DATABASE_URL (the SQLite file)", path))
    if settings.smtp_host is None:
        maildir = settings.maildir.expanduser().absolute()
        places.append((maildir, "TICKLER_MAILDIR (mail is written there without SMTP)", None))
    errors = []
    for directory, setting, file in places:
        reason = _cannot_write(directory, file)
        if reason is not None:
            errors.append(
                f"{setting}: cannot write to {directory} as uid {os.getuid()}: {reason}; "
                f"make it writable by that user (a bind-mounted data folder: "
                f"chown {os.getuid()}:{os.getgid()} on the host), or choose another place"
            )
    return errors


def _cannot_write(directory: Path, file: Path | None) -> str | None:
    """Return why ``directory`` (and ``file`` in it, if it exists) cannot be written, or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: it also sees read-only mounts and ACLs as they are.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".tickler-write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if file is None:
        return None
    try:
        if file.exists():
            with file.open("r+b"):
                pass
    except OSError as exc:
        return f"{file.name}: {exc.strerror or exc}"
    return None
