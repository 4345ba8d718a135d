"""ews bench latency times only warnings its crossings caused: no backlog rise before them, no SMS from before them."""

from __future__ import annotations

import json

from service.bench.ingest_bench import backlog
from service.bench.latency_bench import ABOVE, BACKLOG_BAND, LEVELS, River, matched, told
from service.station_rules import default_rules_doc
from sinks.twilio import FakeTwilio, Recorded


def test_the_backlog_stays_in_its_band_within_the_rise_rate_of_the_first_crossing():
    values = [json.loads(payload)["values"]["water_level"] for _, payload in backlog(5000, 50, seed=3, start_in=(1.65, 1.85),
                                                                    band=BACKLOG_BAND)]
    low, high = BACKLOG_BAND
    assert low <= min(values) and max(values) <= high
    first_crossing = LEVELS[0][1] + ABOVE
    rise = default_rules_doc()["water_level"]["rise_rate"]["per_hour"]
    # An hour of backlog at its lowest, then the crossing: slower than the rise rate, so no WASPADA before it.
    assert first_crossing - low < rise
    assert River().value - low < rise  # the warm-up reading neither


def _sms(fake: FakeTwilio, at: float, to: str, body: str) -> None:
    fake.requests.append(Recorded(at, "POST", "/Messages.json", {"To": to, "Body": body}))


def test_a_warning_sent_before_its_crossing_is_not_timed_but_counted():
    fake = FakeTwilio()
    index_of = {"+62811": 0, "+62812": 1}
    crossings = {(0, 0): 10.0, (1, 0): 10.0, (1, 1): 20.0}
    _sms(fake, 9.5, "+62811", "Peringatan WASPADA banjir di Desa 001")  # before its crossing: another cause
    _sms(fake, 10.2, "+62811", "Peringatan WASPADA banjir di Desa 001")
    _sms(fake, 10.1, "+62812", "Peringatan WASPADA banjir di Desa 002")
    _sms(fake, 20.3, "+62812", "Peringatan SIAGA banjir di Desa 002")
    _sms(fake, 20.4, "+62899", "Peringatan SIAGA banjir di Desa 099")  # nobody's crossing
    before: set = set()
    first = matched(fake, index_of, crossings, before)
    assert first == {(0, 0): 10.2, (1, 0): 10.1, (1, 1): 20.3}
    assert before == {(0, 0)}


ALL_CLEAR = "BPBD LUTIM: Banjir Sungai Bench kembali NORMAL, TMA 2.05 m 10:01 WITA. Tetap hati-hati. Darurat: 112"


def test_an_all_clear_after_a_crossing_and_a_warning_told_again_are_counted():
    fake = FakeTwilio()
    _sms(fake, 10.2, "+62811", "Peringatan WASPADA banjir di Desa 001")
    _sms(fake, 11.0, "+62811", ALL_CLEAR)  # its river is still above the line: a false all-clear
    _sms(fake, 11.5, "+62811", "Peringatan WASPADA banjir di Desa 001")
    _sms(fake, 12.0, "+62812", ALL_CLEAR)  # before the station's crossing: still false (a warm-up's warning ended)
    _sms(fake, 12.5, "+62812", "Peringatan WASPADA banjir di Desa 002")
    counts = told(fake, {"+62811": 0, "+62812": 1}, {(0, 0): 10.0, (1, 0): 12.4})
    assert counts == {"sms_to_residents": 5, "false_all_clears": 2, "repeated_warnings": 1}
