"""Build a real, migrated and seeded ``Services`` for a test."""

from __future__ import annotations

from datetime import datetime, timezone

from config.settings import load_settings
from service.bootstrap import bootstrap
from service.db.migrate import upgrade
from service.seed import seed_if_empty


def make_services(database_url: str, seed: str | None = "luwu-timur", **env: str):
    """Services on ``database_url`` with the schema migrated and (by default) the Luwu Timur stations."""
    settings = load_settings({"EWS_DATABASE_URL": database_url, **env})
    services = bootstrap(settings)
    upgrade(services.engine)
    if seed:
        seed_if_empty(services.engine, seed, datetime.now(timezone.utc))
    return services
