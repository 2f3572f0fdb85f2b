"""Candidate paraphrases of the support loop: questions from thumbs-down feedback and agents' resolutions,
reviewed (accept / reject / assign) before a rebuild adds them to the knowledge base.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("proposed_faq_id", sa.String(400), nullable=True),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("answered_faq_id", sa.String(400), nullable=True),
        sa.Column("model_version", sa.String(400), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("faq_id", sa.String(400), nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime, nullable=True),
        sa.Column("applied_version", sa.String(400), nullable=True),
        sa.Column("applied_at", sa.DateTime, nullable=True),
    )
    op.create_index("ux_candidates_source", "candidates", ["source"], unique=True)
    op.create_index("ix_candidates_domain_status", "candidates", ["domain", "status"])


def downgrade() -> None:
    op.drop_index("ix_candidates_domain_status", "candidates")
    op.drop_index("ux_candidates_source", "candidates")
    op.drop_table("candidates")
