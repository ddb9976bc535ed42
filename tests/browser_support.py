"""What the browser tests share: Debian's Chromium under Playwright, a logged-in session cookie, axe-core, and the
checks every page gets (it fits its window; no serious or critical accessibility violation).

Chromium is /usr/bin/chromium and axe-core .ci/node_modules/axe-core (both installed by .ci/run); a test that needs
one skips without it, unless DRAWBENCH_REQUIRE_SERVICES=1, where it fails.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / ".ci" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERIOUS = ("serious", "critical")
# What sticks out past the window's right edge (for the message of a failed fit).
WIDEST = """() => Array.from(document.querySelectorAll("body *"))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}: ${Math.round(e.getBoundingClientRect().right)} px`)
    .slice(0, 8)"""


def require(path: Path) -> None:
    """Skip the test without `path` (fail under DRAWBENCH_REQUIRE_SERVICES=1)."""
    if not path.exists():
        if os.environ.get("DRAWBENCH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{path} is missing and DRAWBENCH_REQUIRE_SERVICES=1")
        pytest.skip(f"{path} is missing")


@contextmanager
def chromium(monkeypatch) -> Iterator:
    """A headless Chromium for the test, closed after it."""
    require(CHROMIUM)
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # Inside Playwright's event loop Django keeps the test's database connection per context, not per thread:
            # close it here, or it outlives the test and blocks dropping the test database.
            connections.close_all()


def session_cookie(user, settings, url: str) -> dict:
    """The cookie of a session in which `user` is logged in, for a browser context on `url`."""
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {"name": name, "value": client.cookies[name].value, "url": url}


def axe_serious(page) -> list[str]:
    """axe-core's serious and critical violations on the page (the context must bypass the page's CSP)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} · {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in SERIOUS
    ]


def fits(page) -> None:
    """Nothing on the page scrolls sideways."""
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner} px window: {page.evaluate(WIDEST)}"
