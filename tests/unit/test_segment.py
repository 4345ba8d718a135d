"""Every resident warning fits one segment, for any station (spec section 9): the longest rendering
(alerts/segment.py) and its property tests over random names and places of realistic lengths."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import gsm7, messages
from alerts.segment import SMS_NAME_MAX, longest_resident_warning, resident_warning_keys, segment_problem, sms_name_problem
from config.templates import default_templates

T = default_templates()
WITA = ZoneInfo("Asia/Makassar")
SEED = json.loads((Path(__file__).parents[2] / "config/seed/luwu-timur.json").read_text())["stations"]
# The station of the issue: added through the API, its warnings were 172-179 characters.
LONG = {"id": "TST-01", "name": "Pos TMA Bendungan Karebbe Desa Ussu Kecamatan Malili", "river": "Sungai Larona Hulu",
        "metrics": ["water_level", "battery"]}

WORDS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'-", min_size=3, max_size=14)
PLACE = st.lists(WORDS, min_size=1, max_size=5).map(" ".join)
STATION = st.fixed_dictionaries({
    "id": st.just("RND-01"),
    "name": st.builds(lambda kind, place: f"{kind}{place}", st.sampled_from(["Pos TMA ", "Pos Hujan ", "ARR ", ""]), PLACE),
    "river": st.one_of(st.none(), st.builds(lambda p: f"Sungai {p}", PLACE), PLACE),
    "metrics": st.sampled_from([["water_level", "battery"], ["rain_tips", "battery"], ["rainfall"],
                                ["water_level", "rainfall"]]),
})
SMS_NAME = st.text(alphabet=sorted(gsm7.BASIC - {"\n", "\r"}), min_size=1, max_size=SMS_NAME_MAX).map(str.strip).filter(bool)


def test_every_seed_station_fits_with_its_longest_warning():
    for station in SEED:
        longest = longest_resident_warning(T, station, WITA)
        assert longest.septets <= gsm7.SEGMENT, (station["id"], longest)
        assert segment_problem(T, station, WITA) is None


def test_the_issues_long_station_is_refused_naming_the_length_and_sms_name_makes_it_fit():
    problem = segment_problem(T, LONG, WITA)
    longest = longest_resident_warning(T, LONG, WITA)
    assert problem and longest.septets > 160 and f"up to {longest.septets} GSM-7 characters" in problem
    assert segment_problem(T, {**LONG, "sms_name": "Bendungan Karebbe Ussu"}, WITA) is None
    # The exercise texts are part of the check.
    assert any(key.startswith("exercise.") for key in resident_warning_keys(LONG["metrics"]))


def test_sms_name_is_the_whole_place_phrase():
    station = {**LONG, "sms_name": "Karebbe Ussu"}
    for kind, key in (("water_level", "water_level.raised.awas"), ("rainfall", "rainfall.raised.awas")):
        context = messages.warning_context(T, "id", station=station, level="awas", metric=kind, value=3.3,
                                           at=datetime(2026, 11, 30, 6, 20, tzinfo=timezone.utc), zone=WITA)
        text = messages.render(T, key, "id", context)
        assert "Karebbe Ussu 3" in text and "Larona" not in text and "Bendungan" not in text


def test_a_rain_gauge_is_not_judged_by_flood_texts():
    gauge = {**LONG, "metrics": ["rain_tips"]}
    assert all(key.removeprefix("exercise.").startswith("rainfall.") for key in resident_warning_keys(gauge["metrics"]))


def test_a_wave_names_both_places_and_its_arrival_in_one_segment():
    wotu, mangkutana = (next(s for s in SEED if s["id"] == i) for i in ("KLN-WOTU", "KLN-MANGKUTANA"))
    reading = {"value": 3.2, "source_place": messages.upstream_place(mangkutana), "eta": "2026-11-30T07:35:00Z"}
    context = messages.upstream_context(T, "id", station=wotu, level="siaga", reading=reading,
                                        at=datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc), zone=WITA)
    text = messages.render(T, "upstream.raised.siaga", "id", context)
    assert text == ("BPBD LUTIM: BANJIR KIRIMAN dari Mangkutana (SIAGA 3.2 m 14:05). Perkiraan tiba di Wotu "
                    "15:35 WITA. Siapkan evakuasi. Darurat: 112")
    assert messages.upstream_place({"sms_name": "S.Kalaena Jembatan Wotu Baru"}) == "S.Kalaena"  # cut at a word
    assert len(messages.upstream_place({"id": "X" * 64})) == messages.UPSTREAM_PLACE_MAX


def test_sms_name_rules():
    assert sms_name_problem("Karebbe Ussu") is None
    assert sms_name_problem("x" * (SMS_NAME_MAX + 1))
    assert sms_name_problem("[Ussu]")  # extension characters cost two septets
    assert sms_name_problem("Ussu\n") and sms_name_problem(" Ussu")


def _any_warning(data, station):
    """One concrete warning the station could be sent: any template, language, value, trend and time."""
    key = data.draw(st.sampled_from(resident_warning_keys(station["metrics"])))
    language = data.draw(st.sampled_from(messages.LANGUAGES))
    kind = key.removeprefix("exercise.").split(".")[0]
    plain = key.removeprefix("exercise.").split(".")
    level = "normal" if plain[-1] == "all_clear" else (plain[-1] if plain[1] in ("raised", "escalated") else "awas")
    if kind in ("water_level", messages.UPSTREAM):
        value = data.draw(st.floats(min_value=-9.99, max_value=99.99))
        window = None
    else:
        value = data.draw(st.floats(min_value=0, max_value=999.9))
        window = data.draw(st.sampled_from(["1h", "3h", "24h"]))
    rate = data.draw(st.one_of(st.none(), st.floats(min_value=-100, max_value=100)))
    at = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=data.draw(st.integers(0, 366 * 24 * 60)))
    if kind == messages.UPSTREAM:  # a wave from any accepted station upstream, arriving any time
        source = data.draw(st.sampled_from(SEED + [station]))
        eta = at + timedelta(seconds=data.draw(st.integers(0, 7 * 86400)))
        reading = {"value": value, "source_place": messages.upstream_place(source), "eta": eta.isoformat()}
        context = messages.upstream_context(T, language, station=station, level=level, reading=reading, at=at,
                                            zone=WITA)
        return messages.render(T, key, language, context)
    context = messages.warning_context(T, language, station=station, level=level, metric=kind, value=value, at=at,
                                       zone=WITA, rate_per_hour=rate, window=window)
    return messages.render(T, key, language, context)


@settings(max_examples=150, deadline=None)
@given(station=STATION, data=st.data())
def test_whatever_is_accepted_renders_in_one_segment(station, data):
    if segment_problem(T, station, WITA) is not None:
        station = {**station, "sms_name": data.draw(SMS_NAME)}
        assert segment_problem(T, station, WITA) is None  # an sms_name always makes it fit
    for _ in range(5):
        text = _any_warning(data, station)
        assert gsm7.is_gsm7(text) and gsm7.septets(text) <= gsm7.SEGMENT, text
