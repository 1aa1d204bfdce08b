"""per-image prediction status and uncertainty score (+ index for 'most uncertain next')

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN: no table copy needed on SQLite either
    op.add_column("images", sa.Column("uncertainty", sa.Float(), nullable=True))
    op.add_column("images", sa.Column("has_prediction", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("images", sa.Column("stats_updated_at", sa.DateTime(), nullable=True))
    op.create_index("ix_images_project_uncertainty", "images", ["project_id", "uncertainty"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_images_project_uncertainty", table_name="images")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("stats_updated_at")
        batch_op.drop_column("has_prediction")
        batch_op.drop_column("uncertainty")
