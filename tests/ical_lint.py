"""Lint iCalendar bytes for what real clients need and the parsers let pass.

``icalendar`` and ``ical`` both accept bare LF line endings and overlong lines, and ``ical``
invents a UID and DTSTAMP when they are missing, so a feed can parse in tests and still be
dropped by Google or shifted by Outlook. ``lint_ics`` returns one message per finding; an
empty list means clean.
"""

from __future__ import annotations

import re

MAX_OCTETS = 75
_DURATION = re.compile(r"[+-]?P(\d+W|(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?)")


def lint_ics(data: bytes) -> list[str]:
    """Return the problems found in ``data``, an iCalendar stream."""
    findings: list[str] = []
    if not data.endswith(b"\r\n"):
        findings.append("stream does not end with CRLF")
    physical = data.split(b"\r\n")
    if physical and physical[-1] == b"":
        physical.pop()
    for number, line in enumerate(physical, start=1):
        if b"\n" in line or b"\r" in line:
            findings.append(f"line {number}: bare CR or LF (lines must end in CRLF)")
        if len(line) > MAX_OCTETS:
            findings.append(f"line {number}: {len(line)} octets, more than {MAX_OCTETS}")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            findings.append(f"line {number}: not UTF-8 on its own (a character split by folding)")
    # Unfold as bytes: folding may split a UTF-8 character only if a line is checked alone.
    logical: list[bytes] = []
    for line in re.split(rb"\r\n|\r|\n", data):
        if line[:1] in (b" ", b"\t") and logical:
            logical[-1] += line[1:]
        else:
            logical.append(line)
    findings += _lint_content([line.decode("utf-8", "replace") for line in logical])
    return findings


def split_content_line(line: str) -> tuple[str, dict[str, str], str]:
    """Split an unfolded content line into (NAME, {PARAM: value}, value), minding quotes."""
    segments: list[str] = []
    begin, quoted = 0, False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in ";:":
            segments.append(line[begin:index])
            begin = index + 1
            if char == ":":
                name, *raw_params = segments
                params = {}
                for raw in raw_params:
                    key, _, value = raw.partition("=")
                    params[key.upper()] = value.strip('"')
                return name.upper(), params, line[begin:]
    return line.upper(), {}, ""


def _lint_content(lines: list[str]) -> list[str]:
    findings: list[str] = []
    stack: list[str] = []
    props: list[dict[str, int]] = []
    tzids_used: set[str] = set()
    tzids_declared: set[str] = set()
    calendars = 0
    for line in lines:
        if not line:
            continue
        name, params, value = split_content_line(line)
        if name == "BEGIN":
            stack.append(value.upper())
            props.append({})
            calendars += value.upper() == "VCALENDAR"
            continue
        if name == "END":
            if not stack or stack[-1] != value.upper():
                findings.append(f"END:{value} does not close {stack[-1] if stack else 'anything'}")
                continue
            component, seen = stack.pop(), props.pop()
            findings += _lint_component(component, seen)
            continue
        if not stack:
            findings.append(f"property outside any component: {line[:40]}")
            continue
        props[-1][name] = props[-1].get(name, 0) + 1
        if "TZID" in params:
            tzids_used.add(params["TZID"])
        if name == "TZID" and stack[-1] == "VTIMEZONE":
            tzids_declared.add(value)
        if name == "REFRESH-INTERVAL" and params.get("VALUE", "").upper() != "DURATION":
            findings.append("REFRESH-INTERVAL without VALUE=DURATION")
        if name in {"REFRESH-INTERVAL", "X-PUBLISHED-TTL"} and not _DURATION.fullmatch(value):
            findings.append(f"{name} is not a duration: {value!r}")
        if name == "VERSION" and value != "2.0":
            findings.append(f"VERSION is {value!r}, not 2.0")
    if stack:
        findings.append(f"unclosed components: {stack}")
    if calendars == 0:
        findings.append("no VCALENDAR")
    findings += [f"TZID {tzid!r} has no VTIMEZONE" for tzid in sorted(tzids_used - tzids_declared)]
    return findings


_REQUIRED_ONCE = {
    "VCALENDAR": ("VERSION", "PRODID"),
    "VEVENT": ("UID", "DTSTAMP", "DTSTART"),
    "VTIMEZONE": ("TZID",),
    "STANDARD": ("DTSTART", "TZOFFSETFROM", "TZOFFSETTO"),
    "DAYLIGHT": ("DTSTART", "TZOFFSETFROM", "TZOFFSETTO"),
}


def _lint_component(component: str, seen: dict[str, int]) -> list[str]:
    findings = []
    for name in _REQUIRED_ONCE.get(component, ()):
        if seen.get(name, 0) != 1:
            findings.append(f"{component} has {seen.get(name, 0)} {name} properties, not 1")
    if component == "VEVENT" and "DTEND" in seen and "DURATION" in seen:
        findings.append("VEVENT has both DTEND and DURATION")
    return findings
