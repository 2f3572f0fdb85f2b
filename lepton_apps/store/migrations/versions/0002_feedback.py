"""Answer feedback (thumbs up / down) and the record of imported legacy feedback files.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("faq_id", sa.String(400), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("handoff", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("rating", sa.SmallInteger, sa.CheckConstraint("rating IN (-1, 1)", name="ck_feedback_rating"),
                  nullable=False),
        sa.Column("model_version", sa.String(400), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_feedback_time", "feedback", ["time"])
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_table(
        "feedback_imports",
        sa.Column("source", sa.String(1000), primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("imported_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback_imports")
    op.drop_index("ix_feedback_request_id", "feedback")
    op.drop_index("ix_feedback_time", "feedback")
    op.drop_table("feedback")
