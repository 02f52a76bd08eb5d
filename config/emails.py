"""The one rule for an email address, wherever one comes in.

Program files, settings, CSV imports, ``tickler record`` and the JSON API all check addresses
with ``parse_email`` (or the ``Email`` type built on it), so an address accepted by one is
accepted by all, and an error says the same thing everywhere.

The rule is deliberately stricter than RFC 5321/5322 allow, because every stored address ends up
in a ``To:`` header and an SMTP ``RCPT TO``: the common ``local@domain`` form only, with

- exactly one ``@``; at most 320 characters, the local part at most 64 (RFC 5321, 4.5.3.1);
- no whitespace, control characters, ``<``, ``>``, ``,``, ``;``, quotes or parentheses: a name
  or a second address smuggled into a header (header injection) is refused, not cleaned;
- a dot-atom local part (RFC 5322 atext: letters, digits and ``!#$%&'*+/=?^_`{|}~-``, dots
  between them), in ASCII: the transports do not speak SMTPUTF8;
- a domain of at least two dot-separated labels (letters, digits, inner hyphens, at most 63
  each, 253 in all) whose last label starts with a letter, so neither ``localhost`` nor an IP
  address. An international domain is written in its ASCII (``xn--``) form; the error says
  which.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

MAX_LENGTH = 320
MAX_LOCAL = 64
MAX_DOMAIN = 253
MAX_LABEL = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# Characters that end or split an address in a header, or start a display name or comment.
_FORBIDDEN = re.compile(r"[\s<>,;\"()\x00-\x1f\x7f-\x9f]")
# The same rule as one regular expression, without the lengths: what the API's schema states.
# It accepts everything parse_email accepts (so a body the schema refuses is always refused).
PATTERN = (
    rf"^{_ATEXT}+(?:\.{_ATEXT}+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"
)


def parse_email(text: str) -> str:
    """Return ``text`` if it is an address as this module's rule defines; else ValueError.

    The message starts with ``'TEXT' is not an email address`` and says what is wrong. The
    address is returned unchanged (no case folding: the local part is the recipient's).
    """
    reason = _problem(text)
    if reason:
        raise ValueError(f"{text!r} is not an email address: {reason}")
    return text


def _problem(text: str) -> str | None:
    if not text:
        return "it is empty"
    if len(text) > MAX_LENGTH:
        return f"it is {len(text)} characters long, more than {MAX_LENGTH}"
    bad = _FORBIDDEN.search(text)
    if bad:
        char = bad.group()
        if char == " ":
            what = "a space"
        elif char.isspace() or not char.isprintable():
            what = f"a line break or control character ({char!r})"
        else:
            what = repr(char)
        return f"it contains {what} at position {bad.start() + 1}; give the bare address only"
    if "@" not in text:
        return "it has no @"
    local, _, domain = text.rpartition("@")
    if "@" in local:
        return "it has more than one @"
    return _local_problem(local) or _domain_problem(domain)


def _local_problem(local: str) -> str | None:
    if not local:
        return "nothing before the @"
    if len(local) > MAX_LOCAL:
        return f"the part before the @ is {len(local)} characters long, more than {MAX_LOCAL}"
    if not local.isascii():
        return "the part before the @ must be ASCII"
    if not _LOCAL.fullmatch(local):
        if local.startswith(".") or local.endswith(".") or ".." in local:
            return "the part before the @ has a dot at its start, at its end or twice in a row"
        return f"the part before the @ has a character an address cannot have ({local!r})"
    return None


def parse_domain(text: str) -> str:
    """Return ``text`` if it is a domain as an address's must be (the rule above); else
    ValueError saying what is wrong: the right-hand side of a Message-ID, for instance."""
    problem = _domain_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} is not a domain: {problem}")
    return text


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "nothing after the @"
    if not domain.isascii():
        try:
            ascii_form = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return f"the domain {domain!r} is not a valid international domain name"
        return f"write the domain in its ASCII form: {ascii_form}"
    if len(domain) > MAX_DOMAIN:
        return f"the domain is {len(domain)} characters long, more than {MAX_DOMAIN}"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"the domain {domain!r} has no dot (a full domain name is needed)"
    for label in labels:
        if not label:
            return f"the domain {domain!r} has a dot at its start, at its end or twice in a row"
        if len(label) > MAX_LABEL:
            return f"the domain's part {label[:20]!r}... is longer than {MAX_LABEL} characters"
        if not _LABEL.fullmatch(label):
            return f"the domain's part {label!r} may only hold letters, digits and inner hyphens"
    if not labels[-1][0].isalpha():
        return f"the domain {domain!r} does not end in a name (an IP address is not accepted)"
    return None


# For pydantic models: program files, settings, import rows, API bodies. The JSON schema
# states the rule's regular expression so that API clients see it.
Email = Annotated[
    str,
    AfterValidator(parse_email),
    WithJsonSchema({"type": "string", "maxLength": MAX_LENGTH, "pattern": PATTERN}),
]
