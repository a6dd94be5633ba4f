"""Alembic environment of the archive: online migrations only.

``archive.migrate`` runs it with a connection already in a transaction (passed in the
config's ``attributes["connection"]``), holding the lock that keeps two processes from
migrating at once. Run by hand (``alembic -c archive/alembic.ini upgrade head``) it connects
to ``-x url=…``, else ``sqlalchemy.url``, else ``GOVCLOCK_ARCHIVE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from archive.tables import metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("GOVCLOCK_ARCHIVE_URL")
    if not url:
        raise SystemExit(
            "no archive URL: pass -x url=…, set sqlalchemy.url or GOVCLOCK_ARCHIVE_URL"
        )
    return url


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        raise SystemExit("the archive's migrations run online only (no --sql)")
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _migrate(connection)
        return
    from archive.engine import exclusive, make_engine
    from archive.migrate import MIGRATION_LOCK

    engine = make_engine(_url())
    try:
        with exclusive(engine, MIGRATION_LOCK) as connection:
            _migrate(connection)
    finally:
        engine.dispose()


run()
