"""A running exercise on the dashboard, in real headless Chromium: a banner for everyone (Bahasa
Indonesia first), the drill's alerts marked LATIHAN for staff, after the real ones, and never on
the map or in the public alert list."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from service import exercises
from service.ingest import Message
from tests.browser.test_dashboard import marker_levels, open_page, page_errors, token_for, wait

pytestmark = pytest.mark.browser


@pytest.fixture
def drill(flood):
    """An exercise at KLN-WOTU (normal in the flood) whose drill reading is at AWAS; its id and its alert's id."""
    services, _ = flood
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        exercise = exercises.start(conn, station_ids=["KLN-WOTU"], until=now + timedelta(hours=2), residents=False,
                                   note="latihan", by="test", now=now)
    payload = json.dumps({"ts": now.isoformat(), "values": {"water_level": 4.5}}).encode()
    (result,) = services.ingestor.ingest([Message("ews/v1/exercise/stations/KLN-WOTU/readings", payload, now)])
    return exercise["id"], result.events[0]["alert_id"]


def test_everyone_sees_that_a_drill_runs_but_not_its_alerts(browser, live, drill):
    exercise_id, alert_id = drill
    open_page(browser, live)
    banner = browser.find_element("id", "exercise-banner")
    wait(browser, lambda d: banner.is_displayed(), message="no exercise banner")
    assert banner.text.startswith(f"🛈 LATIHAN berlangsung (#{exercise_id}): Pos TMA Kalaena Wotu sampai")
    assert "hanya untuk petugas" in banner.text
    shown = [int(c.get_attribute("data-alert-id")) for c in browser.find_elements("css selector", "#alerts .alert")]
    assert alert_id not in shown
    assert marker_levels(browser)["KLN-WOTU"][0] == "normal"  # the map shows the real level
    browser.find_element("id", "lang-button").click()
    wait(browser, lambda d: "EXERCISE running" in d.find_element("id", "exercise-banner").text,
         message="the banner has no English")
    assert page_errors(browser) == []


def test_staff_see_the_drills_alert_marked_and_after_the_real_ones(browser, live, flood, drill):
    services, _ = flood
    exercise_id, alert_id = drill
    open_page(browser, live, f"?token={token_for(services, 'viewer', 'Layar COC')}")
    selector = f"#alerts .alert[data-alert-id='{alert_id}']"
    wait(browser, lambda d: d.find_elements("css selector", selector), message="the drill's alert is not listed")
    card = browser.find_element("css selector", selector)
    assert "is-exercise" in card.get_attribute("class") and card.get_attribute("data-exercise-id") == str(exercise_id)
    assert card.find_element("css selector", ".badge.exercise").text == "LATIHAN"
    cards = browser.find_elements("css selector", "#alerts .alert")
    assert cards[-1].get_attribute("data-alert-id") == str(alert_id)  # after every real alert, AWAS or not
    assert page_errors(browser) == []
