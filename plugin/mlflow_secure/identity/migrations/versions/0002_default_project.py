"""Principals: a default project (where new work goes when a request names none).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_mls_principals_default_project"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a constraint to a table, and batch mode would rebuild
        # mls_principals: with foreign keys enforced, dropping the old table cascades into
        # every key and membership. A column may carry its own REFERENCES clause, though.
        op.execute(
            "ALTER TABLE mls_principals ADD COLUMN default_project_id INTEGER "
            "REFERENCES mls_projects (id) ON DELETE SET NULL"
        )
        return
    op.add_column("mls_principals", sa.Column("default_project_id", sa.Integer))
    op.create_foreign_key(
        FOREIGN_KEY,
        "mls_principals",
        "mls_projects",
        ["default_project_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column that has a REFERENCES clause; the older schema's code
        # never reads it, and new principals get NULL there.
        return
    op.drop_constraint(FOREIGN_KEY, "mls_principals", type_="foreignkey")
    op.drop_column("mls_principals", "default_project_id")
