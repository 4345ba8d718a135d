"""Fixtures of the integration tests (a test module may define its own ``services`` instead)."""

from __future__ import annotations

import pytest

from tests.support.services import make_services


@pytest.fixture
def services(database_url):
    """Migrated Services on a fresh database (each kind), with the Luwu Timur stations."""
    services = make_services(database_url)
    yield services
    services.engine.dispose()
