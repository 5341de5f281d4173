"""Audit trail: the hash-chained event table and its one-row chain head.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64  # fixed here: a migration must not change when the code does


def upgrade() -> None:
    op.create_table(
        "mls_audit_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("v", sa.Integer, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("event", sa.String(256), nullable=False),
        sa.Column("time", sa.String(32), nullable=False, index=True),
        sa.Column("subject", sa.String(256), index=True),
        sa.Column("subject_kind", sa.String(256)),
        sa.Column("auth", sa.String(256)),
        sa.Column("key_id", sa.String(256)),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("user_agent", sa.String(256)),
        sa.Column("method", sa.String(256)),
        sa.Column("path", sa.String(2048)),
        sa.Column("query_params", sa.JSON, nullable=False),
        sa.Column("endpoint", sa.String(256)),
        sa.Column("resource_type", sa.String(256)),
        sa.Column("resource_id", sa.String(256), index=True),
        sa.Column("resource_context", sa.JSON, nullable=False),
        sa.Column("decision", sa.String(256), index=True),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("decision_id", sa.String(256)),
        sa.Column("policy_revision", sa.String(256)),
        sa.Column("status", sa.Integer),
        sa.Column("latency_ms", sa.Float),
        sa.Column("dropped", sa.Integer, nullable=False),
    )
    op.create_table(
        "mls_audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(
        sa.text("INSERT INTO mls_audit_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(
            genesis=GENESIS_HASH
        )
    )


def downgrade() -> None:
    op.drop_table("mls_audit_head")
    op.drop_table("mls_audit_events")
