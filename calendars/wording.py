"""Dates and times as people read them: in a named zone, never a raw ISO instant.

English (no locale, or any ``en`` locale) is written by hand, as it always was; another locale
is written with Babel (CLDR's patterns for that language and region), and a locale Babel does
not know falls back to its language, then to English, so an odd locale never fails a send.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_datetime_format

from config.locales import fallbacks, parse_locale


def spoken_instant(instant: datetime, zone: ZoneInfo, locale: str | None = None) -> str:
    """Return ``instant`` in ``zone`` with the zone named: ``Monday 20 January 2003, 9:00 PM PST``
    (``fr``: ``lundi 20 janvier 2003, 21:00 PST``).

    The abbreviation is the one in force at that instant (PST in January, PDT in July), so the
    same rule reads right on both sides of a DST change. It stays the abbreviation in every
    language: CLDR has a short localized name for a zone only where it is in common use (fr-CA
    "HNP", fr and de only "-0800"), and its long names ("heure normale du Pacifique
    nord-américain") swamp the sentence; PST is also what the offer's documents, the action
    pages and the feeds say, so a recipient comparing them reads one name.
    """
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} is naive")
    local = instant.astimezone(zone)
    found = babel_locale(locale)
    if found is None:
        hour = local.hour % 12 or 12
        return f"{local:%A} {local.day} {local:%B %Y}, {hour}:{local:%M %p} {local.tzname()}"
    # The locale's own way to join a date and a time ("{1}, {0}"; a quoted literal unquoted
    # as Babel's format_datetime does).
    joined = str(get_datetime_format("full", locale=found)).replace("'", "")
    day = format_date(local.date(), "full", locale=found)
    return joined.replace("{1}", day).replace("{0}", _time(local, found))


def spoken_time(instant: datetime, zone: ZoneInfo, locale: str | None = None) -> str:
    """Return only the time of ``instant`` in ``zone``, as ``spoken_instant`` writes it:
    ``4:30 PM PST`` (``fr``: ``16:30 PST``)."""
    if instant.tzinfo is None:
        raise ValueError(f"{instant.isoformat()} is naive")
    local = instant.astimezone(zone)
    found = babel_locale(locale)
    if found is None:
        return f"{local.hour % 12 or 12}:{local:%M %p} {local.tzname()}"
    return _time(local, found)


def spoken_day(day: date, locale: str | None = None) -> str:
    """Return ``day`` as people read it: ``Friday 10 February 2017`` (``fr``: ``vendredi 10
    février 2017``, ``de``: ``Freitag, 10. Februar 2017``); 29 February is a day like any."""
    found = babel_locale(locale)
    if found is None:
        return f"{day:%A} {day.day} {day:%B %Y}"
    return format_date(day, "full", locale=found)


def _time(local: datetime, found: Locale) -> str:
    # The wall time alone (a naive time: Babel converts nothing), then the
    # abbreviation in force at that instant.
    return f"{format_time(local.time(), 'short', locale=found)} {local.tzname()}"


@lru_cache(maxsize=256)
def babel_locale(locale: str | None) -> Locale | None:
    """Return the Babel locale that writes dates for ``locale`` (``fr-CA``, then ``fr``), or
    None for English: no locale, an ``en`` one, one that is not a locale, or one Babel does
    not know (``xx``). Cached: Babel reads its data files once per locale."""
    if not locale:
        return None
    try:
        tried = fallbacks(parse_locale(locale))
    except ValueError:  # stored by hand, not through an import: the default, English
        return None
    if tried[-1] == "en":  # English stays the hand-written form, whatever the region
        return None
    for candidate in tried:
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return None
