"""The kinds of fact Tickler records: one definition for the CLI, the API, ``record``, the
event log and the planners.

Each kind has two spellings, both fixed here. Its value is what the event log stores and the
planners match on (``cmrt_response``); its noun is what people type and read: ``tickler record
response``, ``POST /api/v1/responses``, ``TICKLER_API_SCOPES='{"hr": ["hire"]}'``. They differ
for three kinds because the log's names came first and must not change under stored rows.

Adding a kind: a member and its noun here, its checks in ``jobs.record``, an API model in
``scheduler.web.api`` (and an option of ``tickler record`` if it has a payload), and the
planners that react to it.
"""

from __future__ import annotations

import enum


class FactKind(enum.StrEnum):
    """A kind of recorded fact; the value is the event log's ``kind``."""

    CMRT_RESPONSE = "cmrt_response"
    ELECTION = "election"
    WITHDRAWAL = "withdrawal"
    FCPA_ACK = "fcpa_ack"
    TERMINATION = "termination"
    HIRE = "hire"
    OFFER_EXTENSION = "offer_extension"
    # Undoes the latest extension while nothing it caused has been sent (``jobs.record``).
    EXTENSION_RETRACTION = "extension_retraction"

    @property
    def noun(self) -> str:
        """Return the name the CLI, the API and API scopes use for this kind."""
        return _NOUNS[self]

    @property
    def words(self) -> str:
        """Return what this kind of fact is, as a compliance officer says it: "CMRT response",
        "withdrawal of the election" (the dashboard's timeline, a withdrawal's reason)."""
        return _WORDS[self]

    @classmethod
    def from_noun(cls, noun: object) -> FactKind:
        """Return the kind named ``noun`` (a kind passes through); ValueError names the choices."""
        if isinstance(noun, FactKind):
            return noun
        if isinstance(noun, str) and noun in _BY_NOUN:
            return _BY_NOUN[noun]
        raise ValueError(f"{noun!r} is not a kind of fact; one of {', '.join(NOUNS)}")


_NOUNS: dict[FactKind, str] = {
    FactKind.CMRT_RESPONSE: "response",
    FactKind.ELECTION: "election",
    FactKind.WITHDRAWAL: "withdrawal",
    FactKind.FCPA_ACK: "acknowledgment",
    FactKind.TERMINATION: "termination",
    FactKind.HIRE: "hire",
    FactKind.OFFER_EXTENSION: "extension",
    FactKind.EXTENSION_RETRACTION: "retraction",
}
_BY_NOUN = {noun: kind for kind, noun in _NOUNS.items()}
_WORDS: dict[FactKind, str] = {
    FactKind.CMRT_RESPONSE: "CMRT response",
    FactKind.ELECTION: "election",
    FactKind.WITHDRAWAL: "withdrawal of the election",
    FactKind.FCPA_ACK: "acknowledgment",
    FactKind.TERMINATION: "departure",
    FactKind.HIRE: "hire",
    FactKind.OFFER_EXTENSION: "offer extension",
    FactKind.EXTENSION_RETRACTION: "retraction of the offer extension",
}


def fact_words(kind: str) -> str | None:
    """Return ``kind`` in words if it is a fact's (``FactKind.words``), else None (an event
    log row of another kind, or of a kind a later version added)."""
    try:
        return FactKind(kind).words
    except ValueError:
        return None


#: The nouns in declaration order: ``tickler record``'s choices.
NOUNS: tuple[str, ...] = tuple(_NOUNS[kind] for kind in FactKind)

#: The API scope that lets a token record a fact as of an earlier time (its ``at`` more than a
#: few minutes before the server's clock): a capability of its own, never implied by a kind.
BACKFILL = "backfill"

#: The API scope that lets a token read (GET people, obligations, messages, events, program
#: calendars). Like backfill, a capability of its own: "*" (every kind of fact) does not imply it.
READ = "read"

#: The API scope that lets a token act on messages (retry, cancel, resend); not implied by "*".
MESSAGES = "messages"

#: The scopes that name no kind of fact.
CAPABILITIES = (BACKFILL, READ, MESSAGES)
