"""Running the archive's Alembic migrations: at every open, or by hand.

:func:`upgrade` brings a database to the newest revision inside one write transaction
that holds a lock (SQLite's write lock, a PostgreSQL advisory lock), so two processes that
open the archive at once migrate it once; the second finds it current. The Alembic
configuration is built here (no ``alembic.ini`` is needed at run time).

By hand: ``python -m archive.migrate [URL]`` (default: the configured
``GOVCLOCK_ARCHIVE_URL``, else the SQLite file in the data directory), or Alembic's own
command with the bundled ini: ``alembic -c <site-packages>/archive/alembic.ini -x url=URL
upgrade head``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from archive.engine import exclusive, make_engine, safe_url

__all__ = ["MIGRATION_LOCK", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The PostgreSQL advisory lock key the migrations hold ("govclock" in ASCII, as a bigint).
MIGRATION_LOCK = int.from_bytes(b"govclock", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the archive; ``connection`` is the one to migrate."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the archive has no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, target: str = "head") -> None:
    """Migrate to ``target`` under the migration lock (a no-op when already there)."""
    with exclusive(engine, MIGRATION_LOCK) as connection:
        command.upgrade(alembic_config(connection), target)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m archive.migrate [URL]  (default: the configured archive)")
        return 0
    if args:
        url = args[0]
    else:
        from config.settings import load_settings

        url = load_settings().archive_database_url
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    print(f"{safe_url(url)}: {before or 'empty'} -> {after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
