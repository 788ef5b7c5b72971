"""Announce history rows with NOTIFY for deploymentEvents subscribers.

Revision ID: 0002
Revises: 0001
"""

from store.migrations.sql import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__)


def downgrade() -> None:
    raise NotImplementedError("Switchover migrations go forward only; restore a backup to go back.")
