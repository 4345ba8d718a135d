"""Browser tests: the real app on a real HTTP server, driven in headless Debian Chromium with Selenium.

Chromium and ChromeDriver come from Debian (``chromium``, ``chromium-driver``); when they are
missing and the tests run as root, the session fixture installs them with apt-get, otherwise it
skips with the reason. No browser is ever downloaded from the internet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from datetime import datetime, timezone

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--lang=id-ID",
)


def _apt_install(*packages: str) -> str | None:
    """Install Debian ``packages``; return why it failed, or None."""
    if os.geteuid() != 0:
        return f"not root, cannot apt-get install {' '.join(packages)}"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for another apt-get (another test run on this machine) instead of failing on its lock.
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", *packages]
    for cmd in (["apt-get", "update"], install):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return f"{' '.join(cmd)} failed: {result.stderr.strip()[-300:]}"
    return None


def _install_chromium() -> str | None:
    """Install Debian's chromium and chromium-driver; return why it failed, or None."""
    return _apt_install("chromium", "chromium-driver")


@pytest.fixture(scope="session")
def chromium():
    """Paths of Debian's Chromium and ChromeDriver, installed on first use when possible."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        why = _install_chromium()
        if why or not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
            pytest.skip(f"Chromium for browser tests unavailable: {why or 'still missing after apt-get'}")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="session")
def pdf_tools():
    """Debian's poppler-utils (``pdfinfo``, ``pdftotext``, ``pdftoppm``), installed on first use when possible."""
    tools = ("pdfinfo", "pdftotext", "pdftoppm")
    if not all(shutil.which(tool) for tool in tools):
        why = _apt_install("poppler-utils")
        if why or not all(shutil.which(tool) for tool in tools):
            pytest.skip(f"poppler-utils for the printed report unavailable: {why or 'still missing after apt-get'}")
    return {tool: shutil.which(tool) for tool in tools}


@pytest.fixture
def browser(chromium, tmp_path):
    """A fresh headless Chromium (own profile), closed after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1920,1080")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class LiveServer:
    """The real app served by werkzeug in a thread, on a free port."""

    def __init__(self, app):
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._stopped = False
        self._thread = threading.Thread(target=self._server.serve_forever, name="ews-live-server", daemon=True)

    def start(self) -> "LiveServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def flood(sqlite_url):
    """Services over a seeded SQLite database with a flood in progress, and the ids of its alerts."""
    from tests.browser.flood import seed_flood
    from tests.support.services import make_services

    services = make_services(sqlite_url)
    alert_ids = seed_flood(services.engine, datetime.now(timezone.utc))
    return services, alert_ids


@pytest.fixture
def live(flood):
    """The full app (``service.http.create_app``) over the flood, served on a free port."""
    from service.http import create_app

    services, _ = flood
    app = create_app(services)
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()
