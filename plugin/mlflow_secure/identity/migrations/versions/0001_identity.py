"""Identity store: principals, teams, projects, API keys, shared counters.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mls_teams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.String(1024)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "mls_principals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(256)),
        sa.Column("email", sa.String(256)),
        sa.Column("password_hash", sa.String(256)),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("clearance", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("mls_principals.id")),
        sa.Column("owner_team_id", sa.Integer, sa.ForeignKey("mls_teams.id")),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("kind IN ('user', 'service')", name="ck_mls_principals_kind"),
        sa.CheckConstraint("kind = 'user' OR password_hash IS NULL", name="ck_mls_no_service_pw"),
    )
    op.create_table(
        "mls_team_members",
        sa.Column(
            "team_id",
            sa.Integer,
            sa.ForeignKey("mls_teams.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("mls_principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "mls_projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.String(1024)),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "mls_project_members",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("mls_projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "principal_id", sa.Integer, sa.ForeignKey("mls_principals.id", ondelete="CASCADE")
        ),
        sa.Column("team_id", sa.Integer, sa.ForeignKey("mls_teams.id", ondelete="CASCADE")),
        sa.Column("role", sa.String(16), nullable=False),
        sa.UniqueConstraint("project_id", "principal_id", "team_id", name="uq_mls_project_member"),
        sa.CheckConstraint(
            "(principal_id IS NULL) != (team_id IS NULL)", name="ck_mls_member_one_of"
        ),
    )
    op.create_table(
        "mls_api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("mls_principals.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(128)),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("projects", sa.JSON),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("expires_at", TZ),
        sa.Column("last_used_at", TZ),
        sa.Column("revoked_at", TZ),
        sa.Column("replaced_by", sa.String(16)),
    )
    op.create_table(
        "mls_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.create_table(
        "mls_auth_failures",
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("blocked_until", sa.Float, nullable=False),
    )
    op.execute(sa.text("INSERT INTO mls_state (name, value) VALUES ('identity_version', 0)"))


def downgrade() -> None:
    for table in (
        "mls_auth_failures",
        "mls_state",
        "mls_api_keys",
        "mls_project_members",
        "mls_projects",
        "mls_team_members",
        "mls_principals",
        "mls_teams",
    ):
        op.drop_table(table)
