"""A contact's locale: what is accepted, how it is written, which folders it tries."""

from __future__ import annotations

import pytest

from config.locales import fallbacks, parse_locale


@pytest.mark.parametrize(
    ("given", "stored", "folders"),
    [
        ("fr", "fr", ["fr"]),
        ("FR", "fr", ["fr"]),
        ("fr-ca", "fr-CA", ["fr-CA", "fr"]),
        ("fr_CA", "fr-CA", ["fr-CA", "fr"]),
        (" pt-BR ", "pt-BR", ["pt-BR", "pt"]),
        ("es-419", "es-419", ["es-419", "es"]),
        ("fil", "fil", ["fil"]),
    ],
)
def test_locales_are_normalised(given: str, stored: str, folders: list[str]) -> None:
    assert parse_locale(given) == stored
    assert fallbacks(stored) == folders


@pytest.mark.parametrize("bad", ["", "f", "french", "fr-", "fr-CAN", "fr/../en", "../en", "fr CA"])
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a locale such as 'en', 'fr' or 'fr-CA'"):
        parse_locale(bad)


def test_no_locale_is_the_default_templates() -> None:
    assert fallbacks(None) == [] and fallbacks("") == []
