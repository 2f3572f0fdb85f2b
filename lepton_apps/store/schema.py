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

# An outcome returned for a served prediction (a chargeback, the radiologist's read, the agent's resolution),
# matched to it by the audit row's ``request_id`` and the item's position in that request, or by a domain key
# (finance: the transaction id). Unmatched outcomes are kept (and reported) — they may match a later export.
outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("domain", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("item", sa.Integer, nullable=True),
    sa.Column("key", sa.String(400), nullable=True),
    sa.Column("label", sa.String(400), nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String(400), nullable=False),
    sa.Index("ix_outcomes_domain_request", "domain", "request_id"),
    sa.Index("ix_outcomes_domain_key", "domain", "key"),
)

# A candidate paraphrase for the support knowledge base (the support loop): a customer question that a thumbs-down
# or an agent's resolution showed the assistant missed, with the FAQ it should answer. ``source`` names where it
# came from ("feedback:<id>", "outcome:<id>"), once: collecting again never adds the same source twice. A reviewer
# accepts it (``faq_id`` = the proposed FAQ), assigns it to another FAQ, or rejects it; an accepted one is added to
# the KB by a rebuild (status "applied", ``applied_version`` = the new bundle's model_version).
candidates = sa.Table(
    "candidates", metadata,
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
    sa.Index("ux_candidates_source", "source", unique=True),
    sa.Index("ix_candidates_domain_status", "domain", "status"),
)

# What the model saw for a sampled served request (``serve --monitor-sample``): its monitoring window as JSON —
# features (finance model features, medical image statistics, support length / script / intent), scores and
# embeddings (float16, base64) — never raw pixels or customer text.
monitor_samples = sa.Table(
    "monitor_samples", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("domain", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(400), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_monitor_samples_domain_created", "domain", "created_at"),
)
