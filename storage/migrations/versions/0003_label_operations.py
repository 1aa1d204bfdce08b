"""label operations: op_id (idempotent retries) and stroke polylines on annotation rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing rows keep op_id and path NULL: their whole-layer scribbles, points, masks and erases replay
exactly as before (storage.rasterize), so every stored label survives.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("annotations", sa.Column("op_id", sa.String(64), nullable=True))
    op.add_column("annotations", sa.Column("path", sa.JSON(), nullable=True))
    # NULLs are distinct in a unique index on SQLite and PostgreSQL: old rows never collide
    op.create_index("uq_annotations_image_op", "annotations", ["image_id", "op_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_annotations_image_op", table_name="annotations")
    with op.batch_alter_table("annotations") as batch_op:
        batch_op.drop_column("path")
        batch_op.drop_column("op_id")
