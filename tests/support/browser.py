"""Launch the system Chromium for Playwright tests.

Playwright's own browser builds are never downloaded (CI's network is closed);
we drive Debian's /usr/bin/chromium instead, installed by .ci/run.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",  # no GPU or display on CI
    "--disable-quic",
    "--no-first-run",
    # Chromium phones home at start-up; on a closed network those attempts
    # fail noisily and slowly, so switch them off.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]


def launch(playwright):
    """Start headless system Chromium from a ``sync_playwright()`` handle.

    Returns the Playwright ``Browser``; the caller closes it.
    """
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)
