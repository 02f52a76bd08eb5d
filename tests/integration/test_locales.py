"""Emails in the contact's language: a ``locale`` imported with the people, templates looked
up in that locale's folder (the deployment's, then the shipped ones), English the fallback.

End to end on both databases: a CSV import, the real FCPA planner, delivery to the aiosmtpd
sink, the received MIME parsed. The second locale is a test folder of French templates.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from jobs.imports import ImportErrors, import_csv
from jobs.storage.db import Person, begin_write
from scheduler.daemon.service import Service
from tests.smtp_sink import Server, sinks
from tests.world import PROGRAMS, settings

FCPA = [p for p in PROGRAMS if p.id == "fcpa"]
NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")
HEADER = "external_id,name,email,role,start_date"

FRENCH = """\
Subject: Accusé de réception de la politique FCPA ({{ policy_version }}) avant le {{ due|day }}
Bonjour {{ name }},

Merci de lire la politique anticorruption (FCPA), version {{ policy_version }}, et d'en accuser
réception.
{% if action_url is defined %}
Pour la lire et en accuser réception, ouvrez ce lien (sans compte) :
{{ action_url }}
{% endif %}
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A deployment's template folder holding one French template, nothing else."""
    folder = tmp_path / "templates"
    (folder / "fr").mkdir(parents=True)
    (folder / "fr" / "fcpa_request.txt").write_text(FRENCH, encoding="utf-8")
    return folder


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


def people_csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "third-parties.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def received(smtp: Server, to: str) -> list[EmailMessage]:
    """Return the FCPA requests ``to`` received (the reminders are left out)."""
    out = []
    for r in smtp.recorder.received:
        if r.rcpt_tos == [to] and b"/request\r\n" in r.content:
            message = email.message_from_bytes(r.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            out.append(message)
    return out


def text_of(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def test_a_contacts_locale_picks_their_templates(
    db_url: str, tmp_path: Path, templates: Path, smtp: Server
) -> None:
    service = Service(
        settings(db_url, tmp_path, template_dir=templates),
        FCPA,
        transport=smtp.transport(),
    )
    try:
        rows = [
            "T101,Agence Lumière,t101@example.com,distributor,2026-02-02,fr-ca",  # -> fr
            "T102,Harbor Agents,t102@example.com,agent,2026-02-02,",  # no locale: English
            "T103,Dresdner Vertrieb,t103@example.com,consultant,2026-02-02,de",  # no de: English
        ]
        path = people_csv(tmp_path, rows, HEADER + ",locale")
        with service.factory() as session:
            import_csv(session, "third-parties", path, now=NOW, actor="test")
        with service.factory() as session:
            stored = dict(session.execute(select(Person.external_id, Person.locale)).all())
        assert stored == {"T101": "fr-CA", "T102": None, "T103": "de"}

        async def tick() -> None:
            await service.plan(NOW)
            await service.deliver(NOW)
            await service.transport.close()

        asyncio.run(tick())
        [french] = received(smtp, "t101@example.com")
        assert french["Subject"] == (
            "Accusé de réception de la politique FCPA (2017-1) avant le mercredi 4 mars 2026"
        )
        assert "Bonjour Agence Lumière," in text_of(french)
        # The HTML part is the shipped layout around the French text.
        html = text_of(french, "html")
        assert html.startswith("<!doctype html>") and "Merci de lire la politique" in html
        for english in ("t102@example.com", "t103@example.com"):
            [message] = received(smtp, english)
            assert "FCPA" in message["Subject"] and "Accusé" not in message["Subject"]
            assert "Bonjour" not in text_of(message)
    finally:
        service.engine.dispose()


def test_a_file_without_the_column_keeps_each_locale(db_url: str, tmp_path: Path) -> None:
    service = Service(settings(db_url, tmp_path), FCPA)
    try:
        first = people_csv(
            tmp_path, ["T101,A,t101@example.com,agent,2026-02-02,fr"], HEADER + ",locale"
        )
        with service.factory() as session:
            import_csv(session, "third-parties", first, now=NOW, actor="test")
        again = people_csv(tmp_path, ["T101,A renamed,t101@example.com,agent,2026-02-02"])
        with service.factory() as session:
            import_csv(session, "third-parties", again, now=NOW + timedelta(hours=1), actor="t")
        with service.factory() as session:
            person = session.scalars(select(Person)).one()
        assert (person.name, person.locale) == ("A renamed", "fr")
    finally:
        service.engine.dispose()


@pytest.mark.parametrize("bad", ["french", "fr/../x", "f", "fr-CAN", "../en"])
def test_a_bad_locale_is_refused_naming_row_and_column(
    db_url: str, tmp_path: Path, bad: str
) -> None:
    service = Service(settings(db_url, tmp_path), FCPA)
    try:
        path = people_csv(
            tmp_path,
            [
                "T101,A,t101@example.com,agent,2026-02-02,fr",
                f"T102,B,t102@example.com,agent,2026-02-02,{bad}",
            ],
            HEADER + ",locale",
        )
        with service.factory() as session, pytest.raises(ImportErrors) as caught:
            import_csv(session, "third-parties", path, now=NOW, actor="test")
        [error] = caught.value.errors
        assert (error.row, error.column) == (3, "locale")
        assert f"{bad!r} is not a locale such as 'en', 'fr' or 'fr-CA'" in error.message
        with begin_write(service.factory) as session:
            assert session.scalars(select(Person)).all() == []  # nothing written
    finally:
        service.engine.dispose()
