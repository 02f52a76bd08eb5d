"""The one rule for a contact's locale, the language their emails are written in.

A locale is a language (ISO 639, two or three letters) with, optionally, a region (ISO 3166,
two letters, or a UN M.49 area of three digits): ``fr``, ``fr-CA``, ``es-419``. It is written
back in that form (language lower case, region upper case, ``_`` read as ``-``), and it names
a template folder, so nothing else (no ``/``, no ``..``) can pass.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}|[0-9]{3}))?")


def parse_locale(value: str) -> str:
    """Return ``value`` as a normalised locale (``fr-CA``); ValueError says what is wrong."""
    match = _LOCALE.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not a locale such as 'en', 'fr' or 'fr-CA' "
            "(a language, optionally '-' and a region)"
        )
    language, region = match.groups()
    return language.lower() + (f"-{region.upper()}" if region else "")


def fallbacks(locale: str | None) -> list[str]:
    """Return the template folders to try for ``locale``, most specific first: ``fr-CA`` then
    ``fr``; none for no locale (the shipped English, at the top of the template folders)."""
    if not locale:
        return []
    language = locale.partition("-")[0]
    return [locale] if language == locale else [locale, language]


def _locale(value: object) -> object:
    return parse_locale(value) if isinstance(value, str) else value


#: A locale field of a pydantic model (an import row), checked and normalised.
Locale = Annotated[str, BeforeValidator(_locale)]
