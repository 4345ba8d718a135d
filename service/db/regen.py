"""Developer tool: write the next migration from the difference between ``schema.py`` and the migrations.

Run ``python -m service.db.regen "what changed"`` after changing the schema. It upgrades an
empty SQLite database to the newest migration, then autogenerates revision ``NNNN`` (the
next number) holding what ``schema.py`` adds; read and adjust it (data moves, defaults for
existing rows, PostgreSQL-only details) before committing. The landed migrations are never
rewritten: a database of an earlier release must upgrade in place. A test fails when the
migrations and the schema differ.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile

from alembic import command as alembic_command
from sqlalchemy import create_engine

from service.db.migrate import MIGRATIONS_DIR, alembic_config


def next_revision_id() -> str:
    """The next four-digit revision id after the highest one in ``versions/``."""
    numbers = [int(m.group(1)) for path in glob.glob(os.path.join(MIGRATIONS_DIR, "versions", "*.py"))
               if (m := re.match(r"(\d{4})_", os.path.basename(path)))]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str] | None = None) -> None:
    """Autogenerate the next revision against an empty database upgraded to the current head."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit('usage: python -m service.db.regen "what changed"')
    rev_id = next_revision_id()
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/empty.db")
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic_command.upgrade(config, "head")
            alembic_command.revision(config, message=" ".join(args), autogenerate=True, rev_id=rev_id)
    print(f"wrote service/db/migrations/versions/{rev_id}_*.py: read it before committing")


if __name__ == "__main__":
    main()
