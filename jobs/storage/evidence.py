"""Evidence: the exact bytes of every sent message, kept compressed beside its outbox row.

The delivery job records a sent message's bytes in the transaction that marks it ``sent``
(``record``), one executemany INSERT per group of outcomes, so keeping the evidence costs the
hot path one statement per commit and the compression, which runs on the writer thread.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from jobs.storage.db import SentMessage

SENT = cast(Table, SentMessage.__table__)
# zlib's default level: about 4x on these messages for a fraction of a send's cost (level 9
# buys a few per cent more for several times the CPU).
LEVEL = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One sent message as the server accepted it."""

    outbox_id: int
    message_id: str
    sent_at: datetime
    code: int | None
    reply: str
    data: bytes


def record(session: Session, sent: Sequence[Sent]) -> None:
    """Keep ``sent`` (the caller marked them ``sent`` in this transaction); never commits."""
    if not sent:
        return
    rows: list[dict[str, Any]] = [
        {
            "outbox_id": s.outbox_id,
            "message_id": s.message_id,
            "sent_at": s.sent_at,
            "code": s.code,
            "reply": s.reply,
            "size": len(s.data),
            "body": zlib.compress(s.data, LEVEL),
        }
        for s in sent
    ]
    session.execute(insert(SENT), rows)


def load(session: Session, outbox_id: int) -> Sent | None:
    """Return the evidence of message ``outbox_id``, its bytes decompressed, or None."""
    row = session.get(SentMessage, outbox_id)
    if row is None:
        return None
    return Sent(
        outbox_id=row.outbox_id,
        message_id=row.message_id,
        sent_at=row.sent_at,
        code=row.code,
        reply=row.reply,
        data=zlib.decompress(row.body),
    )


def replies(session: Session, outbox_ids: Sequence[int]) -> dict[int, tuple[int | None, str]]:
    """Return the server's (code, reply) for each of ``outbox_ids`` that has evidence."""
    if not outbox_ids:
        return {}
    stmt = select(SENT.c.outbox_id, SENT.c.code, SENT.c.reply).where(
        SENT.c.outbox_id.in_(list(outbox_ids))
    )
    return {id_: (code, reply) for id_, code, reply in session.execute(stmt)}
