"""A scratch copy for ``tickler simulate``: the real people and facts, nothing else.

A simulation plans and sends; on the live database it would cancel real pending messages,
take the daemon's leases and mail people. So it runs on a fresh database that holds copies of
the rows planning reads as input (people, option grants, the event log), with their ids, and
none of what planning and delivery write (outbox, obligations, revisions, feed tokens).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, Table, insert, select

from jobs.storage.db import EventLog, OptionGrant, Person

# Parents before children: grants and events point at people.
TABLES: tuple[Table, ...] = tuple(
    model.__table__  # type: ignore[misc]
    for model in (Person, OptionGrant, EventLog)
)
_CHUNK = 2000


def copy_people_and_facts(source: Engine, target: Engine) -> dict[str, int]:
    """Copy every person, grant and event-log row of ``source`` into ``target``; return counts.

    ``target`` must be migrated and hold none of them. Reading ``source`` is one read-only
    transaction, so the copy is consistent even while a daemon writes to it.
    """
    counts: dict[str, int] = {}
    with source.connect() as reading, target.begin() as writing:
        for table in TABLES:
            counts[table.name] = 0
            for chunk in _chunks(reading.execute(select(table).order_by(*table.primary_key))):
                writing.execute(insert(table), chunk)
                counts[table.name] += len(chunk)
    return counts


def _chunks(rows: Any) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(dict(row._mapping))
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
