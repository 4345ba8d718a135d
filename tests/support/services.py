"""Build a real, migrated and seeded ``Services`` for a test."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from config.settings import load_settings
from service.bootstrap import bootstrap
from service.db.migrate import upgrade
from service.seed import seed_if_empty
from service.wiring import utc_now


class Clock:
    """A service clock a test can move: the wall clock until ``now`` is set."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now if self.now is not None else datetime.now(timezone.utc)


def make_services(database_url: str, seed: str | None = "luwu-timur", *, clock=utc_now, instance_id: str | None = None,
                  **env: str):
    """Services on ``database_url`` with the schema migrated and (by default) the Luwu Timur stations."""
    settings = load_settings({"EWS_DATABASE_URL": database_url, **env})
    services = bootstrap(settings, clock=clock, instance_id=instance_id)
    upgrade(services.engine)
    if seed:
        seed_if_empty(services.engine, seed, datetime.now(timezone.utc))
    return services


def without_spike_check(engine, station_id: str) -> None:
    """Switch the spike check (spec 17) off for ``station_id``: for tests whose rivers jump on purpose."""
    from service.db.schema import stations

    with engine.begin() as conn:
        rules = dict(conn.execute(sa.select(stations.c.rules).where(stations.c.id == station_id)).scalar_one())
        rules["quality"] = {**(rules.get("quality") or {}), "max_step_per_min": None}
        conn.execute(sa.update(stations).where(stations.c.id == station_id).values(rules=rules))
