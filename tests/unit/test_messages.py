"""SMS texts: every template, level and language, with every seed station and extreme values,
is GSM-7, names the sender, the level and 112, and fits ONE 160-character segment."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts import gsm7, messages
from config.templates import TEMPLATE_DIR, default_templates

SEED = json.loads((Path(__file__).parents[2] / "config/seed/luwu-timur.json").read_text())["stations"]
WITA = ZoneInfo("Asia/Makassar")
T = default_templates()
# (value, rate per hour, window): water levels up to the plausible maximum, fast rises and falls, huge rain sums.
EXTREMES = {
    "water_level": [(10.25, 1.55, None), (0.05, -1.55, None), (3.2, 0.4, None), (2.0, None, None), (9.99, 0.0, None)],
    "rainfall": [(888.0, 25.0, "24h"), (150.5, -30.0, "1h"), (45.0, None, "3h"), (0.0, 0.0, "1h")],
}
LATE = datetime(2026, 11, 30, 15, 59, tzinfo=timezone.utc)  # 23:59 WITA: the widest time


def resident_keys(kind):
    keys = [f"{kind}.{event}.{level}" for event in ("raised", "escalated") for level in messages.WARNING_LEVELS]
    return keys + [f"{kind}.reminder", f"{kind}.all_clear"]


EXERCISE_WORD = {"id": "LATIHAN", "en": "EXERCISE"}


def cases():
    for station in SEED:
        for language in messages.LANGUAGES:
            for kind in messages.PUBLIC_KINDS:
                for key in resident_keys(kind):
                    yield station, language, kind, key
                    yield station, language, kind, f"{messages.EXERCISE}.{key}"


@pytest.mark.parametrize("language", messages.LANGUAGES)
def test_both_languages_have_every_template(language):
    assert language in T.languages()
    for key in messages.REQUIRED_KEYS:
        assert T.has(key, language)


def test_every_resident_warning_fits_one_segment_with_every_seed_station():
    checked = 0
    for station, language, kind, key in cases():
        plain = key.removeprefix(f"{messages.EXERCISE}.")
        level = plain.split(".")[-1] if plain.split(".")[1] in ("raised", "escalated") else "awas"
        if key.endswith("all_clear"):
            level = "normal"
        for value, rate, window in EXTREMES[kind]:
            context = messages.warning_context(T, language, station=station, level=level, metric=kind, value=value,
                                               at=LATE, zone=WITA, rate_per_hour=rate, window=window)
            text = messages.render(T, key, language, context)
            where = f"{key} {language} {station['id']} {value}: {text!r}"
            assert gsm7.is_gsm7(text), where
            assert gsm7.septets(text) <= 160, f"{gsm7.septets(text)} septets: {where}"
            sender = f"{EXERCISE_WORD[language]} BPBD LUTIM" if key != plain else "BPBD LUTIM"
            assert text.startswith(sender), where
            assert "112" in text and "23:59 WITA" in text, where
            if level != "normal":
                assert level.upper() in text, where
            checked += 1
    assert checked == 2 * (len(SEED) * 2 * 2 * 8 * 5 - len(SEED) * 2 * 8 * 1)  # 5 water, 4 rain values; real and drill


MAINTENANCE_START = {"id": "PEMELIHARAAN POS: BPBD LUTIM: ", "en": "MAINTENANCE: BPBD LUTIM: "}
NOT_TOLD = {"id": "Warga tdk di-SMS", "en": "Residents not texted"}


def test_every_staff_warning_of_a_station_under_maintenance_fits_one_segment_with_every_seed_station():
    """Spec 10: the marked staff texts, with the widest station name and values, in one GSM-7 segment."""
    checked, widest = 0, 0
    for station in SEED:
        for language in messages.LANGUAGES:
            for key in messages.MAINTENANCE_KEYS:
                kind = key.split(".")[1]
                level = key.split(".")[-1] if key.split(".")[2] in ("raised", "escalated") else "awas"
                for value, rate, window in EXTREMES[kind]:
                    context = messages.warning_context(T, language, station=station, level=level, metric=kind,
                                                       value=value, at=LATE, zone=WITA, rate_per_hour=rate,
                                                       window=window)
                    text = messages.render(T, key, language, context)
                    where = f"{key} {language} {station['id']} {value}: {text!r}"
                    assert gsm7.is_gsm7(text) and gsm7.septets(text) <= 160, f"{gsm7.septets(text)} septets: {where}"
                    assert text.startswith(MAINTENANCE_START[language]) and NOT_TOLD[language] in text, where
                    assert level.upper() in text and "23:59 WITA" in text, where
                    widest = max(widest, gsm7.septets(text))
                    checked += 1
    assert checked == len(SEED) * 2 * (5 * 5 + 5 * 4)  # 5 keys a kind; 5 water, 4 rain values
    assert widest > 140  # the widest cases were reached


def test_the_example_warning_reads_as_intended():
    station = next(s for s in SEED if s["id"] == "KLN-WOTU")
    context = messages.warning_context(T, "id", station=station, level="awas", metric="water_level", value=3.2,
                                       at=datetime(2026, 11, 30, 6, 20, tzinfo=timezone.utc), zone=WITA,
                                       rate_per_hour=0.4)
    assert messages.render(T, "water_level.raised.awas", "id", context) == (
        "BPBD LUTIM: AWAS banjir. TMA S.Kalaena Wotu 3.2 m (naik 40cm/jam) 14:20 WITA. "
        "Warga bantaran segera evakuasi ke tempat aman. Darurat: 112")


def test_an_unknown_trend_leaves_nothing_and_english_glosses_the_level():
    station = SEED[0]
    context = messages.warning_context(T, "en", station=station, level="siaga", metric="water_level", value=2.5,
                                       at=LATE, zone=WITA)
    text = messages.render(T, "water_level.raised.siaga", "en", context)
    assert "2.5 m 23:59 WITA" in text and "SIAGA (standby)" in text


def rendered(keys, **context):
    """Each of ``keys`` rendered for every seed station in every language: (station, language, key, text)."""
    for station in SEED:
        for language in messages.LANGUAGES:
            filled = messages.warning_context(T, language, station=station, at=LATE, zone=WITA, **context)
            for key in keys:
                yield station, language, key, messages.render(T, key, language, filled)


def test_staff_texts_and_replies_are_gsm7():
    for station, language, key, text in rendered(("offline.raised", "offline.cleared", "battery.raised",
                                                  "battery.cleared", "exercise.offline.raised",
                                                  "exercise.battery.cleared"),
                                                 level="waspada", metric="battery", value=10.9):
        assert gsm7.is_gsm7(text) and station["id"] in text
        assert text.startswith(f"{EXERCISE_WORD[language]} BPBD LUTIM" if key.startswith("exercise.") else "BPBD LUTIM")
    for language in messages.LANGUAGES:
        for key in ("opted_out", "opted_in", "registered", "register_unknown", "not_registered", "info", "info_none",
                    "unknown"):
            text = messages.render(T, f"reply.{key}", language, {"place": "Pertasi Kencana", "desa": "x" * 30,
                                                                  "example": "Laskap", "status": "Laskap AWAS",
                                                                  "time": "23:59", "tz": "WITA"})
            assert gsm7.is_gsm7(text) and gsm7.septets(text) <= 160 and text.startswith("BPBD LUTIM")


def test_a_template_naming_an_unknown_placeholder_is_an_error():
    with pytest.raises(messages.TemplateError):
        messages.fill("BPBD LUTIM: {nope}", {})


def test_a_template_file_missing_a_key_is_refused(tmp_path):
    (tmp_path / "id.toml").write_text('[levels]\nawas = "AWAS"\n')
    with pytest.raises(messages.TemplateError, match="lack"):
        messages.load_templates(tmp_path)


def test_templates_live_in_config():
    assert {p.name for p in TEMPLATE_DIR.glob("*.toml")} >= {"id.toml", "en.toml"}


def test_sensor_texts_fit_one_segment_with_every_seed_station():
    """Spec 17: the doubtful-data check and the stuck sensor reach staff in one GSM-7 segment, Bahasa Indonesia first."""
    sensor = {"level": "awas", "metric": "water_level", "value": 9.87}
    for station, language, key, text in rendered(("sensor.doubtful", "sensor.raised", "sensor.cleared",
                                                  "exercise.sensor.doubtful", "exercise.sensor.raised",
                                                  "exercise.sensor.cleared"), **sensor):
        assert gsm7.is_gsm7(text) and gsm7.septets(text) <= 160, (key, language, len(text), text)
        assert station["id"] in text and "9.87 m" in text
        if key.endswith("doubtful"):
            assert messages.level_word(T, language, "awas") in text
    context = messages.warning_context(T, messages.LANGUAGES[-1], station=SEED[-1], at=LATE, zone=WITA, **sensor)
    assert "diragukan" in messages.render(T, "sensor.doubtful", "id", context)
    assert "macet" in messages.render(T, "sensor.raised", "id", context)
