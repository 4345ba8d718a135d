"""Database migrations with Alembic, and the ``ews db upgrade`` command."""

from __future__ import annotations

import argparse
import os

from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy.engine import Engine


MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def alembic_config() -> Config:
    """An Alembic config pointing at the bundled migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic_command.upgrade(config, revision)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``ews db`` arguments."""
    parser.add_argument("action", choices=["upgrade"], help="upgrade: apply all migrations")


def command(args: argparse.Namespace) -> int:
    """Run ``ews db upgrade`` on the database ``args.open_database()`` opens (service/cli.py)."""
    engine = args.open_database()
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    print("database is at the latest schema")
    return 0
