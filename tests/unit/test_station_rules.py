"""A station's whole rules document (spec section 9): PUT replaces, PATCH merges into the current rules."""

from __future__ import annotations

import pytest

import config
from alerts.rules import RulesError, parse_rules, rules_to_doc
from alerts.station_rules import complete_rules, effective_rules, patch_rules, replace_rules, rules_from_overrides

DEFAULTS = config.load_json("rules", "defaults.json")
RIVER = ("water_level", "battery", "signal")
RAIN = ("rain_tips", "battery")
LASKAP = next(s for s in config.load_json("seed", "luwu-timur.json")["stations"] if s["id"] == "PKR-LASKAP")


def errors(doc, measured=RIVER) -> list[str]:
    with pytest.raises(RulesError) as info:
        replace_rules(doc, DEFAULTS, measured=measured)
    return [field for field, _ in info.value.errors]


def laskap_doc() -> dict:
    return rules_from_overrides(DEFAULTS, LASKAP["rules"])


def test_the_issues_partial_put_names_the_missing_thresholds():
    assert errors({"water_level": {"awas": 3.3}}) == ["water_level.waspada", "water_level.siaga"]


def test_a_whole_block_takes_documented_defaults_for_the_other_fields():
    rules = replace_rules({"water_level": {"waspada": 1.9, "siaga": 2.4, "awas": 3.3}}, DEFAULTS, measured=RIVER)
    wl = rules.water_level
    assert (wl.waspada, wl.siaga, wl.awas) == (1.9, 2.4, 3.3)
    # From config/rules/defaults.json, not the parser's zero fallbacks.
    assert (wl.clear_margin, wl.hold_s, wl.clear_hold_s) == (0.1, 0, 600)
    assert wl.rise_rate.per_hour == 0.5
    assert rules.battery.low == 11.5 and rules.stale_after_s == 1800 and rules.notify_from.label == "waspada"
    # A river gauge measures no rain: no rainfall thresholds come from anywhere.
    assert rules.rainfall is None


def test_null_means_a_level_or_section_not_used():
    rules = replace_rules({"water_level": {"waspada": None, "siaga": 2.4, "awas": 3.3, "rise_rate": None},
                           "battery": None}, DEFAULTS, measured=RIVER)
    assert rules.water_level.waspada is None and rules.water_level.rise_rate is None and rules.battery is None


def test_a_measured_metric_must_have_its_block_or_null():
    assert errors({"battery": {"low": 11}}) == ["water_level"]
    assert errors({"water_level": {"waspada": 1, "siaga": 2, "awas": 3}}, measured=RAIN) == ["rainfall"]
    rules = replace_rules({"water_level": None}, DEFAULTS, measured=RIVER)
    assert rules.water_level is None


def test_each_rainfall_window_names_its_levels_and_windows_left_out_are_off():
    assert errors({"rainfall": {"1h": {"awas": 40}}}, measured=RAIN) == ["rainfall.1h.waspada", "rainfall.1h.siaga"]
    rules = replace_rules({"rainfall": {"24h": {"waspada": 50, "siaga": 100, "awas": None}}}, DEFAULTS, measured=RAIN)
    assert [w.name for w in rules.rainfall.windows] == ["24h"] and rules.rainfall.window("24h").awas is None
    assert rules.rainfall.clear_hold_s == 1800


def test_missing_and_bad_fields_are_named_together():
    assert sorted(errors({"water_level": {"waspada": 3, "awas": 2}, "colour": 1})) == \
        ["colour", "water_level.awas", "water_level.siaga"]


def test_a_patch_changes_only_the_named_threshold():
    before = laskap_doc()
    after = rules_to_doc(replace_rules(patch_rules(before, {"water_level": {"awas": 3.3}}), DEFAULTS, measured=RIVER))
    assert after["water_level"]["awas"] == 3.3
    after["water_level"]["awas"] = before["water_level"]["awas"]
    assert after == before


def test_a_patch_null_switches_off_instead_of_falling_back_to_a_default():
    patched = patch_rules(laskap_doc(), {"water_level": {"siaga": None, "rise_rate": None}, "battery": None})
    rules = replace_rules(patched, DEFAULTS, measured=RIVER)
    assert rules.water_level.siaga is None and rules.water_level.rise_rate is None and rules.battery is None
    assert rules.water_level.waspada == 1.8


def test_a_stored_document_is_read_as_it_is():
    doc = laskap_doc()
    assert effective_rules(DEFAULTS, doc) == parse_rules(doc)
    # A key a later release adds to the defaults (here stale_after_s, as if new) takes its default.
    del doc["stale_after_s"]
    assert effective_rules(DEFAULTS, doc).stale_after_s == 1800
    # Nothing merges default thresholds under a stored document.
    assert complete_rules({"water_level": None}, DEFAULTS)["rainfall"] is None
