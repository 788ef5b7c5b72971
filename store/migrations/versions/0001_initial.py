"""Deployments, revisions, routes and history.

Revision ID: 0001
Revises:
"""

from store.migrations.sql import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
