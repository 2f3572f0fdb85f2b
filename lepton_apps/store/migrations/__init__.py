"""Alembic migrations of the service database (run by :meth:`lepton_apps.store.Store.migrate`)."""
