"""A line break in data never cuts an email subject (issue 10 finding 8).

The subject line of a template is rendered on its own: a program name with a newline folds
into the subject (one space) instead of ending it and pushing its rest into the body.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.mail.mime import OutgoingMessage, mime_bytes
from jobs.render import TemplateError, render
from tests.unit.test_render import CONTEXT, DIGEST_DUE, TEMPLATES

# Every text value but the instants some templates slice (start[:10]).
TEXT_KEYS = sorted(
    k for k, v in CONTEXT.items() if isinstance(v, str) and k not in ("start", "end")
)


def context(template: str, **changes: object) -> dict[str, object]:
    values = CONTEXT | changes
    if template == "digest":  # there `due` is the list of messages due this week
        values["due"] = DIGEST_DUE
    return values


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_line_break_in_any_value_folds_into_the_subject(template: str) -> None:
    for key in TEXT_KEYS:
        broken = render(template, context(template, **{key: "Option\nExchange"}))
        spaced = render(template, context(template, **{key: "Option Exchange"}))
        assert broken.subject == spaced.subject, key
        # and nothing of the subject moved into the body (the body keeps its own line breaks)
        assert broken.text.replace("Option\nExchange", "Option Exchange") == spaced.text, key


def test_the_cutoff_reminder_keeps_its_whole_subject_on_the_wire() -> None:
    name = "2003 Stock Option\r\nExchange Program\nBcc: evil@example.com"
    out = render("cutoff_reminder", CONTEXT | {"program_name": name})
    assert out.subject == (
        "Reminder: the 2003 Stock Option Exchange Program Bcc: evil@example.com closes "
        "Monday 20 January 2003, 9:00 PM PST"
    )
    assert out.text.startswith("Dear Pat Quinn,")
    message = OutgoingMessage(
        message_id="cutoff.1@tickler",
        sender="Tickler <tickler@example.com>",
        to=("pat@example.com",),
        subject=out.subject,
        text=out.text,
    )
    wire = mime_bytes(message, date=datetime(2003, 1, 13, 17, tzinfo=UTC))
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["Subject"] == out.subject
    assert parsed["Bcc"] is None


def test_a_subject_line_must_be_a_template_of_its_own(tmp_path: Path) -> None:
    # A block left open at the end of the Subject line is an error, not a silent mix-up.
    (tmp_path / "digest.txt").write_text("Subject: {% if due_count %}Due\n{% endif %}Body\n")
    with pytest.raises(TemplateError, match=r"digest\.txt"):
        render("digest", CONTEXT, tmp_path)
