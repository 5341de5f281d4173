"""Alembic environment of the audit tables: runs on the connection audit.store.migrate hands
it, with its own version table so it upgrades independently of the identity store."""

from alembic import context

from mlflow_secure.audit.store import AuditBase

VERSION_TABLE = "mls_audit_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=AuditBase.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
