"""A gateway's last will counts (spec section 9): ``offline`` on its status topic raises the offline alert.

Gateways publish ``online`` / ``offline`` retained on ``{prefix}/stations/{id}/status`` and set
``offline`` as their MQTT will, so the broker says it for them when their link drops. ``offline``
raises the station's ``offline`` alert at once (staff only, the alert of the scheduled silence
check); it ends when the station reports a reading again (``online`` alone does not end it: a
gateway can be connected with a dead sensor).

A retained ``offline`` is also delivered again at every (re)subscription, and MQTT does not say
when it was published. One that arrives as retained while the station is evidently reporting
(a reading received within two of its ``expected_interval_s``) is older than those readings and is
ignored; if the gateway really is gone, the silence check raises the alert after ``stale_after_s``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sensors import topics
from service import alerting, samples
from service.db.schema import stations
from service.ingest import Ingestor
from service.topic_messages import TopicMessage, apply_each

log = logging.getLogger(__name__)


def apply(ingestor: Ingestor, statuses: list[TopicMessage]) -> int:
    """Raise the offline alert of every station whose gateway said ``offline``; return how many were raised.

    ``ingestor`` is the readings' ingest on the same database, topics and exercise switch.

    An unavailable database propagates (the caller keeps the messages and retries); anything
    else is logged and never stops the ingest loop.
    """
    # An IntegrityError: another instance raised it at the same moment (uq_alerts_one_open).
    raised = sum(apply_each(statuses, lambda status: _apply_one(ingestor, status),
                            "status message on %s could not be applied", tolerated=(IntegrityError,)))
    if raised:
        ingestor.wake.dispatcher()
    return raised


def _apply_one(ingestor: Ingestor, status: TopicMessage) -> int:
    station_id = topics.parse_status_topic(ingestor.topic_prefix, status.topic)
    said = status.payload.strip().lower()
    if station_id is None or said != topics.STATUS_OFFLINE.encode():
        if said != topics.STATUS_ONLINE.encode():
            log.info("ignored status %r on %s: a status is 'online' or 'offline'", status.payload[:40], status.topic[:200])
        return 0
    with ingestor.shared.engine.begin() as conn:
        station = conn.execute(sa.select(stations.c.id, stations.c.expected_interval_s)
                               .where(stations.c.id == station_id)).first()
        if station is None:
            log.info("status 'offline' from unknown station %s ignored", station_id)
            return 0
        state = samples.lock_station_state(conn, station_id, status.received_at)
        if status.retained and _reporting(state, station.expected_interval_s, status.received_at):
            log.info("retained 'offline' of %s ignored: the station reported since (last seen %s)",
                     station_id, state["last_seen"].isoformat())
            return 0
        return alerting.gateway_offline(conn, station_id, status.received_at, exercise=ingestor.exercise)


def _reporting(state: dict, expected_interval_s: int, now: datetime) -> bool:
    last_seen = state.get("last_seen")
    return last_seen is not None and now - last_seen < timedelta(seconds=2 * max(60, expected_interval_s))
