"""Load the bundled Luwu Timur stations and rules (``EWS_SEED=luwu-timur``) into an empty database."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from alerts.station_rules import rules_from_overrides
from config import load_json
from service.alerting import default_rules_doc
from service.db.schema import stations

log = logging.getLogger(__name__)


def station_rows(seed: str, now: datetime) -> list[dict]:
    """The rows of the ``stations`` table for a bundled seed."""
    defaults = default_rules_doc()
    rows = []
    for station in load_json("seed", f"{seed}.json")["stations"]:
        row = {key: station.get(key) for key in ("id", "name", "river", "kecamatan", "desa", "lat", "lon", "mm_per_tip")}
        row.update(
            metrics=station["metrics"],
            areas=station["areas"],
            expected_interval_s=station.get("expected_interval_s", 600),
            plausible=station.get("plausible", {}),
            downstream=station.get("downstream", []),
            rules=rules_from_overrides(defaults, station.get("rules", {})),
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
