"""The key service: project keys (wrapped by the master key), data keys (wrapped by them),
and one lock row per project that serialises the operations on its keys.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mls_key_locks",
        sa.Column("project", sa.String(256), primary_key=True),
        sa.Column("operations", sa.Integer, nullable=False),
    )
    op.create_table(
        "mls_project_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wrapped", sa.LargeBinary),
        sa.Column("wrapper", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("changed_by", sa.String(64)),
        sa.Column("changed_at", TZ),
        sa.UniqueConstraint("project", "version", name="uq_mls_project_keys_version"),
    )
    op.create_index("ix_mls_project_keys_project", "mls_project_keys", ["project"])
    op.create_table(
        "mls_data_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(256), nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("created_version", sa.Integer, nullable=False),
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("artefact", sa.String(1100), nullable=False),
        sa.Column("wrapped", sa.LargeBinary),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_mls_data_keys_project", "mls_data_keys", ["project"])


def downgrade() -> None:
    op.drop_index("ix_mls_data_keys_project", "mls_data_keys")
    op.drop_table("mls_data_keys")
    op.drop_index("ix_mls_project_keys_project", "mls_project_keys")
    op.drop_table("mls_project_keys")
    op.drop_table("mls_key_locks")
