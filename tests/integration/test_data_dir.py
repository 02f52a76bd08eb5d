"""A data directory ``tickler run`` cannot write stops it at start: one line, exit 2.

The container's case: a bind mount owned by root while tickler runs as uid 10001. It used to
log ``listening`` and then die with a ``PermissionError`` traceback. Run as root (as in CI),
the daemon is started as uid 10001 in a root-owned folder, as in the container (``setpriv``;
it keeps the right to read and search what root can, since the venv's interpreter may live
under /root, but not to write); run as another user, the folder is made read-only to that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from scheduler.cli.datadir import unwritable

TICKLER = Path(sys.executable).parent / "tickler"
CONTAINER_UID = 10001


@pytest.fixture
def base() -> Iterator[Path]:
    # Not pytest's tmp_path: its folders are 0700, which uid 10001 could not even enter.
    with tempfile.TemporaryDirectory(prefix="tickler-data-dir-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def start(base: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``tickler run`` as a user who cannot write ``base/data``; return what it did."""
    data = base / "data"
    data.mkdir()
    command = [str(TICKLER), "run"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("run as root without setpriv (util-linux) to become uid 10001")
        # What a container does with USER 10001:10001 and a root-owned bind mount.
        ids = [f"--reuid={CONTAINER_UID}", f"--regid={CONTAINER_UID}", "--clear-groups"]
        caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        command = [setpriv, *ids, *caps, *command]
    else:
        data.chmod(0o555)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKLER_")}
    try:
        return subprocess.run(
            command,
            env=clean | {"HOME": str(base), "TICKLER_LOG_FORMAT": "json"} | env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        data.chmod(0o755)


def test_an_unwritable_sqlite_folder_is_a_settings_error(base: Path) -> None:
    done = start(
        base,
        {
            "TICKLER_DATABASE_URL": f"sqlite:///{base / 'data' / 'tickler.sqlite'}",
            "TICKLER_MAILDIR": str(base / "data" / "maildir"),
            "TICKLER_HTTP_PORT": "0",
        },
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout + done.stderr  # nothing served, nothing logged
    lines = done.stderr.splitlines()
    [error] = [line for line in lines if line.startswith("error:")]
    assert error.startswith(
        f"error: TICKLER_DATABASE_URL (the SQLite file): cannot write to {base / 'data'} as uid "
    )
    assert "Permission denied" in error and "chown" in error
    # The Maildir below it is named too (both are fixed by the same chown), as a warning: on
    # its own it would not stop the start, since delivery retries a Maildir until it can.
    assert any(line.startswith("warning: TICKLER_MAILDIR") for line in lines)
    assert not list((base / "data").iterdir())


def test_a_maildir_is_not_checked_when_mail_goes_to_smtp(base: Path) -> None:
    # PostgreSQL keeps its own data and SMTP takes the mail: nothing here needs the folder.
    settings = Settings(maildir=base / "data" / "maildir", smtp_host="smtp.example.com")
    assert unwritable(settings, None) == []
    assert unwritable(settings, ":memory:") == []


def test_a_parent_that_is_a_file_is_named(base: Path) -> None:
    # The one case root cannot write either: a data path under a regular file.
    (base / "file").write_text("", encoding="utf-8")
    settings = Settings(maildir=base / "file" / "maildir")
    (error,) = unwritable(settings, str(base / "new" / "tickler.sqlite"))
    assert error.startswith(
        f"TICKLER_MAILDIR (mail is written there without SMTP): cannot "
        f"write to {base / 'file' / 'maildir'} as uid {os.getuid()}: "
        f"{base / 'file'} is not a directory"
    )
    # Nothing is created or left behind: the daemon creates its folders (a Maildir's tmp,
    # new and cur only when it makes the Maildir itself).
    assert sorted(p.name for p in base.iterdir()) == ["file"]
