"""Alembic environment: runs on the connection the server hands it (see store.migrate)."""

from alembic import context

from mlflow_secure.identity.models import Base
from mlflow_secure.keys import models as _key_models  # noqa: F401 (their tables in Base)

VERSION_TABLE = "mls_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
