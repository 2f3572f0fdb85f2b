"""Outcomes (labels) returned for served predictions: chargebacks, the radiologist's read, the agent's resolution.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("item", sa.Integer, nullable=True),
        sa.Column("key", sa.String(400), nullable=True),
        sa.Column("label", sa.String(400), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
    )
    op.create_index("ix_outcomes_domain_request", "outcomes", ["domain", "request_id"])
    op.create_index("ix_outcomes_domain_key", "outcomes", ["domain", "key"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_domain_key", "outcomes")
    op.drop_index("ix_outcomes_domain_request", "outcomes")
    op.drop_table("outcomes")
