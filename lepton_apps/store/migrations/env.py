"""Alembic environment: runs the migrations on the connection :meth:`Store.migrate` hands over."""
from alembic import context

from lepton_apps.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through lepton_apps.store.Store.open() / .migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
