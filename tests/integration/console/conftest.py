"""The analyst console's fixtures: one real `gendetect serve` for the
package (the session's trained model, scoped keys, its SQLite audit) with
scored traffic in it, and one headless Chromium (Debian's, driven by
Playwright through its executable path: nothing downloaded)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.api_helpers import fresh
from tests.integration.conftest import ServerProcess, server_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

    from tests.integration.conftest import RegisteredFixture

CHROMIUM = Path(os.environ.get("GENDETECT_CHROMIUM", "/usr/bin/chromium"))
KEYS = {
    "analysts": {"key": "console-analyst-key-0001", "scopes": ["review", "feedback"]},
    "checkout": {"key": "console-scoring-key-0001", "scopes": ["score"]},
    "auditors": {"key": "console-reader-key-00001", "scopes": ["review"]},
}
ANALYST, SCORER, READER = (KEYS[n]["key"] for n in ("analysts", "checkout", "auditors"))
HUGE = 999_999.0  # an amount the model flags (as in tests/integration/serving)
N_FLAGGED = 12
# A flagged id past 2^53, scored last (the newest alert): a JS number would
# round it to another transaction's id.
BIG_ID = 2**60 + 1


@pytest.fixture(scope="package")
def console_server(registered_model: RegisteredFixture,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("console-server")
    env = server_env(registered_model.settings, home, GENDETECT_API_KEYS=json.dumps(KEYS),
                     GENDETECT_STATE_SNAPSHOT_SECONDS="3600")
    proc = ServerProcess(home, env)
    proc.start()
    try:
        _score_traffic(proc.url)
        yield proc
    finally:
        proc.stop()


def _score_traffic(url: str) -> None:
    """Ordinary and flagged transactions, scored by the checkout's key;
    returns once the audit lists every flagged one as an alert."""
    bodies = [fresh(amount=HUGE - i) for i in range(N_FLAGGED)]
    bodies += [fresh(amount=20.0 + i) for i in range(4)]
    bodies.append({**fresh(amount=HUGE), "transaction_id": BIG_ID})
    with httpx.Client(base_url=url, timeout=30) as c:
        flagged = set()
        for body in bodies:
            r = c.post("/v1/score", json=body, headers={"X-API-Key": SCORER})
            assert r.status_code == 200, r.text
            if r.json()["is_fraud"]:
                flagged.add(body["transaction_id"])
        assert len(flagged) >= N_FLAGGED - 1, "the model flags huge amounts"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the audit commits in the background
            page = c.get("/v1/alerts", params={"limit": 500}, headers={"X-API-Key": ANALYST})
            if {a["transaction_id"] for a in page.json()["alerts"]} >= flagged:
                return
            time.sleep(0.2)
        raise AssertionError("the flagged decisions never reached the audit")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Fails, not skips: the console's tests are part of the suite
    # (scripts/test.sh installs Debian's chromium where it is missing).
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(or set GENDETECT_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


class Watch:
    """What a page tried that it should not have: requests off the
    server's host (aborted), console errors (a CSP violation is one),
    uncaught errors and dialogs (a script that ran from data)."""

    def __init__(self) -> None:
        self.offsite: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def clean(self) -> None:
        assert self.offsite == [], f"requests off the server: {self.offsite}"
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert self.errors == [], f"browser errors: {self.errors}"


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def context(browser: Browser, console_server: ServerProcess,
            watch: Watch) -> Iterator[BrowserContext]:
    """A fresh browser session with the network cut off: any request that
    is not to the console's own server is aborted and recorded."""
    ctx = browser.new_context(base_url=console_server.url)
    host = urlsplit(console_server.url).netloc

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            watch.offsite.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext, watch: Watch) -> Page:
    pg = context.new_page()
    pg.set_default_timeout(10_000)

    def on_console(msg: Any) -> None:
        # A refused call (401/403/...) is logged by the browser as a failed
        # resource load: expected where a test is refused on purpose.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            watch.errors.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: watch.errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    return pg


def sign_in(page: Page, key: str = ANALYST, analyst: str = "ann") -> None:
    page.goto("/console")
    page.get_by_label("API key").fill(key)
    page.get_by_label("Your name").fill(analyst)
    page.get_by_role("button", name="Sign in").click()


def alerts_api(url: str, key: str = ANALYST, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/alerts", params=params, headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]
