"""Build a real, migrated and seeded ``Services`` for a test."""

from __future__ import annotations

from datetime import datetime, timezone

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
