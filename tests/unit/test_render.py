"""Email templates: every shipped one renders, overrides win, data cannot break a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.render import TemplateError, render

TEMPLATES = sorted(p.stem for p in (Path(__file__).parents[2] / "jobs" / "templates").glob("*.txt"))
CONTEXT = {
    "program_name": "2003 Stock Option Exchange Program",
    "name": "Pat Quinn",
    "reporting_year": 2016,
    "form_sd_due": "2017-05-31",
    "response_due": "2017-02-10",
    "wave": "wave-1",
    "number": 1,
    "of": 3,
    "supplier": "Acme",
    "supplier_email": "a@example.com",
    "supplier_id": "S001",
    "follow_ups": 3,
    "issues": "Smelter list empty",
    "received": "2017-02-01",
    "title": "Draft report",
    "date": "2017-05-01",
    "days_left": 7,
    "cutoff": "Monday 20 January 2003, 9:00 PM PST",
    "cutoff_utc": "2003-01-21T05:00:00+00:00",
    "grant_date": "2003-07-21",
    "exercise_price_date": "2003-07-18",
    "grants": [
        {
            "grant": "G1",
            "grant_date": "2000-05-20",
            "unexercised": 800,
            "price": "6.00",
            "eligible": True,
            "exchanged": 800,
            "new_shares": 600,
        },
        {
            "grant": "G3",
            "grant_date": "2002-02-28",
            "unexercised": 500,
            "price": "2.18",
            "eligible": False,
            "exchanged": 0,
            "new_shares": 0,
        },
    ],
    "new_shares": 1725,
    "start": "2002-12-19T15:30:00-08:00",
    "end": "2002-12-19T16:30:00-08:00",
    "location": "E-Net conference room, Irvine",
    "dial_in": "(877) 314-3187",
    "sequence": 0,
    "before": "7d",
    "recorded": "2003-01-10T18:00:00+00:00",
    "tranche": 1,
    "tranches": 25,
    "vest_date": "2004-01-21",
    "vesting": [{"date": "2004-01-21", "shares": "863"}, {"date": "2004-02-21", "shares": "35"}],
    "option_expiration": "2013-07-21",
    "shares": 863,
    "cumulative": 863,
    "policy_version": "2017-1",
    "due": "2017-01-31",
    "onboarding": True,
    "person": "Pat Quinn",
    "person_email": "pat@example.com",
    "role": "employee",
    "due_count": 1,
    "overdue_count": 0,
    "failed_count": 0,
    "programs": [{"program": "fcpa", "states": {"pending": 3}}],
    "overdue": [],
    "failed": [],
    # A combined escalation's people (``calendars.escalations``), of either program.
    "escalated": [
        {
            "person": "Pat Quinn",
            "person_email": "pat@example.com",
            "role": "employee",
            "due": "2017-01-31",
            "supplier": "Acme",
            "supplier_email": "a@example.com",
            "supplier_id": "S001",
            "response_due": "2017-02-10",
            "follow_ups": 3,
            "overdue_days": 28,
        }
    ],
}


#: A line of the digest's `due` list, as jobs.digest.digest_context writes it.
DIGEST_DUE = [
    {
        "due": "2017-02-17T17:00:00+00:00",
        "program": "conflict-minerals-2016",
        "what": "CMRT follow up",
        "to": "Acme <a@x>",
    }
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders(template: str) -> None:
    context = CONTEXT
    if template == "digest":  # there `due` is the list of messages due this week
        # (rendered from the real digest_context in tests/integration/test_digest.py)
        context = CONTEXT | {"due": DIGEST_DUE}
    out = render(template, context)
    assert out.subject and "\n" not in out.subject
    assert out.text.strip()
    assert out.html.startswith("<!doctype html>")


def test_slide_9_lines_in_the_announcement() -> None:
    text = render("offer_announcement", CONTEXT).text
    assert "800 exchanged for new options on 600 shares" in text
    assert "not eligible" in text
    assert "new options on 1725 shares" in text


def test_data_cannot_add_a_header_or_markup() -> None:
    context = CONTEXT | {"reporting_year": "2016\r\nBcc: evil@example.com", "name": "<b>x</b>"}
    out = render("cmrt_follow_up", context)
    assert "\r" not in out.subject and "\n" not in out.subject
    assert "<b>x</b>" not in out.html and "&lt;b&gt;x&lt;/b&gt;" in out.html


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    with pytest.raises(TemplateError, match="cutoff"):
        render("cutoff_reminder", {"name": "x", "program_name": "y", "new_shares": 1})


def test_unknown_template() -> None:
    with pytest.raises(TemplateError, match=r"no template nope\.txt"):
        render("nope", CONTEXT)


def test_a_deployment_overrides_a_template(tmp_path: Path) -> None:
    (tmp_path / "fcpa_request.txt").write_text(
        "Subject: Sign it, {{ name }}\nPlease sign by {{ due }}.\n"
    )
    (tmp_path / "fcpa_request.html").write_text("<p>Sign by {{ due }}, {{ name }}</p>")
    out = render("fcpa_request", CONTEXT | {"name": "<Pat>"}, tmp_path)
    assert out.subject == "Sign it, <Pat>"
    assert out.text == "Please sign by 2017-01-31.\n"
    assert out.html == "<p>Sign by 2017-01-31, &lt;Pat&gt;</p>"
    # the others still come from the shipped set
    assert render("fcpa_reminder", CONTEXT, tmp_path).subject.startswith("Reminder")


def test_a_template_without_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("Hello\n")
    with pytest.raises(TemplateError, match="Subject"):
        render("digest", CONTEXT, tmp_path)
