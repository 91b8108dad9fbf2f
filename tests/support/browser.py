"""A real Chromium for the screen's tests: Debian's /usr/bin/chromium driven by Playwright.

No browser is downloaded: Playwright launches the system's Chromium (``.ci/run`` installs
the ``chromium`` package), headless, with a fresh profile, and records every console error
and uncaught exception of every page it opens.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.promtool import _required

#: Flags that work as root in a container, and keep Chromium off the network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return str(shutil.which(name))
    return _required(
        "chromium", ".ci/run should install Debian's chromium", "apt-get install chromium"
    )


@dataclass
class Browser:
    browser: Any
    #: "console error: ..." / "page error: ..." lines from every page opened
    errors: list[str] = field(default_factory=list)

    def page(self, width: int = 1280, height: int = 900, **context: Any) -> Any:
        """A new page in a fresh context (its own cookies and credentials)."""
        ctx = self.browser.new_context(viewport={"width": width, "height": height}, **context)
        page = ctx.new_page()
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        return page


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium (Playwright's launch gives it a fresh ``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield Browser(browser)
        finally:
            browser.close()
