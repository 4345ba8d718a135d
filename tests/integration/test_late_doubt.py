"""Through the ingest path: a backlog sample that makes a told water level doubtful sends no all-clear (spec 17)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db.schema import alert_events, alerts
from tests.support.ingest import iso, message

STATION = "MLL-MALILI"  # waspada 2.5 m; the spike check's 0.1 m a minute


def batch(start: datetime, *levels: tuple[float, float]) -> list[dict]:
    return [{"ts": iso(start + timedelta(minutes=m)), "values": {"water_level": v}} for m, v in levels]


def on_backlog(reading):
    """The same payload on the station's backlog topic (spec section 16)."""
    return dataclasses.replace(reading, topic=reading.topic.replace("/readings", "/backlog"))


def told(services) -> list[tuple[str, str, str, str]]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(alerts.c.kind, alert_events.c.type, alert_events.c.level, alert_events.c.dispatch)
                            .join(alerts, alerts.c.id == alert_events.c.alert_id)
                            .where(alerts.c.station_id == STATION).order_by(alert_events.c.id)).all()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("forget", [False, True])
def test_a_backlog_sample_that_makes_the_warning_s_reading_doubtful_sends_no_all_clear(services, forget):
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=2)
    services.ingestor.ingest([message(STATION, batch(start, *[(m, 2.45) for m in range(0, 51)]))])
    services.ingestor.ingest([message(STATION, batch(start, (60, 2.55)))])  # the crossing: WASPADA told
    # The gateway's backlog: a reading 5 minutes older, from which 2.55 m is a step too far (doubtful now).
    services.ingestor.ingest([on_backlog(message(STATION, batch(start, (55, 2.0))))])
    if forget:
        services.ingestor.states.forget()  # as after a batch that did not commit
    services.ingestor.ingest([message(STATION, batch(start, (61, 2.56)))])  # confirms the jump
    water = [(kind, type_, level, dispatch) for kind, type_, level, dispatch in told(services) if kind == "water_level"]
    assert water == [("water_level", "raised", "waspada", "pending")]
    with services.engine.connect() as conn:
        assert conn.execute(sa.select(alerts.c.state).where(alerts.c.station_id == STATION,
                                                           alerts.c.kind == "water_level")).scalars().all() == ["active"]
