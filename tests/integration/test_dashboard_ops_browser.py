"""The operator pages in a real browser: Debian's Chromium driven by Playwright, signed in
through the login form. An operator corrects a refused address and retries the failed
delivery until the SMTP sink takes it, downloads the evidence workbook and opens it with
openpyxl, and records a CMRT that came by post; a viewer's operator action is refused and
changes nothing. Screenshots at desktop and phone widths go to ``tests/artifacts/dashboard-*``.

No browser can be downloaded here: the test uses the system's ``/usr/bin/chromium`` and is
skipped, saying so, without it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, Page

from jobs.export import COLUMNS
from jobs.storage.db import OutboxMessage, OutboxState
from tests.dashboard_desk import CMRT, FIXED, GONE, PASSWORD, Desk, opened
from tests.integration.test_action_browser import CHROMIUM, DESKTOP, shoot
from tests.integration.test_action_browser import browser as browser  # the fixture

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see .ci/run)",
)


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[Desk]:
    with opened(db_url, tmp_path) as made:
        yield made


def signed_in(browser: Browser, desk: Desk, username: str, path: str) -> Page:
    """Return a page of a new browser context, signed in as ``username``, showing ``path``."""
    page = browser.new_context(viewport=DESKTOP, accept_downloads=True).new_page()
    page.goto(desk.server.url + path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(desk.server.url + path)
    return page


def failed(desk: Desk) -> OutboxMessage:
    [row] = [m for m in desk.rows(OutboxState.FAILED) if m.recipient == GONE]
    return row


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_viewer_sees_but_an_operator_action_is_refused(browser: Browser, desk: Desk) -> None:
    message = failed(desk)
    page = signed_in(browser, desk, "victor", "/dashboard/deliveries")
    try:
        assert "550 all recipients refused" in page.inner_text("main")
        assert page.get_by_role("button", name="Retry").count() == 0
        page.goto(desk.server.url + f"/dashboard/messages/{message.id}")
        csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
        # What a viewer's browser would send if the button were there.
        refused = page.request.post(
            desk.server.url + f"/dashboard/messages/{message.id}/retry",
            form={"csrf": csrf or ""},
            max_redirects=0,
        )
        assert refused.status == 403 and "needs the operator role" in refused.text()
        page.goto(desk.server.url + "/dashboard/record")
        assert "Not allowed" in page.inner_text("h1")
        shoot(page, "dashboard-viewer-refused")
    finally:
        page.context.close()
    assert failed(desk).state == OutboxState.FAILED and desk.events("message_retried") == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_operator_fixes_a_failed_delivery_exports_and_records_by_hand(
    browser: Browser, desk: Desk, tmp_path: Path
) -> None:
    message = failed(desk)
    page = signed_in(browser, desk, "alice", "/dashboard/deliveries")
    try:
        shoot(page, "dashboard-deliveries")
        page.get_by_role("link", name=str(message.id), exact=True).click()
        assert "no such user" in page.inner_text("main")
        page.get_by_label("Correct supplier:S002's email").fill(FIXED)
        page.get_by_label("Reason (kept in the log)").last.fill("new contact, by phone")
        page.get_by_role("button", name="Correct the address").click()
        assert "Address corrected" in page.inner_text("main")
        shoot(page, "dashboard-deliveries-message")
        page.get_by_role("button", name="Retry").click()
        assert "Retried" in page.inner_text("main")
        desk.deliver()
        page.reload()
        assert "sent" in page.inner_text("h1") and "250" in page.inner_text("main")
        shoot(page, "dashboard-deliveries-sent")
        assert any(FIXED in r.rcpt_tos for r in desk.smtp.recorder.received)

        page.goto(desk.server.url + "/dashboard/exports")
        shoot(page, "dashboard-exports")
        section = page.locator("section", has_text="Conflict minerals RY2016")
        with page.expect_download() as download:
            section.get_by_role("link", name="Evidence (Excel)").click()
        assert download.value.suggested_filename == f"{CMRT}-evidence-20170124.xlsx"
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        book = openpyxl.load_workbook(saved, read_only=True)
        rows = list(book["Obligations"].iter_rows(values_only=True))
        assert list(rows[0]) == COLUMNS and len(rows) == 3

        page.goto(desk.server.url + "/dashboard/record")
        page.get_by_label("Program").select_option(CMRT)
        page.get_by_label("What came back").select_option("response")
        page.get_by_label("Person (KIND:ID)").fill("supplier:S999")
        page.get_by_label("Reason").fill("CMRT arrived by post")
        page.get_by_role("button", name="Record").click()
        assert "No supplier with id 'S999'" in page.inner_text("main")
        shoot(page, "dashboard-record-refused")
        page.get_by_label("Person (KIND:ID)").fill("supplier:S001")
        page.get_by_role("button", name="Record").click()
        assert "Recorded cmrt response of supplier:S001" in page.inner_text("main")
        shoot(page, "dashboard-record")
        [fact] = desk.events("cmrt_response")
        assert (fact.actor, fact.payload["reason"]) == ("user:alice", "CMRT arrived by post")

        page.goto(desk.server.url + "/dashboard/calendar")
        assert "Friday 10 February 2017" in page.inner_text("main")
        shoot(page, "dashboard-calendar")
    finally:
        page.context.close()
    assert desk.clock() == datetime(2017, 1, 24, 12, tzinfo=UTC)
