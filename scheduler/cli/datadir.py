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
    there (no ``TICKLER_SMTP_HOST``). Nothing is created: a directory that does not exist yet
    is judged by its nearest existing parent, where the daemon will have to create it (a
    Maildir must not be created here: the transport makes its tmp/new/cur only for a new one).
    """
    places: list[tuple[Path, str, list[Path]]] = []
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser().absolute()
        places.append((path.parent, "TICKLER_DATABASE_URL (the SQLite file)", [path]))
    if settings.smtp_host is None:
        maildir = settings.maildir.expanduser().absolute()
        inside = [maildir / "tmp", maildir / "new"]  # a message is written to tmp, moved to new
        places.append((maildir, "TICKLER_MAILDIR (mail is written there without SMTP)", inside))
    errors = []
    for directory, setting, inside in places:
        reason = _cannot_write(directory, inside)
        if reason is not None:
            errors.append(
                f"{setting}: cannot write to {directory} as uid {os.getuid()}: {reason}; "
                f"make it writable by that user (a bind-mounted data folder: "
                f"chown {os.getuid()}:{os.getgid()} on the host), or choose another place"
            )
    return errors


def _cannot_write(directory: Path, inside: list[Path]) -> str | None:
    """Return why ``directory`` (or what of ``inside`` exists) cannot be written, or None."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    reason = _write_check(existing)
    if reason is not None:
        return reason
    for path in inside:
        if path.is_dir():
            reason = _write_check(path)
        elif path.exists():
            try:
                with path.open("r+b"):
                    pass
            except OSError as exc:
                reason = exc.strerror or str(exc)
        if reason is not None:
            return f"{path.name}: {reason}"
    return None


def _write_check(directory: Path) -> str | None:
    # A real write, not os.access: it also sees read-only mounts and ACLs as they are.
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".tickler-write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
