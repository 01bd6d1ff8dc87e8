"""CDS client JWT ids already accepted (replay protection shared by all workers and replicas).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_token_ids",
        sa.Column("iss", sa.String(255), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti", name="pk_used_token_ids"),
    )
    op.create_index("ix_used_token_ids_expires_at", "used_token_ids", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_token_ids_expires_at", table_name="used_token_ids")
    op.drop_table("used_token_ids")
