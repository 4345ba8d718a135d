"""Developer tool: regenerate the initial migration from ``schema.py`` (unreleased project only).

Run ``python -m service.db.regen`` after changing the schema; a test fails when
the migration and the schema differ.
"""

from __future__ import annotations

import glob
import os
import tempfile

from alembic import command as alembic_command
from sqlalchemy import create_engine

from service.db.migrate import MIGRATIONS_DIR, alembic_config


def main() -> None:
    """Delete the initial migration and autogenerate it again against an empty database."""
    for path in glob.glob(os.path.join(MIGRATIONS_DIR, "versions", "*.py")):
        os.remove(path)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/empty.db")
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic_command.revision(config, message="initial schema", autogenerate=True, rev_id="0001")
    print("regenerated service/db/migrations/versions/0001_initial_schema.py")


if __name__ == "__main__":
    main()
