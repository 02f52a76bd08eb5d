"""Event revisions: when an event's SEQUENCE goes up (RFC 5545), as a pure rule.

A calendar client keeps the copy of an event with the highest SEQUENCE, so every change of
what a person sees (title, times, place, description) must raise it, and nothing else may
(a feed whose bytes change for no reason defeats conditional GET). An event is identified by
its scope (a program id, or ``person:{id}`` for a person's own events) and its key; its
content by a fingerprint. A removed event keeps its revision, marked ``CANCELLED``, so feeds
and invitations can say it is cancelled, with a SEQUENCE above every earlier copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from calendars.events import Event

#: The fingerprint of an event that was published and then removed.
CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    """The stored revision of one event: its content fingerprint, SEQUENCE and last change.

    ``event`` is the event as last revised, where it is kept (a program's events, not a
    person's own): a meeting removed from its program is cancelled by email as it was.
    """

    fingerprint: str
    sequence: int
    last_modified: datetime
    event: Event | None = None

    @property
    def cancelled(self) -> bool:
        return self.fingerprint == CANCELLED


def fingerprint(event: Event) -> str:
    """Return a digest of what a calendar shows of ``event`` (not its revision)."""
    data = [event.title, str(event.start), str(event.end), event.location, event.description]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def revise(
    stored: Mapping[str, Revision],
    events: Sequence[Event],
    now: datetime,
    *,
    keep_events: bool = False,
) -> dict[str, Revision]:
    """Return the revisions of one scope that must be written, by event key.

    A new event starts at SEQUENCE 0; a changed one goes up by one with LAST-MODIFIED ``now``;
    one no longer there (and not already cancelled) becomes ``CANCELLED`` one higher, keeping
    the event it was. Unchanged events are not in the result: an empty result means nothing to
    write. With ``keep_events`` (a program's events: few, and mailed as invitations) each
    revision carries its event, and an event whose kept copy is missing or differs in what
    the fingerprint leaves out is written again, with the same SEQUENCE.
    """
    out: dict[str, Revision] = {}
    for event in events:
        key, print_ = event.key, fingerprint(event)
        row = stored.get(key)
        kept = event if keep_events else None
        if row is None:
            out[key] = Revision(fingerprint=print_, sequence=0, last_modified=now, event=kept)
        elif row.fingerprint != print_:
            out[key] = Revision(
                fingerprint=print_, sequence=row.sequence + 1, last_modified=now, event=kept
            )
        elif keep_events and row.event != event:
            out[key] = dataclasses.replace(row, event=kept)
    current = {e.key for e in events}
    for key, row in stored.items():
        if key not in current and not row.cancelled:
            out[key] = dataclasses.replace(
                row, fingerprint=CANCELLED, sequence=row.sequence + 1, last_modified=now
            )
    return out
