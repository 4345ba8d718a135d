"""The printable event report in headless Chromium: the page, its SVG chart, print to A4 PDF, and the
dashboard's links to it.

``EWS_REPORT_PNG=DIR`` keeps the PNG renderings of the printed PDF in DIR (to look at them; they are
never committed).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from urllib.parse import urljoin
from datetime import datetime, timedelta, timezone

import pytest

from service.http.auth import Caller
from service.http.report_links import report_paths
from tests.browser.conftest import LiveServer
from tests.browser.page import click, open_page, read, text, token_for, wait
from tests.support.episode import warned_flood

pytestmark = pytest.mark.browser


@pytest.fixture
def report_site(sqlite_url):
    """The app over a database holding one warned flood (closed three hours ago), served on a free port."""
    from service.http import create_app
    from tests.support.services import make_services

    services = make_services(sqlite_url)
    episode = warned_flood(services, datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=4))
    server = LiveServer(create_app(services)).start()
    try:
        yield services, episode, server
    finally:
        server.stop()
        services.engine.dispose()


def ticket_path(services, alert_id: int, role: str = "viewer") -> str:
    from service.tokens import create_token

    token_id, _ = create_token(services.engine, role, f"report {role}")
    return report_paths(services.engine, Caller(token_id, f"report {role}", role), [alert_id], services.clock())[str(alert_id)]


def test_the_report_renders_with_its_chart_and_thresholds_and_no_script(browser, report_site):
    services, episode, server = report_site
    browser.get(server.url + ticket_path(services, episode.alert_id))
    wait(browser, lambda d: d.find_elements("css selector", "svg.chart"), message="no chart")
    assert browser.title.startswith("Laporan Kejadian")
    levels = [line.get_attribute("data-level") for line in browser.find_elements("css selector", "svg.chart line.threshold")]
    assert levels == ["waspada", "siaga", "awas"]
    values = [float(line.get_attribute("data-value")) for line in browser.find_elements("css selector", "svg.chart line.threshold")]
    assert values == [1.8, 2.4, 3.0]
    assert browser.find_elements("css selector", "svg.chart polyline.series")
    marks = browser.find_elements("css selector", "svg.chart g.event-mark")
    assert [m.get_attribute("data-type") for m in marks] == ["raised", "escalated", "escalated", "deescalated", "cleared"]
    assert browser.execute_script("return document.scripts.length") == 0
    source = browser.page_source
    assert "<script" not in source.lower()
    for phone in episode.phones:
        assert phone not in source and phone[1:] not in source
    text = browser.find_element("tag name", "body").text
    assert browser.find_element("id", "lead-time").text.endswith("19 mnt 28 dtk")  # 1168 s
    assert "WITA" in text and "Laskap" in text and "Pongkeru" in text
    rows = browser.find_elements("css selector", "#timeline tbody tr")
    assert len(rows) == 5
    # The same page in English, by its own link.
    browser.find_element("link text", "English").click()
    wait(browser, lambda d: d.find_element("tag name", "html").get_attribute("lang") == "en")
    assert browser.title.startswith("Event report") and browser.find_element("id", "lead-time").text.endswith("19 min 28 s")


def test_the_printed_report_is_one_or_two_a4_pages(browser, report_site, pdf_tools, tmp_path):
    from selenium.webdriver.common.print_page_options import PrintOptions

    services, episode, server = report_site
    browser.get(server.url + ticket_path(services, episode.alert_id))
    wait(browser, lambda d: d.find_elements("css selector", "svg.chart"))
    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7  # A4, in cm
    options.background = True
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(base64.b64decode(browser.print_page(options)))
    info = subprocess.run([pdf_tools["pdfinfo"], str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert 1 <= pages <= 2, info
    assert "(A4)" in info, info
    text = subprocess.run([pdf_tools["pdftotext"], "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Laporan Kejadian" in text and "Kronologi" in text and "AWAS 3,00 m" in text
    for phone in episode.phones:
        assert phone not in text
    subprocess.run([pdf_tools["pdftoppm"], "-r", "100", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page*.png"))
    assert len(pngs) == pages and all(png.stat().st_size > 5_000 for png in pngs)
    keep = os.environ.get("EWS_REPORT_PNG")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for png in pngs:
            shutil.copy(png, keep)


def test_a_plain_link_without_ticket_or_token_is_refused(browser, report_site):
    _, episode, server = report_site
    browser.get(f"{server.url}/api/v1/alerts/{episode.alert_id}/report.html")
    assert "Laporan tidak dapat dibuka" in browser.find_element("tag name", "h1").text
    assert not browser.find_elements("css selector", "svg")


def test_the_dashboard_links_each_alert_to_its_report(browser, live, flood):
    services, alert_ids = flood
    open_page(browser, live, f"?token={token_for(services, 'viewer', 'Layar COC')}")
    target = alert_ids["PKR-LASKAP"]
    wait(browser, lambda d: d.find_elements("css selector", f'.alert[data-alert-id="{target}"] a.report-link'),
         message="no report link on the alert")
    # Every card has its link: one list of the cards' ids and one of the links' ids, each read in one step.
    cards = [card["data-alert-id"] for card in read(browser, "#alerts .alert", "data-alert-id")]
    assert [link["data-report"] for link in read(browser, "#alerts .alert a.report-link", "data-report")] == cards
    link = f'.alert[data-alert-id="{target}"] a.report-link'
    (found,) = read(browser, link, "target", "href")
    assert found["target"] == "_blank" and "ticket=" in found["href"]
    dashboard = browser.current_window_handle
    click(browser, link)
    wait(browser, lambda d: len(d.window_handles) == 2, message="the report did not open in a new tab")
    browser.switch_to.window([h for h in browser.window_handles if h != dashboard][0])
    wait(browser, lambda d: d.find_elements("css selector", "svg.chart"), message="the report did not load")
    assert browser.title.startswith("Laporan Kejadian") and "Pongkeru Laskap" in browser.title


def test_the_dashboard_lists_recently_ended_alerts_with_their_reports(browser, report_site):
    services, episode, server = report_site
    open_page(browser, server, f"?token={token_for(services, 'operator', 'Piket BPBD')}")
    item = f'.closed-alerts li[data-alert-id="{episode.alert_id}"]'
    wait(browser, lambda d: d.find_elements("css selector", item), message="the closed alert is not listed")
    assert "Selesai 7 hari terakhir" in text(browser, ".closed-title")
    (link,) = read(browser, item + " a.report-link", "href")
    browser.get(urljoin(browser.current_url, link["href"]))
    wait(browser, lambda d: d.find_elements("css selector", "svg.chart"))
    assert "Laporan Kejadian" in browser.title


def test_the_public_view_has_no_report_links(browser, live):
    open_page(browser, live)
    assert browser.find_elements("css selector", "#alerts .alert")
    assert not browser.find_elements("css selector", "a.report-link")
