"""The ``event_versions`` table: every event's stored revision (``calendars.versions``).

Written by planning for the programs' events and by a personal feed for a person's own events
(``person:{id}`` scopes, which no plan computes); both go through ``write``. Every function
runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, func, null, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from calendars.events import Event, event_from_dict, event_to_dict
from calendars.versions import Revision
from jobs.storage.db import EventVersion, dialect_name

TABLE = cast(Table, EventVersion.__table__)

#: Revisions by scope, then by event key.
Revisions = dict[str, dict[str, Revision]]


def load(session: Session, scopes: Sequence[str]) -> Revisions:
    """Return the stored revisions of ``scopes`` (every scope present, perhaps empty)."""
    out: Revisions = {scope: {} for scope in scopes}
    rows = session.execute(
        select(
            TABLE.c.program,
            TABLE.c.key,
            TABLE.c.fingerprint,
            TABLE.c.sequence,
            TABLE.c.last_modified,
            TABLE.c.event,
        ).where(TABLE.c.program.in_(list(scopes)))
    )
    for scope, key, print_, sequence, last_modified, event in rows:
        out[scope][key] = Revision(
            fingerprint=print_,
            sequence=sequence,
            last_modified=last_modified,
            event=_event(event),
        )
    return out


def _event(data: dict[str, Any] | None) -> Event | None:
    """Return the kept event, or None: a copy this version cannot read is as good as none
    (planning writes it again; a cancellation falls back), never a reason to stop planning."""
    if data is None:
        return None
    try:
        return event_from_dict(data)
    except (KeyError, ValueError, TypeError):
        return None


def write(session: Session, scope: str, changes: Mapping[str, Revision]) -> None:
    """Write ``changes`` (from ``calendars.versions.revise``) for ``scope``.

    An upsert: two writers (two replicas planning, or a feed and the planner) that computed
    the same change from the same stored state write the same row; no unique violation.
    """
    if not changes:
        return
    insert = postgresql_insert if dialect_name(session) == "postgresql" else sqlite_insert
    rows = [
        {
            "program": scope,
            "key": key,
            "fingerprint": r.fingerprint,
            "sequence": r.sequence,
            "last_modified": r.last_modified,
            # SQL NULL, not the JSON value null, where no event is kept.
            "event": event_to_dict(r.event) if r.event is not None else null(),
        }
        for key, r in sorted(changes.items())
    ]
    for start in range(0, len(rows), 500):
        stmt = insert(TABLE).values(rows[start : start + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=[TABLE.c.program, TABLE.c.key],
            set_={
                "fingerprint": stmt.excluded.fingerprint,
                "sequence": stmt.excluded.sequence,
                "last_modified": stmt.excluded.last_modified,
                "event": stmt.excluded.event,
            },
            # Never lower a SEQUENCE: a writer working from an older read loses.
            where=TABLE.c.sequence <= stmt.excluded.sequence,
        )
        session.execute(stmt)


def totals(session: Session, scopes: Sequence[str]) -> tuple[int, int]:
    """Return the number of revisions in ``scopes`` and their SEQUENCE total.

    Either grows with every write (a new row, a raised SEQUENCE): a cheap change detector.
    """
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(TABLE.c.sequence), 0)).where(
            TABLE.c.program.in_(list(scopes))
        )
    ).one()
    return int(count), int(total)
