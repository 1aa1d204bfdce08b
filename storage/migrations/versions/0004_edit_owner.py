"""the client (browser tab, script) that made each edit: undo and redo act on their own edits only

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Existing rows keep client NULL: they belong to their author with no client named, and their undo and
redo rows already name their targets, so every history replays exactly as before (storage.rasterize).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("annotations", sa.Column("client", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("annotations") as batch_op:
        batch_op.drop_column("client")
