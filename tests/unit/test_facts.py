"""One definition of the fact kinds: the CLI, the API, API scopes and the event log agree."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from pydantic import ValidationError

from config.facts import NOUNS, FactKind
from config.settings import Settings
from jobs.storage.snapshot import FACT_KINDS
from scheduler.cli.commands import record_command
from scheduler.web.api import ENDPOINTS, PREFIX

# What the event log has always stored, and what people type: these must not change.
SPELLINGS = [
    (FactKind.CMRT_RESPONSE, "cmrt_response", "response"),
    (FactKind.ELECTION, "election", "election"),
    (FactKind.WITHDRAWAL, "withdrawal", "withdrawal"),
    (FactKind.FCPA_ACK, "fcpa_ack", "acknowledgment"),
    (FactKind.TERMINATION, "termination", "termination"),
    (FactKind.HIRE, "hire", "hire"),
    (FactKind.OFFER_EXTENSION, "offer_extension", "extension"),
    (FactKind.EXTENSION_RETRACTION, "extension_retraction", "retraction"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Build settings without the caller's TICKLER_* variables and away from any ``.env``."""
    for name in list(os.environ):
        if name.upper().startswith("TICKLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(("kind", "stored", "noun"), SPELLINGS, ids=[n for _, _, n in SPELLINGS])
def test_each_kind_has_its_stored_name_and_its_noun(kind: FactKind, stored: str, noun: str) -> None:
    assert kind.value == stored == f"{kind}"
    assert kind.noun == noun
    assert FactKind.from_noun(noun) is kind
    assert FactKind.from_noun(kind) is kind


def test_every_kind_is_listed() -> None:
    assert [k for k, _, _ in SPELLINGS] == list(FactKind)
    assert tuple(n for _, _, n in SPELLINGS) == NOUNS


@pytest.mark.parametrize("text", ["cmrt_response", "responses", "", "Response", 3])
def test_an_unknown_noun_lists_the_choices(text: object) -> None:
    with pytest.raises(ValueError, match=f"{text!r} is not a kind of fact; one of response, "):
        FactKind.from_noun(text)


def test_the_cli_offers_every_noun() -> None:
    argument = next(p for p in record_command.params if p.name == "kind")
    assert isinstance(argument.type, click.Choice)
    assert tuple(argument.type.choices) == NOUNS


def test_the_api_has_one_endpoint_per_kind_named_by_its_noun() -> None:
    assert [e.model.kind for e in ENDPOINTS] == list(FactKind)
    assert [e.path for e in ENDPOINTS] == [f"{PREFIX}/{noun}s" for noun in NOUNS]


def test_api_scopes_are_nouns() -> None:
    tokens = ["kiosk:kiosk-secret-0123456789", "all:all-secret-0123456789"]
    settings = Settings(
        api_tokens=tokens, api_scopes={"kiosk": ["election", "withdrawal"], "all": list(NOUNS)}
    )
    assert settings.api_scopes == {
        "kiosk": [FactKind.ELECTION, FactKind.WITHDRAWAL],
        "all": list(FactKind),
    }
    with pytest.raises(ValidationError, match=r"api_scopes\.kiosk\.1\n.*'fcpa_ack' is not a kind"):
        Settings(api_tokens=tokens[:1], api_scopes={"kiosk": ["election", "fcpa_ack"]})


def test_the_snapshot_reads_every_kind_of_fact_as_stored() -> None:
    assert [stored for _, stored, _ in SPELLINGS] == FACT_KINDS
    assert all(type(k) is str for k in FACT_KINDS)  # plain text for the database drivers
