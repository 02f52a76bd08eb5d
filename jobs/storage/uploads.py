"""Uploaded files: the bytes of each accepted CMRT, kept once per content, named by sha256."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jobs.storage.db import UploadedFile, dialect_name

FILES = cast(Table, UploadedFile.__table__)


def keep(session: Session, data: bytes, now: datetime) -> str:
    """Keep ``data`` (in the caller's transaction) and return its sha256, the name a fact
    refers to it by. The same content uploaded again is kept once, with its first time."""
    digest = hashlib.sha256(data).hexdigest()
    insert = sqlite_insert if dialect_name(session) == "sqlite" else postgresql_insert
    session.execute(
        insert(FILES)
        .values(sha256=digest, size=len(data), body=data, received_at=now)
        .on_conflict_do_nothing(index_elements=[FILES.c.sha256])
    )
    return digest


def load(session: Session, sha256: str) -> bytes | None:
    """Return the bytes kept under ``sha256``, or None."""
    return session.scalar(select(FILES.c.body).where(FILES.c.sha256 == sha256))
