"""Upgrading a release-0001 database: every station keeps exactly the thresholds it ran with, and
phone numbers quoted in stored provider errors are masked (revision 0002)."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

import config
from alerts.rules import merge_rules, parse_rules
from service import alerting
from service.db.migrate import upgrade
from service.db.schema import notifications, stations

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
DEFAULTS = config.load_json("rules", "defaults.json")
# Rules as release 0001 stored them: seed overrides, PUT's canonical documents, partial and odd ones.
STORED = {
    "SEED-LIKE": {"water_level": {"waspada": 1.8, "siaga": 2.4, "awas": 3.0, "clear_margin": 0.1, "hold_s": 0,
                                  "clear_hold_s": 600, "rise_rate": {"per_hour": 0.5, "level": "waspada"}}},
    "EMPTY": {},
    "PARTIAL": {"water_level": {"awas": 3.3}, "rainfall": {"1h": {"waspada": 12}}},
    "SWITCHED-OFF": {"water_level": {"siaga": None, "rise_rate": None, "hold_s": None}, "rainfall": {"3h": None},
                     "battery": None, "notify_from": "siaga"},
    "CANONICAL-PUT": {"water_level": {"waspada": 1.5, "siaga": 2.0, "awas": 2.5, "clear_margin": 0.1, "hold_s": 0,
                                      "clear_hold_s": 600, "rise_rate": None},
                      "rainfall": {"1h": None, "3h": None, "24h": {"waspada": 50, "siaga": None, "awas": 150},
                                   "clear_hold_s": 1800},
                      "battery": None, "stale_after_s": 900, "notify_from": "waspada", "repeat_awas_s": 0,
                      "all_clear": False},
    "RAIN-OFF": {"rainfall": None, "water_level": None},
    "RISE-PARTIAL": {"water_level": {"rise_rate": {"per_hour": 0.8}}, "rainfall": {"24h": {"awas": None}}},
}


def old_effective(stored: dict):
    """How release 0001 read a station's rules: merged over the defaults, then parsed."""
    return parse_rules(merge_rules(DEFAULTS, stored))


def test_upgrade_keeps_every_stations_thresholds_and_masks_stored_numbers(engine):
    upgrade(engine, "0001")
    with engine.begin() as conn:
        for station_id, rules in STORED.items():
            conn.execute(sa.insert(stations).values(
                id=station_id, name=station_id, metrics=["water_level", "battery"], areas=[], plausible={},
                downstream=[], rules=rules, created_at=NOW, updated_at=NOW))
        conn.execute(sa.insert(notifications), [
            {"phone": "+6281234567890", "language": "id", "kind": "warning", "body": "x", "created_at": NOW,
             "updated_at": NOW, "error_code": "21211",
             "error_message": "The 'To' number +6281234567890 is not a valid phone number."},
            {"phone": "+6281234567891", "language": "id", "kind": "warning", "body": "x", "created_at": NOW,
             "updated_at": NOW, "error_code": "30003", "error_message": "Unreachable destination handset"},
        ])
    upgrade(engine)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(stations))}
        errors = [r.error_message for r in conn.execute(sa.select(notifications).order_by(notifications.c.id))]
    for station_id, rules in STORED.items():
        assert alerting.station_rules(rows[station_id]._mapping) == old_effective(rules), station_id
        # The stored document is now whole: read on its own it is what the station runs with.
        assert parse_rules(rows[station_id].rules) == old_effective(rules), station_id
    assert errors == ["The 'To' number +62812****7890 is not a valid phone number.", "Unreachable destination handset"]
