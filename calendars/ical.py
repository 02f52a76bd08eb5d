"""Render events to iCalendar bytes: subscribable feeds and meeting invitations.

Pure functions: no I/O and no clock. Every time written comes from the inputs (DTSTAMP is the
stored time of the event's last change), so the same inputs always give the same bytes and a
feed's ETag only changes when its content does.

Feeds follow RFC 5545 and RFC 7986 plus the X-WR-* and X-APPLE-* names older clients read;
invitations follow iTIP (RFC 5546). Timed events are written in their local zone with a TZID,
and every TZID gets a VTIMEZONE built here from the IANA database (see ``build_vtimezone``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import getaddresses
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone, TimezoneDaylight, TimezoneStandard, vCalAddress
from icalendar import Event as VEvent
from icalendar.prop import vDuration, vText

from calendars.events import Event
from config.emails import parse_email

DEFAULT_PRODID = "-//Tickler//Tickler Compliance Calendar//EN"

_COLOR = re.compile(r"#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3}|[a-zA-Z]{3,30}")
# RFC 5545 TEXT allows no control character but HTAB; line breaks are written as "\n".
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_BYDAY = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedItem:
    """One event as published: its revision (``sequence``), stored change time and status.

    ``last_modified`` must be aware; it is written in UTC as both DTSTAMP and LAST-MODIFIED.
    """

    event: Event
    sequence: int = 0
    last_modified: datetime
    cancelled: bool = False

    def __post_init__(self) -> None:
        if self.last_modified.tzinfo is None:
            raise ValueError(f"{self.event.uid}: naive last_modified")
        if self.sequence < 0:
            raise ValueError(f"{self.event.uid}: negative sequence")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedMeta:
    """Calendar-level properties of a feed (name, colour, how often clients should poll)."""

    name: str
    description: str = ""
    color: str | None = None
    refresh: timedelta = timedelta(hours=1)
    timezone: str | None = None
    prodid: str = DEFAULT_PRODID

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("feed name must not be empty")
        if self.color is not None and not _COLOR.fullmatch(self.color):
            raise ValueError(f"color {self.color!r} is not a CSS3 colour name or #hex value")
        if self.refresh <= timedelta(0):
            raise ValueError("refresh must be a positive duration")
        if self.timezone is not None:
            ZoneInfo(self.timezone)  # raises for an unknown zone


def render_feed(items: Iterable[FeedItem], meta: FeedMeta) -> bytes:
    """Render ``items`` as a METHOD:PUBLISH calendar, events in ``Event.sort_key()`` order."""
    ordered = sorted(items, key=lambda item: item.event.sort_key())
    counts = Counter(item.event.uid for item in ordered)
    if duplicates := sorted(uid for uid, count in counts.items() if count > 1):
        raise ValueError(f"duplicate uids in feed: {', '.join(duplicates)}")

    cal = _calendar(meta.prodid, "PUBLISH")
    # Not icalendar's calendar_name / description setters: they write the X-WR-* twins (and
    # NAME) as raw strings, so a line break in a program's or a person's name would start a
    # new content line (or fail an assert, a 500, unless Python runs with -O).
    name = _calendar_text(meta.name, one_line=True)
    cal.add("NAME", name)
    cal.add("X-WR-CALNAME", name)
    if meta.description:
        description = _calendar_text(meta.description, one_line=False)
        cal.add("DESCRIPTION", description)
        cal.add("X-WR-CALDESC", description)
    if meta.color:
        cal.add("COLOR", meta.color)
        cal.add("X-APPLE-CALENDAR-COLOR", meta.color)
    # icalendar's refresh_interval setter omits VALUE=DURATION, which RFC 7986 requires.
    cal.add("REFRESH-INTERVAL", vDuration(meta.refresh), parameters={"VALUE": "DURATION"})
    # A bare timedelta would serialise as "1:00:00"; vDuration gives "PT1H".
    cal.add("X-PUBLISHED-TTL", vDuration(meta.refresh))
    if meta.timezone:
        cal.add("X-WR-TIMEZONE", meta.timezone)
    for item in ordered:
        cal.add_component(_vevent(item, cancelled=item.cancelled))
    return _finish(cal, [item.event for item in ordered])


def render_invitation(
    item: FeedItem,
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer: str,
    attendees: Sequence[str],
    meta_prodid: str = DEFAULT_PRODID,
) -> bytes:
    """Render an iTIP invitation (REQUEST) or cancellation (CANCEL) for one event.

    ``organizer`` and ``attendees`` are addresses, optionally with a display name
    (``"Jane Roe <jane@example.com>"``). The caller bumps ``item.sequence`` for every update
    and for the cancellation, keeping the uid. DTSTAMP is ``item.last_modified``: the time
    of the change the message announces, so a resend gives the same bytes.
    """
    if method == "REQUEST" and item.cancelled:
        raise ValueError(f"{item.event.uid}: a cancelled item is sent with method CANCEL")
    if not attendees:
        raise ValueError(f"{item.event.uid}: an invitation needs at least one attendee")
    cal = _calendar(meta_prodid, method)
    vevent = _vevent(item, cancelled=method == "CANCEL")
    vevent.add("ORGANIZER", _address(organizer, {}))
    # A cancellation asks for no reply, so only a REQUEST carries RSVP and PARTSTAT.
    params = {"ROLE": "REQ-PARTICIPANT", "CUTYPE": "INDIVIDUAL"}
    if method == "REQUEST":
        params |= {"RSVP": "TRUE", "PARTSTAT": "NEEDS-ACTION"}
    seen: set[str] = set()
    for attendee in attendees:
        address = _address(attendee, params)
        if address.lower() not in seen:
            seen.add(address.lower())
            vevent.add("ATTENDEE", address)
    cal.add_component(vevent)
    return _finish(cal, [item.event])


def default_description(event: Event) -> str:
    """Say what the event asks for and by when, for events stored without a description."""
    if isinstance(event.start, datetime) and isinstance(event.end, datetime):
        zone = ZoneInfo(event.timezone)
        start, end = event.start.astimezone(zone), event.end.astimezone(zone)
        day = f"{_WEEKDAYS[start.weekday()]} {start.date().isoformat()}"
        abbr = start.tzname() or event.timezone
        if end == start:
            when = f"By {start:%H:%M} {abbr} on {day} ({event.timezone})."
        else:
            when = f"{day}, {start:%H:%M} to {end:%H:%M} {abbr} ({event.timezone})."
    else:
        last = max(event.start, event.end - _DAY)
        day = f"{_WEEKDAYS[event.start.weekday()]} {event.start.isoformat()}"
        if last == event.start:
            when = f"Due by the end of {day}."
        else:
            when = f"From {day} through {_WEEKDAYS[last.weekday()]} {last.isoformat()}."
    return f"{event.title}\n{when}\nProgram: {event.program}"


def build_vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone:
    """Build a VTIMEZONE for ``tzid`` valid for local times from ``first_year`` to ``last_year``.

    The rules in force in ``last_year`` are written as open-ended yearly RRULEs, like the
    VTIMEZONEs of Google and Exchange, rather than the RDATE lists of ``icalendar``'s
    ``add_missing_timezones``: Outlook ignores RDATE observances and shifts events by an hour.
    Rules that ended earlier (the US rules before 2007) are listed with RDATE instead of an
    RRULE with a UTC UNTIL, which RFC 5545 demands but dateutil rejects next to a local
    DTSTART (dateutil#1006), breaking the ``ical`` package and others that hand it to
    dateutil. Onsets are in the local time before the change (02:00 for both US changes), as
    in RFC 5545's examples; a change that fits no "n-th or last weekday" rule stands alone.
    """
    tz = Timezone()
    tz.add("TZID", tzid)
    for obs in _observances(tzid, first_year, last_year):
        component = TimezoneDaylight() if obs.daylight else TimezoneStandard()
        component.add("DTSTART", obs.onset)
        if obs.rule is not None:
            rrule: dict[str, object] = {"FREQ": "YEARLY", "BYMONTH": obs.onset.month}
            rrule["BYDAY"] = f"{obs.rule}{_BYDAY[obs.onset.weekday()]}"
            component.add("RRULE", rrule)
        if obs.rdates:
            component.add("RDATE", list(obs.rdates))
        component.add("TZNAME", obs.name)
        component.add("TZOFFSETFROM", obs.offset_from)
        component.add("TZOFFSETTO", obs.offset_to)
        tz.add_component(component)
    return tz


def _calendar_text(value: str, *, one_line: bool) -> vText:
    """Return ``value`` as an escaped TEXT value, without control characters.

    A name is a one-line label in every client, so its line breaks become spaces; a
    description keeps them (escaped as ``\\n``).
    """
    text = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    return vText(" ".join(text.split()) if one_line else text)


def _calendar(prodid: str, method: str) -> Calendar:
    cal = Calendar()
    cal.add("PRODID", prodid)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", method)
    return cal


def _vevent(item: FeedItem, *, cancelled: bool) -> VEvent:
    event = item.event
    vevent = VEvent()
    vevent.add("UID", event.uid)
    stamp = item.last_modified.astimezone(UTC)
    vevent.add("DTSTAMP", stamp)
    vevent.add("LAST-MODIFIED", stamp)
    vevent.add("SEQUENCE", item.sequence)
    if isinstance(event.start, datetime) and isinstance(event.end, datetime):
        zone = ZoneInfo(event.timezone)
        vevent.add("DTSTART", event.start.astimezone(zone))
        # A cutoff is an instant to act by, not time to block; a meeting blocks time. RFC 5545
        # gives an instant no DTEND (calcurse skips DTEND equal to DTSTART as "end must be
        # later than start").
        transparent = event.end == event.start
        if not transparent:
            vevent.add("DTEND", event.end.astimezone(zone))
    else:
        vevent.add("DTSTART", event.start)
        # RFC 5545 wants DTEND after DTSTART: a zero-length all-day event covers its day.
        vevent.add("DTEND", max(event.end, event.start + _DAY))
        transparent = True
    vevent.add("SUMMARY", event.title)
    vevent.add("DESCRIPTION", event.description or default_description(event))
    if event.location:
        vevent.add("LOCATION", event.location)
    vevent.add("CATEGORIES", [event.program, str(event.kind)])
    vevent.add("STATUS", "CANCELLED" if cancelled else "CONFIRMED")
    vevent.add("TRANSP", "TRANSPARENT" if transparent else "OPAQUE")
    return vevent


def _finish(cal: Calendar, events: Sequence[Event]) -> bytes:
    """Add a VTIMEZONE per TZID used, in name order (so bytes do not depend on set order)."""
    years: dict[str, set[int]] = {}
    for event in events:
        if isinstance(event.start, datetime) and isinstance(event.end, datetime):
            zone = ZoneInfo(event.timezone)
            local = (event.start.astimezone(zone), event.end.astimezone(zone))
            years.setdefault(event.timezone, set()).update(dt.year for dt in local)
    for position, tzid in enumerate(sorted(cal.get_used_tzids())):
        cal.subcomponents.insert(
            position, build_vtimezone(tzid, min(years[tzid]), max(years[tzid]))
        )
    if missing := cal.get_missing_tzids():
        raise AssertionError(f"TZIDs without VTIMEZONE: {sorted(missing)}")
    data: bytes = cal.to_ical()
    return data


def _address(text: str, params: dict[str, str]) -> vCalAddress:
    """Return ``text`` (one address, with or without a display name) as a mailto: address."""
    # getaddresses silently drops what follows a line break, and parseaddr keeps only the first
    # of several addresses: refuse both rather than invite someone else.
    parsed = getaddresses([text])
    if any(ord(char) < 32 or char == "\x7f" for char in text) or len(parsed) != 1:
        raise ValueError(f"not an email address: {text!r}")
    [(name, email)] = parsed
    parse_email(email)  # the rule every address was checked by when it came in
    address = vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = name
    for key, value in params.items():
        address.params[key] = value
    return address


@dataclass(frozen=True, slots=True, kw_only=True)
class _Observance:
    daylight: bool
    onset: datetime  # naive local time before the change, as VTIMEZONE DTSTART wants
    offset_from: timedelta
    offset_to: timedelta
    name: str
    rule: int | None = None  # BYDAY ordinal (1..4, -1 = last) of a rule still in force
    rdates: tuple[datetime, ...] = ()  # later onsets of a rule that has ended


_State = tuple[timedelta, timedelta, str]  # utcoffset, dst, tzname


def _state(zone: ZoneInfo, at: datetime) -> _State:
    local = at.astimezone(zone)
    return (local.utcoffset() or timedelta(0), local.dst() or timedelta(0), local.tzname() or "")


def _transitions(zone: ZoneInfo, start: datetime, stop: datetime) -> list[tuple[datetime, _State]]:
    """Return (instant, state before it) for each change of zone state in [start, stop)."""
    found: list[tuple[datetime, _State]] = []
    at, state = start, _state(zone, start)
    while at < stop:
        step = min(_DAY, stop - at)
        if _state(zone, at + step) == state:
            at += step
            continue
        lo, hi = 0, int(step.total_seconds())  # state changes within (lo, hi] seconds
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _state(zone, at + timedelta(seconds=mid)) == state else (lo, mid)
        at += timedelta(seconds=hi)
        found.append((at, state))
        state = _state(zone, at)
    return found


def _is_daylight(offset_before: timedelta, after: _State) -> bool:
    """Call the higher offset of a pair daylight time, as Outlook expects.

    zoneinfo reports Europe/Dublin's winter GMT as negative DST (Irish Standard Time is the
    summer one); labelling by offset keeps one STANDARD and one DAYLIGHT per year.
    """
    offset, dst, _ = after
    return offset > offset_before if offset != offset_before else dst > timedelta(0)


def _ordinals(day: date) -> frozenset[int]:
    """Return the BYDAY ordinals that select ``day`` within its month (n-th and maybe last)."""
    last = (day + timedelta(days=7)).month != day.month
    return frozenset({(day.day - 1) // 7 + 1, *([-1] if last else [])})


@functools.lru_cache(maxsize=128)
def _observances(tzid: str, first_year: int, last_year: int) -> tuple[_Observance, ...]:
    """Return the observances of ``tzid`` from the year before ``first_year`` to ``last_year``.

    Each change of offset, DST flag or abbreviation found in the IANA data is one onset; onsets
    that recur in consecutive years on the same weekday rule (for instance "second Sunday of
    March at 02:00") are merged into one observance.
    """
    zone = ZoneInfo(tzid)
    # Scan from a year early so local times in first_year follow at least one onset.
    start = datetime(first_year - 1, 1, 1, tzinfo=UTC)
    stop = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    changes = _transitions(zone, start, stop)
    if not changes or changes[0][0].year >= first_year:
        offset, dst, name = _state(zone, start)
        changes.insert(0, (start, (offset, dst, name)))  # the state in force at the start

    # Group yearly repetitions of the same change into runs of (onset, BYDAY ordinals).
    runs: list[tuple[_Observance, list[tuple[datetime, frozenset[int]]]]] = []
    open_runs: dict[tuple[object, ...], int] = {}  # key -> index into runs
    for at, before in changes:
        after = _state(zone, at)
        onset = (at + before[0]).replace(tzinfo=None)
        template = _Observance(
            daylight=_is_daylight(before[0], after),
            onset=onset,
            offset_from=before[0] if at != start else after[0],
            offset_to=after[0],
            name=after[2],
        )
        change = (template.daylight, template.offset_from, template.offset_to, template.name)
        key = (*change, onset.month, onset.weekday(), onset.time())
        ordinals = _ordinals(onset.date())
        index = open_runs.get(key)
        if index is not None and at != start:
            last_onset, last_ordinals = runs[index][1][-1]
            if last_onset.year == onset.year - 1 and last_ordinals & ordinals:
                runs[index][1].append((onset, last_ordinals & ordinals))
                continue
        open_runs[key] = len(runs)
        runs.append((template, [(onset, ordinals)]))

    result: list[_Observance] = []
    for template, occurrences in runs:
        final_onset, ordinals = occurrences[-1]
        if len(occurrences) == 1:
            result.append(template)
        elif final_onset.year == last_year:
            rule = -1 if -1 in ordinals else min(ordinals)
            result.append(dataclasses.replace(template, rule=rule))
        else:
            rdates = tuple(onset for onset, _ in occurrences[1:])
            result.append(dataclasses.replace(template, rdates=rdates))
    return tuple(result)
