"""The one email rule: a table of addresses, the shipped data, and the API schema's pattern."""

from __future__ import annotations

import csv
import os
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from config.emails import PATTERN, Email, parse_email
from config.loader import default_program_dir
from config.settings import Settings
from jobs.imports import demo_dir


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Build settings without the caller's TICKLER_* variables and away from any ``.env``."""
    for name in list(os.environ):
        if name.upper().startswith("TICKLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


GOOD = [
    "a@b.co",
    "pat.quinn@example.com",
    "cmrt@foxhollow.example",
    "O'Brien@example.ie",
    "first+tag@sub.example.co.uk",
    "x!#$%&'*+/=?^_`{|}~-y@example.com",
    "UPPER@EXAMPLE.COM",
    "a@xn--exmple-cua.com",  # an international domain, in its ASCII form
    "a@b-c.example",
    "1@2a.example",
    "a@b.c0",
    "l" * 64 + "@example.com",
    "a@" + ".".join(["d" * 63] * 3) + ".example",  # 63-character labels, 253 in all
]

# (address, what the error says)
BAD = [
    ("", "it is empty"),
    ("quality at nakamura.example", "a space at position 8"),
    ("b-at-b", "has no @"),
    ("a@b@example.com", "more than one @"),
    ("Ada <ada@example.com>", "a space at position 4"),
    ("<ada@example.com>", "'<' at position 1"),
    ("ada@example.com>", "'>'"),
    ("ada@example.com,eve@example.com", "',' at position 16"),
    ("ada@example.com;eve@example.com", "';'"),
    ("ada@example.com\r\nBcc: eve@example.com", "line break or control character ('\\r')"),
    ("ada@example.com\n", "line break"),
    ("ada\t@example.com", "line break or control character ('\\t')"),
    ("ada\x00@example.com", "control character"),
    ("ada\u2028@example.com", "line break"),
    (" ada@example.com", "a space at position 1"),
    ('"ada lovelace"@example.com', "'\"' at position 1"),
    ("ada(comment)@example.com", "'('"),
    ("@example.com", "nothing before the @"),
    ("ada@", "nothing after the @"),
    (".ada@example.com", "a dot at its start"),
    ("ada.@example.com", "at its end"),
    ("a..da@example.com", "twice in a row"),
    ("l" * 65 + "@example.com", "65 characters long, more than 64"),
    ("zoë@example.com", "must be ASCII"),
    ("a[1]@example.com", "a character an address cannot have"),
    ("ada@localhost", "has no dot"),
    ("ada@example..com", "twice in a row"),
    ("ada@.example.com", "dot at its start"),
    ("ada@example.com.", "at its end"),
    ("ada@-example.com", "'-example' may only hold letters, digits and inner hyphens"),
    ("ada@example-.com", "inner hyphens"),
    ("ada@exa_mple.com", "inner hyphens"),
    ("ada@[192.0.2.1]", "'[192' may only hold"),
    ("ada@192.0.2.1", "does not end in a name"),
    ("ada@example.123", "does not end in a name"),
    ("ada@" + "d" * 64 + ".example", "longer than 63 characters"),
    ("a@" + ".".join(["d" * 63] * 4), "characters long, more than 253"),
    ("ada@exämple.com", "write the domain in its ASCII form: xn--exmple-cua.com"),
    ("a" * 64 + "@" + "b" * 250 + ".example.com", "characters long, more than 320"),
]


@pytest.mark.parametrize("address", GOOD)
def test_good_addresses_are_returned_unchanged(address: str) -> None:
    assert parse_email(address) == address
    # and the API schema's pattern states no stricter rule than the one applied
    assert re.fullmatch(PATTERN, address)


@pytest.mark.parametrize(("address", "reason"), BAD, ids=[repr(a)[:40] for a, _ in BAD])
def test_bad_addresses_say_what_is_wrong(address: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_email(address)
    message = str(caught.value)
    assert message.startswith(f"{address!r} is not an email address: ")
    assert reason in message


def test_the_pattern_refuses_what_the_rule_refuses_except_lengths() -> None:
    lengths = ("characters long", "longer than")
    for address, reason in BAD:
        if not any(word in reason for word in lengths):
            assert not re.fullmatch(PATTERN, address), address


class _Model(BaseModel):
    to: Email
    cc: Email | None = None


def test_the_pydantic_type_applies_the_rule_and_states_the_pattern() -> None:
    assert _Model(to="a@b.example").to == "a@b.example"
    with pytest.raises(ValidationError, match="'b-at-b' is not an email address: it has no @"):
        _Model(to="b-at-b")
    with pytest.raises(ValidationError, match="cc"):
        _Model(to="a@b.example", cc="a@b")
    schema = _Model.model_json_schema()["properties"]["to"]
    schema.pop("title", None)
    assert schema == {"type": "string", "maxLength": 320, "pattern": PATTERN}


def _shipped_addresses() -> list[str]:
    found = []
    for path in sorted(demo_dir().glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                found += [v for k, v in row.items() if k and k.endswith("email") and v]
    for path in sorted(default_program_dir().glob("*.toml")):
        program = tomllib.loads(path.read_text())
        found += [program["compliance_officer"]] if "compliance_officer" in program else []
    fields = Settings.model_fields
    found += [str(fields[n].default) for n in ("compliance_email", "compliance_officer_email")]
    return found


def test_every_shipped_address_is_accepted() -> None:
    addresses = _shipped_addresses()
    assert len(addresses) > 300  # the demo people, their owners and managers, the defaults
    assert [a for a in addresses if _refused(a)] == []


def _refused(address: str) -> bool:
    try:
        parse_email(address)
    except ValueError:
        return True
    return False


def test_the_sender_is_checked_too() -> None:
    assert Settings(mail_from="Zoë Åberg <tickler@example.com>").mail_from.startswith("Zoë")
    assert Settings(mail_from="tickler@example.com").mail_from == "tickler@example.com"
    with pytest.raises(ValidationError, match="mail_from") as caught:
        Settings(mail_from="Tickler <tickler@localhost>")
    assert "'tickler@localhost' is not an email address: the domain 'localhost' has no dot" in str(
        caught.value
    )
    with pytest.raises(ValidationError, match="one line"):
        Settings(mail_from="Tickler\r\nBcc: eve@example.com <tickler@example.com>")
