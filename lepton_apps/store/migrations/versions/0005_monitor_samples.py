"""Monitoring samples: what the model saw for a share of served requests (features, scores, embeddings — never
raw pixels or text), so drift of served inputs can be measured against the bundle's reference profile.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(400), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("n_items", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_monitor_samples_domain_created", "monitor_samples", ["domain", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_monitor_samples_domain_created", "monitor_samples")
    op.drop_table("monitor_samples")
