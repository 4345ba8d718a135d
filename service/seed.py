"""Load the bundled Luwu Timur stations and rules (``EWS_SEED=luwu-timur``) into an empty database."""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from alerts.segment import segment_problem
from alerts.station_rules import rules_from_overrides
from config import load_json
from config.templates import default_templates
from service.station_rules import default_rules_doc
from service.db.schema import stations

log = logging.getLogger(__name__)


def station_rows(seed: str, now: datetime, zone: tzinfo = ZoneInfo("Asia/Makassar")) -> list[dict]:
    """The rows of the ``stations`` table for a bundled seed; ValueError for a station whose SMS would not fit."""
    defaults = default_rules_doc()
    rows = []
    for station in load_json("seed", f"{seed}.json")["stations"]:
        problem = segment_problem(default_templates(), station, zone)
        if problem:
            raise ValueError(f"seed {seed}: station {station['id']}: {problem}")
        row = {key: station.get(key) for key in ("id", "name", "river", "kecamatan", "desa", "lat", "lon", "mm_per_tip")}
        if station.get("sms_name"):  # left out otherwise: the rows also seed databases of earlier revisions (tests)
            row["sms_name"] = station["sms_name"]
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
        for row in rows:  # one by one: rows need not all have the same keys (sms_name)
            conn.execute(insert(stations).values(**row))
    log.info("seeded %d %s stations", len(rows), seed)
    return len(rows)
