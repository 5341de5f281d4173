"""Audit events: the optional `client` field (the X-MLflow-Secure-Client header).

NULL in rows written before it existed, and in events without a value: such an event's record
has no `client` key, and its hash is computed as before.

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
    op.add_column("mls_audit_events", sa.Column("client", sa.String(256)))


def downgrade() -> None:
    op.drop_column("mls_audit_events", "client")
