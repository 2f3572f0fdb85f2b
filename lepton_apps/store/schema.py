"""The tables of the service database (SQLAlchemy Core). Changes go through a new Alembic migration
in ``migrations/versions``; this module mirrors the newest revision."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("domains", sa.String(400), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
    sa.Column("domain", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("model_ref", sa.String(400), nullable=False),
    sa.Column("model_version", sa.String(400), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

# A rated answer: the user's deliberate feedback keeps the question text (the audit log keeps only a digest).
# ``request_id`` names the audit row it rates when the answer came from the service; no foreign key, because
# an answer may come from a local model, or from a service running with --audit-optional.
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime, nullable=False, index=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("faq_id", sa.String(400), nullable=True),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("handoff", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("rating", sa.SmallInteger, sa.CheckConstraint("rating IN (-1, 1)", name="ck_feedback_rating"),
              nullable=False),
    sa.Column("model_version", sa.String(400), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True, index=True),
)

# One row per legacy feedback file imported into ``feedback``: its path and the highest row id taken from it,
# so that no file is imported twice, even by two processes opening the database at once.
feedback_imports = sa.Table(
    "feedback_imports", metadata,
    sa.Column("source", sa.String(1000), primary_key=True),
    sa.Column("last_id", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("imported_at", sa.DateTime, nullable=False),
)
