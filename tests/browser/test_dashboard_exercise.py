"""A running exercise on the dashboard, in real headless Chromium: a banner for everyone (Bahasa
Indonesia first), the drill's alerts marked LATIHAN for staff, after the real ones, and never on
the map or in the public alert list."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from service import exercises
from service.ingest import Message
from tests.browser.page import marker_levels, open_page, page_errors, read, text, token_for, wait

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
    wait(browser, lambda d: d.find_element("id", "exercise-banner").is_displayed(), message="no exercise banner")
    banner = text(browser, "#exercise-banner")
    assert banner.startswith(f"🛈 LATIHAN berlangsung (#{exercise_id}): Pos TMA Kalaena Wotu sampai")
    assert "hanya untuk petugas" in banner
    shown = [int(c["data-alert-id"]) for c in read(browser, "#alerts .alert", "data-alert-id")]
    assert alert_id not in shown
    assert marker_levels(browser)["KLN-WOTU"][0] == "normal"  # the map shows the real level
    browser.find_element("id", "lang-button").click()
    wait(browser, lambda d: "EXERCISE running" in text(d, "#exercise-banner"),
         message="the banner has no English")
    assert page_errors(browser) == []


def test_staff_see_the_drills_alert_marked_and_after_the_real_ones(browser, live, flood, drill):
    services, _ = flood
    exercise_id, alert_id = drill
    open_page(browser, live, f"?token={token_for(services, 'viewer', 'Layar COC')}")
    selector = f"#alerts .alert[data-alert-id='{alert_id}']"
    wait(browser, lambda d: d.find_elements("css selector", selector), message="the drill's alert is not listed")
    (card,) = read(browser, selector, "class", "data-exercise-id")
    assert "is-exercise" in card["class"] and card["data-exercise-id"] == str(exercise_id)
    assert text(browser, selector + " .badge.exercise") == "LATIHAN"
    cards = read(browser, "#alerts .alert", "data-alert-id")
    assert cards[-1]["data-alert-id"] == str(alert_id)  # after every real alert, AWAS or not
    assert page_errors(browser) == []
