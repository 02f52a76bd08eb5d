"""The dashboard in a real browser (Debian's Chromium through Playwright) over a real socket:
a viewer and an operator sign in and walk the overview, the 2016 CMRT survey with its 223
demo suppliers, and a person. Screenshots at desktop and phone widths go to
``tests/artifacts/dashboard-*.png``. Skipped, saying so, without ``/usr/bin/chromium``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from scheduler.web.http import create_app
from tests.dashboard_demo import CMRT, NOW, PASSWORD, demo
from tests.integration.test_action_browser import ARGS, CHROMIUM, DESKTOP, shoot
from tests.world import FakeClock, LiveServer

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (see .ci/run)",
)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(None)
    service = demo(db_url, tmp_path, public_url=live.url)
    live._app = create_app(service, clock=FakeClock(NOW))
    live.start()
    try:
        yield live
    finally:
        live.close()
        service.engine.dispose()


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    # Its own, after the server: Playwright's sync API runs an event loop on this thread,
    # and the demo's planning (asyncio.run) must be done before it starts, so the action
    # pages' module-wide browser cannot be shared here.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(browser: Browser, server: LiveServer, name: str) -> Page:
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto(f"{server.url}/dashboard/")
    assert page.url.startswith(f"{server.url}/dashboard/login?next=")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{server.url}/dashboard/"
    return page


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_viewer_and_operator_walk_the_dashboard(server: LiveServer, browser: Browser) -> None:
    page = sign_in(browser, server, "vic")
    assert "vic" in page.inner_text("header") and "viewer" in page.inner_text("header")
    survey = page.locator("section.card", has_text="2016")
    assert "224" in survey.inner_text()  # the 223 demo suppliers and the hostile import
    shoot(page, "dashboard-overview")

    page.get_by_role("link", name=survey.locator("h2 a").inner_text()).click()
    assert page.url == f"{server.url}/dashboard/programs/{CMRT}"
    assert page.locator("tbody tr").count() == 50
    shoot(page, "dashboard-program")
    page.get_by_label("Status").select_option("escalated")
    page.get_by_role("button", name="Show").click()
    assert page.locator("tbody tr").count() > 0
    assert set(page.locator("tbody .status").all_inner_texts()) == {"escalated"}
    page.get_by_label("Search").fill("script")
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Show").click()
    [cell] = page.locator("tbody td a").all()
    assert cell.inner_text().startswith('<script>alert("x")</script>')  # shown, not run
    page.goto(f"{server.url}/dashboard/programs/{CMRT}")
    page.get_by_role("link", name="Next page").click()
    assert page.locator("tbody tr").count() == 50

    page.locator("tbody td a").first.click()
    assert page.url.startswith(f"{server.url}/dashboard/people/supplier:")
    assert "Timeline" in page.inner_text("main")
    assert page.get_by_role("button", name="Issue a URL").count() == 0  # a viewer's page
    shoot(page, "dashboard-person")

    operator = sign_in(browser, server, "olga")
    operator.goto(f"{server.url}/dashboard/people/supplier:S001")
    operator.get_by_role("button", name="Issue a URL").click()
    assert "A new feed URL was issued." in operator.inner_text("main")
    assert "/feeds/" in operator.inner_text("code")
    shoot(operator, "dashboard-person-operator")
    operator.get_by_role("button", name="Sign out").click()
    assert operator.url.startswith(f"{server.url}/dashboard/login")
    operator.goto(f"{server.url}/dashboard/")
    assert operator.url.startswith(f"{server.url}/dashboard/login")
