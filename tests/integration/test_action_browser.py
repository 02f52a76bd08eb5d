"""The action pages in a real browser: Debian's Chromium driven by Playwright, from the link in
a message caught by the SMTP sink. Screenshots of each page, at phone and desktop widths, go to
``tests/artifacts/`` (kept by CI as test artifacts).

No browser can be downloaded here: the test uses the system's ``/usr/bin/chromium``
(``apt-get install chromium``, as ``.ci/run`` does) and is skipped, saying so, without it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, ViewportSize, sync_playwright

from config.facts import FactKind
from tests.cmrt_workbooks import workbook
from tests.daemon_support import WAVE_1
from tests.integration.conftest import WAVE_CUTOFF, Recipient

CHROMIUM = os.environ.get("TICKLER_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see .ci/run)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    try:
        yield context.new_page()
    finally:
        context.close()


def xlsx(data: bytes) -> FilePayload:
    return {"name": "acme.xlsx", "mimeType": XLSX, "buffer": data}


def shoot(page: Page, name: str) -> None:
    """Save the page as seen on a desktop and on a phone."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_elect_withdraw_and_a_late_election_in_chromium(recipient: Recipient, page: Page) -> None:
    recipient.run()
    [announcement] = recipient.mail("e1001@example.com", "elect before")
    page.goto(recipient.link(announcement))
    assert "Monday 20 January 2003, 9:00 PM PST" in page.inner_text("main")
    shoot(page, "elect")
    page.get_by_role("button", name="Elect to exchange these options").click()
    assert "Your election is recorded" in page.inner_text("h1")
    shoot(page, "elect-recorded")
    page.go_back()
    page.reload()
    page.get_by_role("button", name="Withdraw my election").click()
    assert "Your withdrawal is recorded" in page.inner_text("h1")
    assert [len(recipient.facts(k)) for k in (FactKind.ELECTION, FactKind.WITHDRAWAL)] == [1, 1]

    # The form opened before the cutoff, submitted one minute after it: refused.
    page.go_back()
    page.reload()
    recipient.clock.now = WAVE_CUTOFF + timedelta(minutes=1)
    page.get_by_role("button", name="Elect to exchange these options").click()
    assert "the election cutoff was 2003-01-20 21:00 PST" in page.inner_text("main")
    shoot(page, "elect-refused")
    assert len(recipient.facts(FactKind.ELECTION)) == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_acknowledge_and_upload_cmrts_in_chromium(recipient: Recipient, page: Page) -> None:
    recipient.clock.now = WAVE_1 + timedelta(minutes=1)
    recipient.run()
    [request] = recipient.mail("t001@example.com", "FCPA")
    page.goto(recipient.link(request))
    shoot(page, "acknowledge")
    page.get_by_role("button", name="I have read the policy and will comply with it").click()
    assert "Thank you" in page.inner_text("h1")
    shoot(page, "acknowledge-recorded")
    assert len(recipient.facts(FactKind.FCPA_ACK)) == 1

    [survey] = recipient.mail("s001@example.com", "CMRT")
    link = recipient.link(survey)
    page.goto(link)
    shoot(page, "cmrt")
    incomplete = workbook(blank=("D15", "D51"))
    page.set_input_files("#file", files=xlsx(incomplete))
    page.get_by_role("button", name="Upload and check").click()
    text = page.inner_text("main")
    assert "Declaration!D15: Contact email is required" in text
    shoot(page, "cmrt-incomplete")

    recipient.clock.advance(timedelta(minutes=5))
    page.goto(link)
    page.set_input_files("#file", files=xlsx(workbook()))
    page.get_by_role("button", name="Upload and check").click()
    assert "is complete" in page.inner_text("main")
    shoot(page, "cmrt-complete")
    complete = [r.payload["complete"] for r in recipient.facts(FactKind.CMRT_RESPONSE)]
    assert complete == [False, True]
