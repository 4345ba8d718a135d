"""A flood episode with warned residents, built through the real ingest, alerting and outbox code.

Readings go through ``Ingestor.ingest`` (with the arrival time the test chooses), the rules
engine opens and closes the alert, the expansion turns its events into notifications, and the
provider's answers are applied with ``outbox.mark_sent`` and ``outbox.apply_status`` at chosen
times: so every figure of the report is known to the second.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import sqlalchemy as sa

from config.templates import default_templates
from service.db import schema
from service.dispatch import expansion, outbox
from service.ingest import Message

STATION = "PKR-LASKAP"  # warns Malili/Laskap and Malili/Pongkeru; thresholds 1.8 / 2.4 / 3.0 m
# (minute, water level): raised WASPADA at 10, SIAGA at 20, AWAS at 30, down to WASPADA at 40, cleared at 50.
LEVELS = [(0, 1.0), (10, 1.9), (20, 2.5), (30, 3.1), (40, 2.0), (50, 1.0)]
RESIDENTS = [  # phone, desa (None: the whole kecamatan)
    ("+6281211110001", "Laskap"), ("+6281211110002", "Laskap"), ("+6281211110003", "Laskap"),
    ("+6281211110004", "Pongkeru"), ("+6281211110005", "Pongkeru"), ("+6281211110006", None),
]
STAFF = "+6281399990001"
ELSEWHERE = "+6281277770001"  # a resident of Wotu: never told about Laskap
ARRIVAL_S = 30.0  # every reading reaches the service 30 s after it was measured
DISPATCH_S = 2.0  # the first SMS of an event is handed to the provider 2 s after its reading arrived
SPACING_S = 0.5  # then one every half second


@dataclasses.dataclass
class Episode:
    alert_id: int
    t0: datetime
    sent: dict[int, list[datetime]]  # event id -> sent_at of its SMS, in order
    phones: list[str]

    def at(self, minute: float) -> datetime:
        return self.t0 + timedelta(minutes=minute)


def add_people(engine, now: datetime) -> None:
    rows = [{"phone": phone, "name": f"Warga {i}", "language": "id" if i % 2 else "en", "role": "resident",
             "areas": [{"kecamatan": "Malili", "desa": desa}], "created_at": now, "updated_at": now}
            for i, (phone, desa) in enumerate(RESIDENTS)]
    rows.append({"phone": STAFF, "name": "Piket", "language": "id", "role": "staff", "areas": [],
                 "created_at": now, "updated_at": now})
    rows.append({"phone": ELSEWHERE, "name": "Wotu", "language": "id", "role": "resident",
                 "areas": [{"kecamatan": "Wotu", "desa": "Lampenai"}], "created_at": now, "updated_at": now})
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.subscribers), rows)


def no_hold(services) -> None:
    """Level changes at the first reading past a threshold (no hold, no clear hold): known event times."""
    with services.engine.begin() as conn:
        rules = conn.execute(sa.select(schema.stations.c.rules).where(schema.stations.c.id == STATION)).scalar_one()
        water = {**rules["water_level"], "hold_s": 0, "clear_hold_s": 0, "rise_rate": None}
        conn.execute(sa.update(schema.stations).where(schema.stations.c.id == STATION)
                     .values(rules={**rules, "water_level": water}))
    services.ingestor.forget_stations()


def ingest(services, t0: datetime, arrival_s: float = ARRIVAL_S) -> None:
    prefix = services.settings.mqtt_topic_prefix
    for minute, value in LEVELS:
        ts = t0 + timedelta(minutes=minute)
        message = Message(topic=f"{prefix}/stations/{STATION}/readings",
                          payload=json.dumps({"ts": ts.isoformat(), "values": {"water_level": value}}).encode(),
                          received_at=ts + timedelta(seconds=arrival_s))
        result = services.ingestor.ingest([message])[0]
        assert not result.rejected, result.rejected


def deliver(services, arrival_s: float, failed_phone: str | None) -> dict[int, list[datetime]]:
    """Expand every event into SMS and play the provider: handed over, then delivered (one failure)."""
    engine = services.engine
    expansion.expand_events(engine, default_templates(), services.settings.tz, services.clock(), limit=100)
    n, e = schema.notifications, schema.alert_events
    with engine.connect() as conn:
        rows = conn.execute(sa.select(n.c.id, n.c.event_id, n.c.phone, e.c.at).join(e, e.c.id == n.c.event_id)
                            .order_by(n.c.event_id, n.c.id)).all()
    sent: dict[int, list[datetime]] = {}
    for row in rows:
        times = sent.setdefault(row.event_id, [])
        when = row.at + timedelta(seconds=arrival_s + DISPATCH_S + SPACING_S * len(times))
        times.append(when)
        sid = f"SM{row.id:032d}"
        outbox.mark_sent(engine, row.id, "twilio", sid, "sent", when)
        status = "failed" if row.phone == failed_phone else "delivered"
        outbox.apply_status(engine, when + timedelta(seconds=5), notification_id=row.id, sid=sid,
                            provider_status=status, error_code="30003" if status == "failed" else None)
    return sent


def warned_flood(services, t0: datetime, *, arrival_s: float = ARRIVAL_S,
                 failed_phone: str | None = "+6281211110004") -> Episode:
    """The flood of ``LEVELS`` from ``t0``, its residents warned; the alert id and every SMS's sent_at."""
    add_people(services.engine, t0)
    no_hold(services)
    ingest(services, t0, arrival_s)
    sent = deliver(services, arrival_s, failed_phone)
    with services.engine.connect() as conn:
        alert_id = conn.execute(sa.select(schema.alerts.c.id).where(schema.alerts.c.station_id == STATION,
                                                                    schema.alerts.c.kind == "water_level")).scalar_one()
    return Episode(alert_id, t0, sent, [p for p, _ in RESIDENTS] + [STAFF, ELSEWHERE])
