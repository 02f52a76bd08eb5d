"""Emails in the contact's language: a ``locale`` imported with the people, templates looked
up in that locale's folder (the deployment's, then the shipped ones), English the fallback.

End to end on both databases: a CSV import, the real FCPA planner, delivery to the aiosmtpd
sink, the received MIME parsed. The second locale is a test folder of French templates (a
request and the HTML layout, whose button and document link it translates); dates are written
in the language of the template that was used.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from config.programs import Fcpa
from jobs.imports import ImportErrors, import_csv
from jobs.storage.db import OutboxMessage, Person, begin_write
from scheduler.daemon.service import Service
from tests.integration.test_message_ids import tick
from tests.smtp_sink import Server, sinks
from tests.world import OFFER, PROGRAMS, seed_people, settings

FCPA = [p for p in PROGRAMS if p.id == "fcpa"]
NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")
SECRET = "action-secret-for-tests-0123456789abcdef"
POLICY = "https://intranet.example.com/policies/fcpa-2017-1.pdf"
# With action links and the policy's address, so the layout has a button and a document link.
LINKED = [Fcpa.model_validate(p.model_dump() | {"policy_url": POLICY}) for p in FCPA]
HEADER = "external_id,name,email,role,start_date"

FRENCH = """\
Subject: Accusé de réception de la politique FCPA ({{ policy_version }}) avant le {{ due|day }}
Bonjour {{ name }},

Merci de lire la politique anticorruption (FCPA), version {{ policy_version }}, et d'en accuser
réception au plus tard le {{ due|day }}.
{% if action_url is defined %}
Pour la lire et en accuser réception, ouvrez ce lien (sans compte) :
{{ action_url }}
{% endif %}
"""


# The shipped layout's labels in French, the English ones the fallback for any other kind.
FRENCH_LAYOUT = """\
<!doctype html>
<html lang="fr">
<body>
{% for block in blocks %}{{ block }}
{% endfor %}{% if document_url %}<p><a href="{{ document_url }}">{{ {"policy_url": "Lire la \
politique"}.get(document, document_label) }}</a></p>
{% endif %}{% if action_url %}<p><a href="{{ action_url }}">{{ {"acknowledge": "Lire la politique \
et en accuser réception"}.get(action, action_label) }}</a></p>
<p>Ou ouvrez cette adresse : {{ action_url }}</p>
{% endif %}</body>
</html>
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A deployment's template folder holding a French request and layout, nothing else."""
    folder = tmp_path / "templates"
    (folder / "fr").mkdir(parents=True)
    (folder / "fr" / "fcpa_request.txt").write_text(FRENCH, encoding="utf-8")
    (folder / "fr" / "layout.html").write_text(FRENCH_LAYOUT, encoding="utf-8")
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
        settings(
            db_url,
            tmp_path,
            template_dir=templates,
            action_secret=SECRET,
            public_url="http://127.0.0.1:8080",
        ),
        LINKED,
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
        text = text_of(french)
        assert "Bonjour Agence Lumière," in text
        assert "réception au plus tard le mercredi 4 mars 2026." in " ".join(text.split())
        # The HTML part is the French layout around the French text: its button and link.
        html = text_of(french, "html")
        assert html.startswith("<!doctype html>") and '<html lang="fr">' in html
        assert "Merci de lire la politique" in html and "mercredi 4 mars 2026" in html
        assert f'<a href="{POLICY}">Lire la politique</a>' in html
        assert ">Lire la politique et en accuser réception</a>" in html
        assert "Ou ouvrez cette adresse : http" in html
        for english in ("t102@example.com", "t103@example.com"):
            [message] = received(smtp, english)
            # No German templates: the English email, its date and button English too.
            assert message["Subject"] == (
                "Please acknowledge the FCPA policy (2017-1) by Wednesday 4 March 2026"
            )
            assert "Bonjour" not in text_of(message)
            html = text_of(message, "html")
            assert '<html lang="en">' in html and f'<a href="{POLICY}">Read the policy</a>' in html
            assert ">Read and acknowledge the policy</a>" in html
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


# The offer's ``cutoff`` is ready-made English; a translation writes the instant itself.
FRENCH_ANNOUNCEMENT = """\
Subject: {{ program_name }} : choisissez avant le {{ cutoff_utc|when }}
Bonjour {{ name }},

Les nouvelles options seraient attribuées le {{ grant_date|day }}.
"""


def test_a_french_offer_announcement_writes_the_cutoff_in_french(
    db_url: str, tmp_path: Path, smtp: Server
) -> None:
    """The real offer planner and delivery: the zone the cutoff is written in is the
    program's (America/Los_Angeles), PST in January, its date and time French."""
    (tmp_path / "templates" / "fr").mkdir(parents=True)
    announcement = tmp_path / "templates" / "fr" / "offer_announcement.txt"
    announcement.write_text(FRENCH_ANNOUNCEMENT, encoding="utf-8")
    offer = [p for p in PROGRAMS if p.id == OFFER]
    opened = datetime.fromisoformat("2002-12-19T17:00:00+00:00")  # 9:00 AM PST on the day
    service = Service(
        settings(db_url, tmp_path, template_dir=tmp_path / "templates"),
        offer,
        transport=smtp.transport(),
    )
    try:
        with begin_write(service.factory) as session:
            seed_people(session, opened)
            session.flush()
            pat = session.scalars(select(Person).where(Person.external_id == "E1001")).one()
            pat.locale = "fr"

        async def tick() -> None:
            await service.plan(opened)
            await service.deliver(opened)
            await service.transport.close()

        asyncio.run(tick())
        [message] = [
            email.message_from_bytes(r.content, policy=email.policy.default)
            for r in smtp.recorder.received
            if r.rcpt_tos == ["e1001@example.com"] and b"/announcement\r\n" in r.content
        ]
        assert message["Subject"] == (
            "2003 Stock Option Exchange Program : choisissez avant le "
            "lundi 20 janvier 2003, 21:00 PST"
        )
        assert isinstance(message, EmailMessage)
        assert "attribuées le lundi 21 juillet 2003." in text_of(message)
    finally:
        service.engine.dispose()


FRENCH_ESCALATION = """\
Subject: Escalade : {{ escalated|length }} sans accusé de réception de la politique FCPA
Bonjour,

Ces personnes n'ont pas accusé réception de la politique FCPA, version {{ policy_version }} :

{% for p in escalated -%}
- {{ p.person }} ({{ p.person_email }}) : dû le {{ p.due|day }}
{% endfor %}
"""

OFFICER = "cfo@example.com"


def test_the_deployment_locale_writes_what_has_no_locale_of_its_own(
    db_url: str, tmp_path: Path, templates: Path, smtp: Server
) -> None:
    """TICKLER_LOCALE=fr: the contact without a locale and the officer's escalation (no person
    locale) are French; an explicit ``en`` and a ``de`` without German templates stay English."""
    (templates / "fr" / "fcpa_escalation.txt").write_text(FRENCH_ESCALATION, encoding="utf-8")
    service = Service(
        settings(db_url, tmp_path, template_dir=templates, locale="fr"),
        FCPA,
        transport=smtp.transport(),
    )
    try:
        rows = [
            "T102,Harbor Agents,t102@example.com,agent,2026-02-02,",  # none: the default, fr
            "T103,Dresdner Vertrieb,t103@example.com,consultant,2026-02-02,de",  # English
            "T104,Boston Partners,t104@example.com,distributor,2026-02-02,EN",  # English
        ]
        path = people_csv(tmp_path, rows, HEADER + ",locale")
        with service.factory() as session:
            import_csv(session, "third-parties", path, now=NOW, actor="test")
        tick(service, smtp, NOW)
        [french] = received(smtp, "t102@example.com")
        assert french["Subject"] == (
            "Accusé de réception de la politique FCPA (2017-1) avant le mercredi 4 mars 2026"
        )
        assert '<html lang="fr">' in text_of(french, "html")
        for english in ("t103@example.com", "t104@example.com"):
            [message] = received(smtp, english)
            assert message["Subject"] == (
                "Please acknowledge the FCPA policy (2017-1) by Wednesday 4 March 2026"
            )
            assert '<html lang="en">' in text_of(message, "html")

        with service.factory() as session:
            due = session.scalars(
                select(OutboxMessage.due_at).where(OutboxMessage.job == "fcpa_escalation")
            ).all()
        first = min(due)  # the onboarding cycle's; the next year's renewal comes later
        assert due.count(first) == 3
        tick(service, smtp, first.replace(tzinfo=first.tzinfo or UTC) + timedelta(minutes=1))
        [escalation] = [
            email.message_from_bytes(r.content, policy=email.policy.default)
            for r in smtp.recorder.received
            if r.rcpt_tos == [OFFICER]
        ]
        assert isinstance(escalation, EmailMessage)
        assert escalation["Subject"] == (
            "Escalade : 3 sans accusé de réception de la politique FCPA"
        )
        text = text_of(escalation)
        for name in ("Harbor Agents", "Dresdner Vertrieb", "Boston Partners"):
            assert f"- {name} (" in text
        assert text.count(": dû le mercredi 4 mars 2026") == 3
        assert '<html lang="fr">' in text_of(escalation, "html")
    finally:
        service.engine.dispose()


def test_tickler_simulate_writes_in_the_deployment_locale(
    db_url: str, tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tickler simulate`` renders as the daemon does: TICKLER_LOCALE reaches its emails."""
    from click.testing import CliRunner

    from scheduler.cli.main import cli

    service = Service(settings(db_url, tmp_path), FCPA)
    try:
        path = people_csv(tmp_path, ["T102,Harbor Agents,t102@example.com,agent,2026-02-02"])
        with service.factory() as session:
            import_csv(session, "third-parties", path, now=NOW, actor="test")
    finally:
        service.engine.dispose()
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    monkeypatch.setenv("TICKLER_TEMPLATE_DIR", str(templates))
    monkeypatch.setenv("TICKLER_LOCALE", "fr")
    maildir = tmp_path / "simulated"
    args = ["simulate", "--from", "2026-03-01", "--to", "2026-03-03", "--maildir", str(maildir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    scratch = Path(result.stdout.split("scratch database: ", 1)[1].split(" ", 1)[0]).parent
    shutil.rmtree(scratch)  # the command's own folder, outside tmp_path
    subjects = [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"]
        for f in (maildir / "new").iterdir()
    ]
    assert (
        "Accusé de réception de la politique FCPA (2017-1) avant le mercredi 4 mars 2026"
        in subjects
    )
