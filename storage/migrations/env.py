"""Alembic environment, driven programmatically by `storage.db.upgrade` (no alembic.ini needed).

The caller passes an open connection in `config.attributes["connection"]`. For ad-hoc use of the
alembic CLI, set `sqlalchemy.url` in the config or the DATABASE_URL environment variable.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"],
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        _run(conn)
