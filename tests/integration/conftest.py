"""Fixtures of the integration tests (a test module may define its own ``services`` instead)."""

from __future__ import annotations

import pytest

from service.db.engine import make_engine
from tests.support.services import make_services


@pytest.fixture
def services(database_url):
    """Migrated Services on a fresh database (each kind), with the Luwu Timur stations."""
    services = make_services(database_url)
    yield services
    services.engine.dispose()


@pytest.fixture
def engine(database_url):
    """An engine on a fresh database (each kind) with no schema yet: the migration tests upgrade it step by step."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
