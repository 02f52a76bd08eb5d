"""Contacts are data: a corrected address reaches every message still pending for the person."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from config.settings import Settings
from jobs.imports import demo_dir, import_csv
from jobs.mail.transport import MaildirTransport
from jobs.storage.db import (
    OutboxMessage,
    OutboxState,
    Person,
    PersonKind,
    make_engine,
    session_factory,
)
from scheduler.daemon.service import Service
from tests.integration.test_campaigns import NOW, PROGRAMS, load_demo

OLD = "quality@nakamura-seimitsu.example"
NEW = "cmrt@nakamura-seimitsu.example"


def messages_of(url: str, external_id: str) -> list[tuple[str, str, str]]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        rows = session.execute(
            select(OutboxMessage.identity, OutboxMessage.state, OutboxMessage.recipient)
            .join(Person, Person.id == OutboxMessage.person_id)
            .where(Person.kind == PersonKind.SUPPLIER, Person.external_id == external_id)
        ).all()
    engine.dispose()
    return sorted((i, str(s), r) for i, s, r in rows)


def test_an_address_change_by_import_reaches_every_pending_message(
    db_url: str, tmp_path: Path
) -> None:
    load_demo(db_url)
    settings = Settings(database_url=db_url, maildir=tmp_path / "maildir")
    service = Service(
        settings, list(PROGRAMS.values()), transport=MaildirTransport(tmp_path / "maildir")
    )
    asyncio.run(service.plan(NOW))
    before = messages_of(db_url, "S002")
    # The RY2026 survey to S002 (request, follow-ups), and its escalation to S002's owner.
    mine = [m for m in before if m[1] == OutboxState.PENDING and "/supplier:S002/" in m[0]]
    assert len(mine) >= 2 and all(m[2] == OLD for m in mine)

    text = (demo_dir() / "suppliers.csv").read_text(encoding="utf-8")
    assert text.count(OLD) == 1
    corrected = tmp_path / "suppliers.csv"
    corrected.write_text(text.replace(OLD, NEW), encoding="utf-8")
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        report = import_csv(session, "suppliers", corrected, now=NOW, actor="test")
    engine.dispose()
    assert report.updated == 1

    async def replan() -> None:
        await service.plan(NOW)
        await service.close()

    asyncio.run(replan())
    after = messages_of(db_url, "S002")
    assert [m[0] for m in after] == [m[0] for m in before]  # the same messages, re-addressed
    for (identity, state, was), (_, _, now_to) in zip(before, after, strict=True):
        # History keeps the address it went to; the owner's escalation keeps the owner's.
        to_person = state == OutboxState.PENDING and "/supplier:S002/" in identity
        expected = NEW if to_person else was
        assert now_to == expected, identity
