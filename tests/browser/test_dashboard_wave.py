"""An incoming flood wave on the dashboard, in real headless Chromium (spec section 11): at each station
downstream of a rise, its source, level and a countdown to the ETA there, for everyone."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from service.ingest import Message
from tests.browser.page import open_page, page_errors, read, text, wait

pytestmark = pytest.mark.browser


@pytest.fixture
def wave(flood):
    """KLN-MANGKUTANA (normal in the flood) rises to SIAGA now: waves to KLN-KALAENA (+1.5 h) and KLN-WOTU (+3 h)."""
    services, _ = flood
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # 0.95 m in 10 minutes: within the spike check's 0.1 m/min (spec 17), so the rise is judged at once.
    for minutes, level in ((-10, 2.15), (0, 3.1)):
        ts = now + timedelta(minutes=minutes)
        payload = json.dumps({"ts": ts.isoformat(), "values": {"water_level": level}}).encode()
        services.ingestor.ingest([Message("ews/v1/stations/KLN-MANGKUTANA/readings", payload, ts)])
    return now


def countdown_seconds(text: str) -> int:
    h, m, s = (int(x) for x in re.search(r"(\d+):(\d\d):(\d\d)", text).groups())
    return h * 3600 + m * 60 + s


def test_the_wave_shows_source_level_and_a_countdown_at_each_downstream_station(browser, live, wave):
    open_page(browser, live)  # the public view: a wave is a public warning
    selector = "#alerts .alert[data-station='{}'] .alert-wave"
    wait(browser, lambda d: d.find_elements("css selector", selector.format("KLN-WOTU")), message="no wave at Wotu")
    (kalaena,) = read(browser, selector.format("KLN-KALAENA"), "data-source")
    wotu = text(browser, selector.format("KLN-WOTU"))
    assert kalaena["data-source"] == "KLN-MANGKUTANA"
    assert "Banjir kiriman dari Pos TMA Kalaena Mangkutana (Siaga)" in wotu
    eta = (wave + timedelta(hours=3)).astimezone(timezone(timedelta(hours=8))).strftime("%H.%M")
    assert "perkiraan tiba" in wotu and f"{eta} WITA" in wotu  # (with the day when it is another day)
    left = countdown_seconds(text(browser, selector.format("KLN-WOTU") + " .wave-countdown"))
    assert 3 * 3600 - 120 < left <= 3 * 3600
    assert 5400 - 120 < countdown_seconds(kalaena["text"]) <= 5400
    # The map says it too: Wotu's marker carries the wave, its tooltip names the source and the ETA.
    marker = browser.execute_script(
        "var m = window.EWS.markers['KLN-WOTU']; return [m.getElement().getAttribute('data-wave'),"
        " m.getTooltip().getContent()];")
    assert marker[0] == "KLN-MANGKUTANA" and "Banjir kiriman dari Pos TMA Kalaena Mangkutana" in marker[1]
    # It counts down between polls.
    wait(browser, lambda d: countdown_seconds(text(d, selector.format("KLN-WOTU") + " .wave-countdown")) < left,
        timeout=5, message="the countdown does not move")
    browser.find_element("id", "lang-button").click()
    wait(browser, lambda d: "Flood wave from" in text(d, selector.format("KLN-WOTU")),
         message="the wave has no English")
    assert page_errors(browser) == []
