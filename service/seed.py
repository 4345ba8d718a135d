"""Load the bundled Luwu Timur stations and rules (``EWS_SEED=luwu-timur``) into an empty database."""

from __future__ import annotations

import copy
import logging
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from config import load_json
from service.db.schema import stations

log = logging.getLogger(__name__)


def merge(defaults: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` onto ``defaults`` (dicts merge, everything else replaces)."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def default_rules() -> dict:
    """The default rules document for a new station (``config/rules/defaults.json``)."""
    return {k: v for k, v in load_json("rules", "defaults.json").items() if not k.startswith("_")}


def station_rows(seed: str, now: datetime) -> list[dict]:
    """The rows of the ``stations`` table for a bundled seed."""
    defaults = default_rules()
    rows = []
    for station in load_json("seed", f"{seed}.json")["stations"]:
        row = {key: station.get(key) for key in ("id", "name", "river", "kecamatan", "desa", "lat", "lon", "mm_per_tip")}
        row.update(
            metrics=station["metrics"],
            areas=station["areas"],
            expected_interval_s=station.get("expected_interval_s", 600),
            plausible=station.get("plausible", {}),
            downstream=station.get("downstream", []),
            rules=merge(defaults, station.get("rules", {})),
            created_at=now,
            updated_at=now,
        )
        rows.append(row)
    return rows


def seed_if_empty(engine: Engine, seed: str, now: datetime) -> int:
    """Insert the seed's stations when the registry is empty; return how many were added."""
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(stations)).scalar_one():
            return 0
        rows = station_rows(seed, now)
        conn.execute(insert(stations), rows)
    log.info("seeded %d %s stations", len(rows), seed)
    return len(rows)
