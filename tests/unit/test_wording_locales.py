"""Dates in the recipient's language: the seeds' dates in English, French, Canadian French,
German, Latin-American Spanish and a locale Babel does not know; and through render(), the
language of the template folder deciding that of its dates and of the layout's labels, and the
deployment's default locale for a message without one."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from calendars.wording import spoken_day, spoken_instant, spoken_time
from jobs.render import render
from tests.unit.test_render import CONTEXT

LA = ZoneInfo("America/Los_Angeles")
FCPA_DUE = date(2026, 2, 4)  # the FCPA onboarding acknowledgment of the demo
LEAP_DAY = date(2028, 2, 29)
CUTOFF = datetime.fromisoformat("2003-01-21T05:00:00+00:00")  # 9:00 PM PST, the seed's offer
JULY = datetime.fromisoformat("2026-07-15T04:00:00+00:00")  # the same wall time in PDT

ENGLISH = (
    "Wednesday 4 February 2026",
    "Tuesday 29 February 2028",
    "Monday 20 January 2003, 9:00 PM PST",
    "Tuesday 14 July 2026, 9:00 PM PDT",
    "9:00 PM PDT",
)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        # English in every form is written exactly as it always was.
        (None, ENGLISH),
        ("en", ENGLISH),
        ("en-US", ENGLISH),
        ("en-GB", ENGLISH),
        (
            "fr",
            (
                "mercredi 4 février 2026",
                "mardi 29 février 2028",
                "lundi 20 janvier 2003, 21:00 PST",
                "mardi 14 juillet 2026, 21:00 PDT",
                "21:00 PDT",
            ),
        ),
        (
            "fr-CA",  # Canada's own time: 21 h 00
            (
                "mercredi 4 février 2026",
                "mardi 29 février 2028",
                "lundi 20 janvier 2003, 21 h 00 PST",
                "mardi 14 juillet 2026, 21 h 00 PDT",
                "21 h 00 PDT",
            ),
        ),
        (
            "de",
            (
                "Mittwoch, 4. Februar 2026",
                "Dienstag, 29. Februar 2028",
                "Montag, 20. Januar 2003, 21:00 PST",
                "Dienstag, 14. Juli 2026, 21:00 PDT",
                "21:00 PDT",
            ),
        ),
        (
            "es-419",  # a 12-hour clock, CLDR's narrow no-break space before p.m.
            (
                "miércoles, 4 de febrero de 2026",
                "martes, 29 de febrero de 2028",
                "lunes, 20 de enero de 2003, 9:00\u202fp.m. PST",
                "martes, 14 de julio de 2026, 9:00\u202fp.m. PDT",
                "9:00\u202fp.m. PDT",
            ),
        ),
        # A region Babel does not know for a language it does: the language's own form.
        (
            "fr-XX",
            (
                "mercredi 4 février 2026",
                "mardi 29 février 2028",
                "lundi 20 janvier 2003, 21:00 PST",
                "mardi 14 juillet 2026, 21:00 PDT",
                "21:00 PDT",
            ),
        ),
        # A valid locale Babel does not know at all, and one that is no locale: English.
        ("xx", ENGLISH),
        ("fr/../x", ENGLISH),
    ],
)
def test_dates_in_each_locale(locale: str | None, expected: tuple[str, ...]) -> None:
    day, leap, cutoff, july, time = expected
    assert spoken_day(FCPA_DUE, locale) == day
    assert spoken_day(LEAP_DAY, locale) == leap
    assert spoken_instant(CUTOFF, LA, locale) == cutoff
    assert spoken_instant(JULY, LA, locale) == july
    assert spoken_time(JULY, LA, locale) == time


def test_a_naive_instant_is_refused_in_every_locale() -> None:
    for locale in (None, "fr"):
        with pytest.raises(ValueError, match="is naive"):
            spoken_instant(datetime(2003, 1, 20, 21), LA, locale)
        with pytest.raises(ValueError, match="is naive"):
            spoken_time(datetime(2003, 1, 20, 21), LA, locale)


FRENCH_REMINDER = """\
Subject: Rappel : l'offre ferme le {{ cutoff_utc|when }}
Bonjour {{ name }},

La présentation du {{ start|when }} finit à {{ end|time_of_day }}. Accusé dû le {{ due|day }}.
{{ action_url }}
"""

FRENCH_LAYOUT = """\
<html lang="fr">{% for block in blocks %}{{ block }}{% endfor %}
<a href="{{ document_url }}">{{ {"policy_url": "Lire la politique"}.get(document, \
document_label) }}</a>
<a href="{{ action_url }}">{{ {"elect": "Choisir ou se retirer"}.get(action, action_label) }}</a>
</html>
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A deployment's folder: a French reminder and a French layout, nothing else."""
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "cutoff_reminder.txt").write_text(FRENCH_REMINDER, encoding="utf-8")
    (tmp_path / "fr" / "layout.html").write_text(FRENCH_LAYOUT, encoding="utf-8")
    return tmp_path


def context(locale: str | None) -> dict[str, object]:
    return {
        **CONTEXT,
        "locale": locale,
        "timezone": "America/Los_Angeles",
        "due": "2026-02-04",
        "action": "elect",
        "action_url": "https://tickler.example.com/act/x",
        "policy_url": "https://example.com/fcpa.pdf",
    }


def test_a_french_template_writes_french_dates_and_labels(templates: Path) -> None:
    rendered = render("cutoff_reminder", context("fr-CA"), templates)
    # fr/ was found for fr-CA: the dates are Canada's French.
    assert rendered.subject == "Rappel : l'offre ferme le lundi 20 janvier 2003, 21 h 00 PST"
    assert "présentation du jeudi 19 décembre 2002, 15 h 30 PST finit à 16 h 30 PST" in (
        rendered.text
    )
    assert "Accusé dû le mercredi 4 février 2026." in rendered.text
    assert ">Choisir ou se retirer</a>" in rendered.html
    assert ">Lire la politique</a>" in rendered.html
    assert rendered.html.startswith('<html lang="fr">')


def test_a_french_layout_falls_back_to_the_english_label_it_does_not_name(
    templates: Path,
) -> None:
    rendered = render("cutoff_reminder", {**context("fr"), "action": "cmrt"}, templates)
    assert ">Upload your CMRT</a>" in rendered.html


@pytest.mark.parametrize("locale", ["de", "xx", None])
def test_an_english_template_keeps_english_dates_and_frame(
    templates: Path, locale: str | None
) -> None:
    """No template of the contact's language: the English one, its dates and layout English,
    exactly as for a contact without a locale (never "by Mittwoch, 4. Februar 2026")."""
    rendered = render("fcpa_request", context(locale), templates)
    english = render("fcpa_request", context(None))
    assert rendered == english
    assert "by Wednesday 4 February 2026" in rendered.subject
    assert rendered.html.startswith("<!doctype html>")
    assert ">Elect or withdraw</a>" in rendered.html and ">Read the policy</a>" in rendered.html


def test_french_text_without_a_french_layout_keeps_the_shipped_frame(tmp_path: Path) -> None:
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "cutoff_reminder.txt").write_text(FRENCH_REMINDER, encoding="utf-8")
    rendered = render("cutoff_reminder", context("fr"), tmp_path)
    assert rendered.subject == "Rappel : l'offre ferme le lundi 20 janvier 2003, 21:00 PST"
    assert rendered.html.startswith("<!doctype html>")
    assert "Accusé dû le mercredi 4 février 2026." in rendered.html


def test_an_unknown_locale_with_its_own_folder_sends_with_english_dates(tmp_path: Path) -> None:
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "cutoff_reminder.txt").write_text(FRENCH_REMINDER, encoding="utf-8")
    rendered = render("cutoff_reminder", context("xx"), tmp_path)
    assert rendered.subject == "Rappel : l'offre ferme le Monday 20 January 2003, 9:00 PM PST"


# The deployment's default locale (TICKLER_LOCALE): the language of every message whose
# context has no locale of its own; a recipient's own locale, en included, still wins.
FRENCH_SUBJECT = "Rappel : l'offre ferme le lundi 20 janvier 2003, 21:00 PST"
ENGLISH_SUBJECT = (
    "Reminder: the 2003 Stock Option Exchange Program closes Monday 20 January 2003, 9:00 PM PST"
)


@pytest.mark.parametrize("own", [None, "", "../fr", "not a locale"])
def test_a_message_without_a_locale_of_its_own_takes_the_default(
    templates: Path, own: str | None
) -> None:
    """No locale, a blank one or one stored by hand that is none: the default's folder, its
    dates and its layout."""
    rendered = render("cutoff_reminder", context(own), templates, default_locale="fr")
    assert rendered.subject == FRENCH_SUBJECT
    assert "Accusé dû le mercredi 4 février 2026." in rendered.text
    assert rendered.html.startswith('<html lang="fr">')
    assert ">Choisir ou se retirer</a>" in rendered.html


def test_a_regional_default_looks_in_its_language_and_writes_its_region(templates: Path) -> None:
    rendered = render("cutoff_reminder", context(None), templates, default_locale="fr-CA")
    assert rendered.subject == "Rappel : l'offre ferme le lundi 20 janvier 2003, 21 h 00 PST"


@pytest.mark.parametrize("own", ["en", "en-GB", "de", "xx"])
def test_a_recipients_own_locale_wins_whole(templates: Path, own: str) -> None:
    """An explicit ``en``, or a ``de`` with no German templates: the top level (English), as
    without the default, never the default's French (the recipient said what they read)."""
    rendered = render("cutoff_reminder", context(own), templates, default_locale="fr")
    assert rendered == render("cutoff_reminder", context(own), templates)
    assert rendered.subject == ENGLISH_SUBJECT
    assert rendered.html.startswith("<!doctype html>")


def test_a_french_person_under_a_german_default_stays_french(templates: Path) -> None:
    rendered = render("cutoff_reminder", context("fr"), templates, default_locale="de")
    assert rendered.subject == FRENCH_SUBJECT


def test_a_template_the_default_lacks_is_english_with_english_dates(templates: Path) -> None:
    rendered = render("fcpa_request", context(None), templates, default_locale="fr")
    assert rendered == render("fcpa_request", context(None), templates)
    assert "by Wednesday 4 February 2026" in rendered.subject
