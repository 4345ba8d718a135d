"""Rules documents: validation with field paths, canonical form, merging overrides over the defaults."""

from __future__ import annotations

import pytest

import config
from alerts.levels import Level
from alerts.rules import RulesError, merge_rules, parse_rules, rules_to_doc
from alerts.station_rules import effective_rules, rules_from_overrides

SPEC_EXAMPLE = {
    "water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0,
                    "clear_margin": 0.1, "hold_s": 0, "clear_hold_s": 600,
                    "rise_rate": {"per_hour": 0.5, "level": "waspada"}},
    "rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                 "24h": {"waspada": 50, "siaga": 100, "awas": 150}},
    "stale_after_s": 1800,
    "notify_from": "waspada",
    "repeat_awas_s": 3600,
    "all_clear": True,
}


def fields(doc) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(doc)
    return [field for field, _message in info.value.errors]


def test_spec_example_parses():
    rules = parse_rules(SPEC_EXAMPLE)
    assert rules.water_level.siaga == 2.5
    assert rules.water_level.rise_rate.level is Level.WASPADA
    assert [w.name for w in rules.rainfall.windows] == ["1h", "24h"]
    assert rules.rainfall.window("24h").awas == 150
    assert rules.notify_from is Level.WASPADA
    assert rules.battery is None


def test_defaults_file_parses_and_round_trips():
    defaults = config.load_json("rules", "defaults.json")
    rules = parse_rules(rules_from_overrides(defaults, {}))
    assert rules.battery.low == 11.5
    doc = rules_to_doc(rules)
    assert "_source" not in doc
    assert parse_rules(doc) == rules
    # The canonical document merged over the defaults again is itself.
    assert rules_to_doc(parse_rules(merge_rules(defaults, doc))) == doc


def test_every_seed_station_has_valid_rules():
    defaults = config.load_json("rules", "defaults.json")
    for station in config.load_json("seed", "luwu-timur.json")["stations"]:
        doc = rules_from_overrides(defaults, station.get("rules") or {})
        assert effective_rules(defaults, doc) == parse_rules(doc)


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"water_level": {"waspada": 3, "siaga": 2.5, "awas": 4}}, ["water_level.siaga"]),
        ({"water_level": {"waspada": 2, "siaga": 2, "awas": 4}}, ["water_level.siaga"]),
        ({"water_level": {"waspada": 2, "awas": 1.5}}, ["water_level.awas"]),
        ({"water_level": {"waspada": "2"}}, ["water_level.waspada"]),
        ({"water_level": {"waspada": True}}, ["water_level.waspada"]),
        ({"water_level": {"clear_margin": -0.1}}, ["water_level.clear_margin"]),
        ({"water_level": {"hold_s": -1, "clear_hold_s": -5}}, ["water_level.hold_s", "water_level.clear_hold_s"]),
        ({"water_level": {"rise_rate": {"per_hour": 0}}}, ["water_level.rise_rate.per_hour"]),
        ({"water_level": {"rise_rate": {"level": "waspada"}}}, ["water_level.rise_rate.per_hour"]),
        ({"water_level": {"rise_rate": {"per_hour": 0.5, "level": "merah"}}}, ["water_level.rise_rate.level"]),
        ({"water_level": {"foo": 1}}, ["water_level.foo"]),
        ({"water_level": 3}, ["water_level"]),
        ({"rainfall": {"2h": {"waspada": 1}}}, ["rainfall.2h"]),
        ({"rainfall": {"1h": {"waspada": 20, "siaga": 10}}}, ["rainfall.1h.siaga"]),
        ({"rainfall": {"1h": {"waspada": 0}}}, ["rainfall.1h.waspada"]),
        ({"rainfall": {"1h": {"merah": 5}}}, ["rainfall.1h.merah"]),
        ({"battery": {"clear_margin": 0.3}}, ["battery.low"]),
        ({"battery": {"low": 11, "clear_margin": -1}}, ["battery.clear_margin"]),
        ({"stale_after_s": 0}, ["stale_after_s"]),
        ({"repeat_awas_s": -1}, ["repeat_awas_s"]),
        ({"notify_from": "normal"}, ["notify_from"]),
        ({"notify_from": "SIAGA"}, ["notify_from"]),
        ({"all_clear": "yes"}, ["all_clear"]),
        ({"colour": "red"}, ["colour"]),
        ({"water_level": {"waspada": 3, "siaga": 2}, "colour": 1, "stale_after_s": "x"},
         ["colour", "water_level.siaga", "stale_after_s"]),
    ],
)
def test_bad_documents_name_each_field(doc, expected):
    assert sorted(fields(doc)) == sorted(expected)


def test_not_an_object():
    assert fields([1, 2]) == [""]


def test_subsets_of_levels_are_allowed():
    rules = parse_rules({"water_level": {"siaga": 2.0}, "rainfall": {"1h": {"awas": 40}}})
    assert rules.water_level.waspada is None and rules.water_level.siaga == 2.0
    assert rules.rainfall.window("1h").siaga is None


def test_merge_is_deep_and_null_removes():
    defaults = {"_source": "x", "a": {"b": 1, "c": 2}, "d": 3}
    assert merge_rules(defaults, {"a": {"c": 5}}) == {"a": {"b": 1, "c": 5}, "d": 3}
    assert merge_rules(defaults, {"a": {"b": None}, "d": None}) == {"a": {"c": 2}}
    assert merge_rules(defaults, {"e": {"f": None, "g": 1}}) == {"a": {"b": 1, "c": 2}, "d": 3, "e": {"g": 1}}
    assert defaults == {"_source": "x", "a": {"b": 1, "c": 2}, "d": 3}  # untouched


def test_switching_a_threshold_off_survives_remerging():
    defaults = config.load_json("rules", "defaults.json")
    rules = parse_rules(rules_from_overrides(defaults, {"rainfall": {"3h": None, "1h": {"waspada": None}},
                                                        "battery": None}))
    assert rules.rainfall.window("3h") is None
    assert rules.rainfall.window("1h").waspada is None
    assert rules.battery is None
    doc = rules_to_doc(rules)
    assert doc["rainfall"]["3h"] is None and doc["battery"] is None
    assert effective_rules(defaults, doc) == rules
    assert parse_rules(rules_from_overrides(defaults, doc)) == rules


def test_seed_override_keeps_default_sections():
    defaults = config.load_json("rules", "defaults.json")
    rules = parse_rules(rules_from_overrides(defaults, {"water_level": {"waspada": 1.2, "siaga": 1.6, "awas": 2.0}}))
    assert rules.water_level.awas == 2.0
    assert rules.water_level.clear_hold_s == 600  # from the defaults
    assert rules.rainfall.window("24h").waspada == 50
