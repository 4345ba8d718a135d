"""Several ``ews run`` processes on one PostgreSQL database and one Mosquitto: the multi-instance test and drill."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from alerts.rules import merge_rules
from service.db import schema
from service.station_rules import default_rules_doc
from tests.support.service_process import ServiceProcess

# Pongkeru at Laskap (waspada 1.8, siaga 2.4, awas 3.0 m): a rise to AWAS and back, one sample every 10 minutes.
FLOOD = [1.0, 1.05, 1.1, 1.6, 1.9, 2.1, 2.5, 2.8, 3.1, 3.3, 3.2, 2.9, 2.6, 2.2, 1.7, 1.4, 1.2, 1.1, 1.0, 1.0, 0.9]
BULK_STATIONS = 100


class Instance(ServiceProcess):
    """One ``ews run --role all`` of several: its own HTTP port, MQTT client id ``name``, logs in ``directory/name``."""

    def __init__(self, directory: Path, name: str, env: dict[str, str]) -> None:
        super().__init__(directory / name, database_url=env["EWS_DATABASE_URL"], mqtt_url=env["EWS_MQTT_URL"],
                         prefix=env["EWS_MQTT_TOPIC_PREFIX"], client_id=name, env=env,
                         log_level=env.get("EWS_LOG_LEVEL", "WARNING"))
        self.name = name

    def start(self, wait_ready: bool = False, timeout: float = 60.0) -> "Instance":
        """Start it without waiting by default: several start side by side, then each ``wait_ready()``."""
        super().start(wait_ready, timeout)
        return self

    def log(self) -> str:
        """Everything it logged so far."""
        return self.log_tail(chars=1 << 30)


def bulk_station_rows(now: datetime) -> list[dict]:
    """``BULK_STATIONS`` quiet stations ``BNC-000``... on the default rules, as registry rows."""
    return [{
        "id": f"BNC-{i:03d}", "name": f"Bench {i:03d}", "river": None, "kecamatan": "Nuha", "desa": None,
        "lat": None, "lon": None, "mm_per_tip": None, "metrics": ["water_level"], "areas": [{"kecamatan": "Nuha"}],
        "expected_interval_s": 600, "plausible": {"water_level": [0, 10]}, "downstream": [], "rules": merge_rules(default_rules_doc(), {}),
        "created_at": now, "updated_at": now,
    } for i in range(BULK_STATIONS)]


def bulk_stored(engine) -> tuple[int, int]:
    """The bulk stations' readings stored, and how many of them are distinct (station, metric, time)."""
    r = schema.readings
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(r).where(r.c.station_id.like("BNC-%"))).scalar_one()
        distinct = conn.execute(sa.select(sa.func.count()).select_from(
            sa.select(r.c.station_id, r.c.metric, r.c.ts).where(r.c.station_id.like("BNC-%")).distinct().subquery()
        )).scalar_one()
    return total, distinct
