"""A rendered feed imported by Debian's calcurse, whose C parser shares no code with Python's.

calcurse exits 1 and writes a log to $TMPDIR when it skips an item (it skips, for example, a
VEVENT whose DTEND equals its DTSTART), so a clean import means every item was understood.
It converts TZID times with the system zone database, so start times are compared as epochs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from calendars.events import Audience, Event, EventKind
from calendars.ical import FeedItem, FeedMeta, render_feed
from tests.ical_lint import lint_ics

CALCURSE = shutil.which("calcurse")
pytestmark = pytest.mark.skipif(
    CALCURSE is None, reason="calcurse is not on PATH (apt-get install calcurse; CI installs it)"
)

LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def timed(key: str, start: datetime, minutes: int, title: str) -> Event:
    assert isinstance(start.tzinfo, ZoneInfo)
    return Event(
        program="sox",
        key=key,
        kind=EventKind.PRESENTATION if minutes else EventKind.ELECTION_CUTOFF,
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes),
        timezone=start.tzinfo.key,
        audiences=frozenset({Audience.EMPLOYEES}),
    )


def all_day(key: str, day: date, days: int, title: str, description: str = "") -> Event:
    return Event(
        program="sd",
        key=key,
        kind=EventKind.FORM_SD_DUE,
        title=title,
        start=day,
        end=day + timedelta(days=days),
        timezone="America/New_York",
        audiences=frozenset({Audience.COMPLIANCE}),
        description=description,
    )


def epoch(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


# (event, the line calcurse --dump-imported prints for it with the formats below)
CASES = [
    (
        timed("pres/fri", datetime(2003, 4, 4, 9, tzinfo=LA), 60, "Presentation PST"),
        f"apt {epoch(2003, 4, 4, 17)} {epoch(2003, 4, 4, 18)} Presentation PST",
    ),
    (
        timed("pres/mon", datetime(2003, 4, 7, 9, tzinfo=LA), 60, "Presentation PDT"),
        f"apt {epoch(2003, 4, 7, 16)} {epoch(2003, 4, 7, 17)} Presentation PDT",
    ),
    (
        timed("ny/mon", datetime(2026, 3, 9, 9, tzinfo=NY), 30, "New York EDT"),
        f"apt {epoch(2026, 3, 9, 13)} {epoch(2026, 3, 9, 13) + 1800} New York EDT",
    ),
    (
        timed("cutoff/jan", datetime(2026, 1, 15, 21, tzinfo=LA), 0, "Cutoff January"),
        f"apt {epoch(2026, 1, 16, 5)} {epoch(2026, 1, 16, 5)} Cutoff January",
    ),
    (
        timed("cutoff/jul", datetime(2026, 7, 15, 21, tzinfo=LA), 0, "Cutoff July"),
        f"apt {epoch(2026, 7, 16, 4)} {epoch(2026, 7, 16, 4)} Cutoff July",
    ),
    (
        all_day("form-sd", date(2026, 5, 29), 1, "Form SD due", "Déclaration — 締め切り " * 10),
        "event Form SD due",
    ),
    (all_day("cmrt", date(2026, 5, 26), 4, "CMRT window"), "recur-event CMRT window"),
]
FORMATS = {
    "--format-apt": "apt %(start:epoch) %(end:epoch) %m\\n",
    "--format-recur-apt": "recur-apt %m\\n",
    "--format-event": "event %m\\n",
    "--format-recur-event": "recur-event %m\\n",
}


def test_calcurse_imports_every_item(tmp_path: Path) -> None:
    assert CALCURSE is not None
    feed = tmp_path / "feed.ics"
    feed.write_bytes(
        render_feed(
            [FeedItem(event=event, last_modified=STAMP) for event, _ in CASES],
            FeedMeta(name="Tickler"),
        )
    )
    assert lint_ics(feed.read_bytes()) == []
    for name in ("data", "conf", "tmp"):
        (tmp_path / name).mkdir()
    # calcurse writes its skipped-items log to $TMPDIR; keep it (and any state) in tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "HOME": str(tmp_path), "TZ": "UTC"}
    command = [CALCURSE, "-D", str(tmp_path / "data"), "-C", str(tmp_path / "conf"), "-q"]
    command += ["-i", str(feed), "--dump-imported"]
    for option, template in FORMATS.items():
        command += [option, template]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    logs = {path.name: path.read_text() for path in (tmp_path / "tmp").iterdir()}
    assert (result.returncode, result.stderr, logs) == (0, "", {})
    assert sorted(result.stdout.splitlines()) == sorted(line for _, line in CASES)
