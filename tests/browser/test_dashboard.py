"""The operations dashboard in a real headless Chromium against the real app during a seeded flood."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.db import schema
from tests.browser.flood import open_new_alert
from tests.browser.page import click, marker_levels, open_page, page_errors, read, text, texts, token_for, wait

pytestmark = pytest.mark.browser

COLORS = {"normal": "#2e9d3a", "waspada": "#f2c511", "siaga": "#f07f0c", "awas": "#d7191c", "offline": "#8c8c8c"}
EXPECTED = {
    "PKR-LASKAP": "awas", "MLL-MALILI": "siaga", "LAO-HARAPAN": "waspada", "ARR-PONGKERU": "siaga",
    "ARR-MALILI": "waspada", "AGK-ANGKONA": "offline", "KLN-MANGKUTANA": "normal", "ARR-SOROWAKO": "normal",
}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_markers_show_the_flood_in_bmkg_colours_without_tiles(browser, live):
    open_page(browser, live)  # tiles on: with no internet they fail, and nothing else may
    wait(browser, lambda d: len(marker_levels(d)) == 12, message="not all 12 stations on the map")
    levels = marker_levels(browser)
    for station_id, level in EXPECTED.items():
        assert levels[station_id] == [level, COLORS[level]], station_id
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('.ews-kec-label')).map(function (e) { return e.textContent; })")
    assert {"Malili", "Mangkutana", "Wotu", "Nuha"} <= set(labels)
    # Highest level first in the table; the summary counts the levels.
    assert read(browser, "#stations tbody tr", "data-station")[0]["data-station"] == "PKR-LASKAP"
    assert text(browser, ".chip[data-level=awas] b") == "1"
    assert page_errors(browser) == []


def test_public_view_hides_staff_alerts_and_names(browser, live, flood):
    _, alert_ids = flood
    open_page(browser, live)
    cards = read(browser, "#alerts .alert", "data-alert-id", "data-level")
    shown = [int(c["data-alert-id"]) for c in cards]
    assert alert_ids["AGK-ANGKONA"] not in shown  # offline: staff only
    assert shown[0] == alert_ids["PKR-LASKAP"]  # AWAS first
    assert [c["data-level"] for c in cards] == ["awas", "siaga", "siaga", "waspada", "waspada"]
    listed = text(browser, "#alerts")
    assert "Piket malam BPBD" not in listed and "Tim TRC" not in listed and "+62" not in listed
    assert "Warga diperingatkan 60 · terkirim 54" in listed
    assert "lewat modem GSM 22, Twilio 40" in listed  # which provider carried the messages
    # Its 4 messages `sent` (handed to the provider, no delivery report yet) are "not yet arrived", not "queued":
    # the staff panel's queue (antre) counts only those not yet handed over.
    assert text(browser, f'.alert[data-alert-id="{alert_ids["PKR-LASKAP"]}"] .alert-sms') == (
        "Warga diperingatkan 60 · terkirim 54 · Petugas 4 · gagal 2 · belum sampai 4 · lewat modem GSM 22, Twilio 40")
    assert not browser.find_elements("css selector", ".ack-button")


def test_operator_acknowledges_an_alert_from_the_screen(browser, live, flood):
    services, alert_ids = flood
    token = token_for(services, "operator", "Piket Operator")
    open_page(browser, live, f"?token={token}")
    # The token leaves the address bar at once and lives in this tab's sessionStorage.
    assert "token" not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('ews.token')") == token
    wait(browser, lambda d: "Piket Operator" in d.find_element("id", "who").text)
    target = alert_ids["PKR-LASKAP"]
    click(browser, f'[data-ack="{target}"]')
    wait(browser, lambda d: d.find_element("id", "ack-dialog").is_displayed())
    browser.find_element("id", "ack-note").send_keys("TRC dikirim ke Laskap")
    browser.find_element("id", "ack-send").click()
    wait(browser, lambda d: not d.find_elements("css selector", f'[data-ack="{target}"]'),
         message="the ack button stayed")
    card = f'.alert[data-alert-id="{target}"]'
    wait(browser, lambda d: "Diketahui" in (text(d, card) or ""), message="the card does not say it is acknowledged")
    with services.engine.connect() as conn:
        row = conn.execute(sa.select(schema.alerts).where(schema.alerts.c.id == target)).one()
    assert row.ack_by is not None and "Piket Operator" in row.ack_by
    assert row.ack_note == "TRC dikirim ke Laskap"
    with services.engine.connect() as conn:  # audited: who, and the note
        (entry,) = conn.execute(sa.select(schema.audit_log).where(schema.audit_log.c.action == "ack")).all()
    assert "Piket Operator" in entry.actor and entry.entity_id == str(target)
    assert entry.after["note"] == "TRC dikirim ke Laskap"
    browser.refresh()  # after a reload the card still says who acknowledged, and offers no button
    wait(browser, lambda d: "Diketahui Piket Operator" in (text(d, card) or ""),
         message="the ack is not shown after a reload")
    assert not browser.find_elements("css selector", f'[data-ack="{target}"]')
    # Staff see the operational alerts too.
    assert browser.find_elements("css selector", f'.alert[data-alert-id="{alert_ids["AGK-ANGKONA"]}"]')


def test_viewer_sees_staff_alerts_but_cannot_acknowledge(browser, live, flood):
    services, alert_ids = flood
    open_page(browser, live, f"?token={token_for(services, 'viewer', 'Layar COC')}")
    wait(browser, lambda d: d.find_elements("css selector", f'.alert[data-alert-id="{alert_ids["AGK-ANGKONA"]}"]'))
    assert not browser.find_elements("css selector", ".ack-button")
    assert "Layar COC" in browser.find_element("id", "who").text


def test_login_box_rejects_an_unknown_token(browser, live):
    open_page(browser, live)
    browser.find_element("id", "login-button").click()
    browser.find_element("id", "token-input").send_keys("ews_not-a-real-token")
    browser.find_element("css selector", "#login-form button[type=submit]").click()
    wait(browser, lambda d: d.find_element("id", "login-error").is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('ews.token')") is None


def chart_series(driver) -> list[dict]:
    return driver.execute_script(
        "var c = window.EWS.chart(); if (!c) return null;"
        " return c.series.slice(1).map(function (s, i) { var d = c.data[i + 1];"
        " return {label: s.label, first: d[0], last: d[d.length - 1], n: d.length}; });")


def test_chart_draws_the_station_thresholds(browser, live):
    open_page(browser, live)
    wait(browser, lambda d: d.execute_script("return !!window.EWS.chart()"), message="no chart")
    assert browser.find_element("id", "chart").get_attribute("data-station") == "PKR-LASKAP"
    series = chart_series(browser)
    assert series[0]["label"].startswith("Tinggi muka air") and series[0]["n"] > 100
    thresholds = {s["label"]: (s["first"], s["last"]) for s in series[1:] if s["label"].startswith("Batas")}
    assert thresholds == {"Batas Waspada 1.8 m": (1.8, 1.8), "Batas Siaga 2.4 m": (2.4, 2.4),
                          "Batas Awas 3 m": (3.0, 3.0)}
    assert "Batas Awas 3 m" in text(browser, "#chart .u-legend")
    # A rain gauge: hourly rain against the 1 h marks, the rolling 24 h sum against the 24 h marks.
    click(browser, '#stations tr[data-station="ARR-PONGKERU"]')
    wait(browser, lambda d: d.find_element("id", "chart").get_attribute("data-station") == "ARR-PONGKERU")
    labels = [s["label"] for s in chart_series(browser)]
    assert "Batas Siaga (1 jam) 20 mm" in labels and "Batas Awas (24 jam) 150 mm" in labels
    assert any(label.startswith("Jumlah 24 jam") for label in labels)


def test_chart_marks_doubtful_and_spike_samples(browser, live, flood):
    """Spec 17: a spike is a red mark off the line, a doubtful sample an amber one on it."""
    services, _ = flood
    r = schema.readings
    with services.engine.begin() as conn:
        newest = conn.execute(sa.select(r.c.id, r.c.value).where(r.c.station_id == "PKR-LASKAP",
                                                                 r.c.metric == "water_level")
                              .order_by(r.c.ts.desc()).limit(3)).all()
        conn.execute(sa.update(r).where(r.c.id == newest[1].id).values(quality="spike"))
        conn.execute(sa.update(r).where(r.c.id == newest[2].id).values(quality="doubtful"))
    open_page(browser, live)
    wait(browser, lambda d: d.execute_script("return !!window.EWS.chart()"), message="no chart")
    marks, gaps = browser.execute_script(
        "var c = window.EWS.chart(); var out = {}, gaps = {};"
        " c.series.forEach(function (s, i) { if (!i) return; var d = c.data[i];"
        " out[s.label] = d.filter(function (v) { return v !== null && v !== undefined; });"
        " gaps[s.label] = d.length - out[s.label].length; }); return [out, gaps];")
    assert marks["Lonjakan (tidak dinilai)"] == [newest[1].value]
    assert marks["Data diragukan"] == [newest[2].value]
    line = next(label for label in marks if label.startswith("Tinggi muka air"))
    assert gaps[line] == 1  # the spike is no part of the line


def test_new_alert_appears_without_reload(browser, live, flood):
    services, _ = flood
    open_page(browser, live, "?poll=1")
    browser.execute_script("window.__sameDocument = true;")
    alert_id = open_new_alert(services.engine, datetime.now(timezone.utc))
    started = time.monotonic()
    wait(browser, lambda d: d.find_elements("css selector", f'.alert[data-alert-id="{alert_id}"]'), timeout=5,
         message="the new alert did not appear within 5 s")
    assert time.monotonic() - started < 5
    assert browser.execute_script("return window.__sameDocument === true")
    (card,) = read(browser, f'.alert[data-alert-id="{alert_id}"]', "class")
    assert "is-new" in card["class"]
    wait(browser, lambda d: marker_levels(d)["KLN-WOTU"] == ["waspada", COLORS["waspada"]])


def test_banner_when_the_server_is_lost(browser, live):
    open_page(browser, live, "?poll=1")
    assert not browser.find_element("id", "offline-banner").is_displayed()
    live.stop()
    wait(browser, lambda d: d.find_element("id", "offline-banner").is_displayed(), timeout=20,
         message="no banner after losing the server")
    assert "terputus" in browser.find_element("id", "offline-banner").text


def test_english_on_request(browser, live, flood):
    _, alert_ids = flood
    open_page(browser, live)
    browser.find_element("id", "lang-button").click()
    assert text(browser, ".alerts-panel h2").lower().startswith("active alerts")
    assert browser.execute_script("return localStorage.getItem('ews.lang')") == "en"
    assert "Warning (Awas)" in text(browser, "#stations tbody tr")
    assert text(browser, f'.alert[data-alert-id="{alert_ids["PKR-LASKAP"]}"] .alert-sms') == (
        "Residents warned 60 · delivered 54 · Staff 4 · failed 2 · not yet delivered 4 · via GSM modem 22, Twilio 40")


@pytest.mark.parametrize("size", [(1920, 1080), (390, 844)], ids=["wall", "phone"])
def test_screenshots_of_a_flood(browser, live, flood, size, tmp_path):
    """Wall screen and phone; written to docs/screenshots/ when EWS_SCREENSHOTS=1."""
    services, _ = flood
    width, height = size
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    query = "?tiles=off" + (f"&token={token_for(services, 'operator', 'Piket BPBD')}" if width > 600 else "")
    open_page(browser, live, query)
    wait(browser, lambda d: d.execute_script("return !!window.EWS.chart()"))
    time.sleep(1.0)  # let the map settle after fitting the stations
    # Nothing sticks out sideways on a phone.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    name = "dashboard-wall-1920x1080.png" if width > 600 else "dashboard-phone-390x844.png"
    folder = SCREENSHOTS if os.environ.get("EWS_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / name))
    if width < 600:  # the whole phone page too: alerts, map, table, chart one under the other
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": full, "deviceScaleFactor": 1, "mobile": True})
        time.sleep(1.0)
        assert browser.save_screenshot(str(folder / "dashboard-phone-390-full.png"))


def test_the_map_tooltip_says_which_sirens_sound_and_which_do_not_answer(browser, live, flood):
    from datetime import timedelta

    from selenium.webdriver.common.action_chains import ActionChains

    services, _ = flood
    now = datetime.now(timezone.utc)
    later = (now.replace(microsecond=0) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.stations).where(schema.stations.c.id == "MLL-MALILI").values(
            sirens=[{"id": "SRN-MALILI-1", "at": "siaga"}, {"id": "SRN-MALILI-2", "at": "siaga"}], updated_at=now))
        on = {"action": "on", "level": "siaga", "alert_id": 1, "on_until": later}
        conn.execute(sa.insert(schema.siren_state), [
            {"siren_id": "SRN-MALILI-1", "station_id": "MLL-MALILI", "state": "on", "trouble": None, "commanded": on,
             "updated_at": now},
            {"siren_id": "SRN-MALILI-2", "station_id": "MLL-MALILI", "state": "unknown", "trouble": "silent",
             "commanded": on, "updated_at": now}])
    open_page(browser, live)
    def hovered_tooltip(d):
        # Hover (again) each poll: the map may still be fitting its view and move the marker away.
        ActionChains(d).move_to_element(d.find_element("css selector", "path.ews-station-MLL-MALILI")).perform()
        # The open tooltips read in one step: one may close between its finding and its reading. (innerText:
        # Leaflet fades the tooltip in, and Selenium's .text is empty while it is transparent.)
        return next((tip for tip in texts(d, ".leaflet-tooltip") if "SRN-MALILI-1" in tip), None)

    tip = wait(browser, hovered_tooltip, message="no siren lines in the tooltip")
    assert "Sirene SRN-MALILI-1: BERBUNYI" in tip and "Sirene SRN-MALILI-2: TIDAK MERESPON" in tip, tip
    assert page_errors(browser) == []
